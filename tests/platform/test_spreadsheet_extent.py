"""ASVS 12.1.2: a small spreadsheet that the native parser (python-calamine) would read as a gigantic grid is refused
before the parser sees it. calamine builds every sheet as a full rectangle from A1 to the farthest cell: a 5 KB .xlsx
with one cell at row 1,000,000, column 3,000 makes it allocate 96 GB, and Rust aborts the whole worker process.

The dangerous files are parsed in a subprocess with its address space capped (RLIMIT_AS), so that a regression kills
that subprocess, not the test runner; the test asserts the subprocess ended normally with the Chinese refusal."""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.core.spreadsheet import WorkbookRefused, WorkbookUnreadable, check_extent, workbook_extent
from app.db import Database
from app.errors import ValidationFailed
from app.households.models import Household, ImportBatch, Member
from app.households.service import imports, roster
from tests.support.eval_helpers import CLERK
from tests.support.factories import make_village
from tests.support.spreadsheets import CONTENT_TYPES, PACKAGE_RELS, WORKBOOK, WORKBOOK_RELS, xlsx_by_hand

ROOT = Path(__file__).resolve().parents[2]
HEADER = ["户号", "姓名", "与户主关系", "性别", "出生日期", "身份证号", "联系电话"]


def _header_row() -> str:
    cells = "".join(f'<c r="{chr(65 + i)}1" t="inlineStr"><is><t>{h}</t></is></c>' for i, h in enumerate(HEADER))
    return f'<row r="1">{cells}</row><row r="2"><c r="A2" t="inlineStr"><is><t>001</t></is></c>' \
           '<c r="B2" t="inlineStr"><is><t>张三</t></is></c><c r="C2" t="inlineStr"><is><t>户主</t></is></c></row>'


def _biff(kind: int, body: bytes) -> bytes:
    return struct.pack("<HH", kind, len(body)) + body


def xls_by_hand(row: int, col: int) -> bytes:
    """A minimal BIFF8 .xls (one compound-file stream, "Workbook") with one number at (row, col), 0-based."""
    bof_globals = _biff(0x0809, struct.pack("<HHHHII", 0x0600, 0x0005, 0x0DBB, 0x07CC, 0, 0x0006))
    codepage = _biff(0x0042, struct.pack("<H", 1200))
    globals_len = len(bof_globals) + len(codepage) + len(_biff(0x0085, b"\0" * 9)) + len(_biff(0x000A, b""))
    boundsheet = _biff(0x0085, struct.pack("<IBBBB", globals_len, 0, 0, 1, 0) + b"S")
    sheet = (_biff(0x0809, struct.pack("<HHHHII", 0x0600, 0x0010, 0x0DBB, 0x07CC, 0, 0x0006))
             + _biff(0x0203, struct.pack("<HHHd", row, col, 0, 42.0)) + _biff(0x000A, b""))
    stream = bof_globals + codepage + boundsheet + _biff(0x000A, b"") + sheet
    stream += _biff(0x00EF, b"\0" * max(0, 4200 - len(stream)))  # an ignored record: a normal (not mini) stream
    n = (len(stream) + 511) // 512
    fat = [0xFFFFFFFD, 0xFFFFFFFE] + [3 + i for i in range(n - 1)] + [0xFFFFFFFE]
    fat += [0xFFFFFFFF] * (128 - len(fat))

    def entry(name: str, kind: int, start: int, size: int, child: int = 0xFFFFFFFF) -> bytes:
        raw = (name + "\0").encode("utf-16-le")
        return (raw.ljust(64, b"\0") + struct.pack("<HBB", len(raw), kind, 1) + struct.pack("<III", 0xFFFFFFFF,
                                                                                          0xFFFFFFFF, child)
                + b"\0" * 36 + struct.pack("<IIII", start, size, 0, 0)[:12]).ljust(128, b"\0")

    directory = (entry("Root Entry", 5, 0xFFFFFFFE, 0, child=1) + entry("Workbook", 2, 2, len(stream))).ljust(512, b"\0")
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16 + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
              + b"\0" * 10 + struct.pack("<IIIIIIIII", 1, 1, 0, 4096, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0, 0)
              + struct.pack("<I", 0xFFFFFFFF) * 108)
    assert len(header) == 512
    return header + struct.pack("<128I", *fat) + directory + stream.ljust(n * 512, b"\0")


FAR_ROW, FAR_COL = 1_000_000, 3_000  # 96 GB as calamine's grid


def _far_xlsx() -> bytes:
    return xlsx_by_hand(_header_row() + f'<row r="{FAR_ROW}"><c r="DKJ{FAR_ROW}" t="n"><v>1</v></c></row>')


HOSTILE = {
    # one cell far away, named by its reference
    "far-cell": ("花名册.xlsx", _far_xlsx()),
    # the same place reached with no reference at all: a <row r> and cells that follow the one before them
    "unnamed-cells": ("花名册.xlsx", xlsx_by_hand(_header_row() + '<row r="3"><c r="XFD3" t="n"><v>1</v></c></row>'
                                                   f'<row r="{FAR_ROW}"><c t="n"><v>1</v></c></row>')),
    # a prefixed namespace, single quotes, a $ in the reference
    "prefixed": ("花名册.xlsx", xlsx_by_hand(_header_row() + f"<x:row r='{FAR_ROW}'><x:c r='$DKJ${FAR_ROW}'>"
                                              "<x:v>1</x:v></x:c></x:row>")),
    # old binary Excel: one number at row 65,000, column 60,000 (BIFF8 allows a 16-bit column): 125 GB
    "xls-far-cell": ("花名册.xls", xls_by_hand(65_000, 60_000)),
}

CHILD = textwrap.dedent("""
    import resource, sys
    from app.errors import ValidationFailed
    from app.evaluation.service import sheets
    from app.households.service import roster
    reader, name, path = sys.argv[1:4]
    data = open(path, "rb").read()
    limit = 2 * 1024 ** 3  # 2 GB of address space: calamine's 96 GB grid must fail here, not in the test runner
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        if reader == "roster":
            roster.read_sheet(name, data)
        else:
            sheets._read(data)
    except ValidationFailed as e:
        print("REFUSED", e.message)
    else:
        print("READ")
""")


def _in_capped_subprocess(reader: str, name: str, data: bytes, tmp_path: Path,
                          timeout: float = 120) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    return subprocess.run([sys.executable, "-c", CHILD, reader, name, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "RUST_BACKTRACE": "0",
                                                       "PYTHONPATH": str(ROOT)})


def test_the_hand_written_files_are_real_workbooks_when_the_cell_is_near(tmp_path: Path) -> None:
    """The builders above make files calamine really reads, so the far-away versions test what they claim."""
    import python_calamine

    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(xls_by_hand(2, 3)))
    assert wb.get_sheet_by_index(0).to_python(skip_empty_area=False)[2][3] == 42.0
    assert workbook_extent(xls_by_hand(2, 3)) == (3, 4)
    near = xlsx_by_hand(_header_row())
    assert roster.read_sheet("花名册.xlsx", near).rows[0][1]["name"] == "张三"
    assert workbook_extent(near) == (2, 7)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_small_file_claiming_a_huge_grid_is_refused_before_the_parser_reads_it(case: str, tmp_path: Path) -> None:
    name, data = HOSTILE[case]
    assert len(data) < 8000
    done = _in_capped_subprocess("roster", name, data, tmp_path)
    assert done.returncode == 0, f"the parser process died ({done.returncode}): {done.stderr[-500:]}"
    assert done.stdout.startswith("REFUSED 表格的范围太大（最远的单元格在第"), done.stdout
    assert "请只保留有内容的行和列" in done.stdout


def test_a_rating_sheet_with_a_far_away_cell_is_refused_before_the_parser_reads_it(tmp_path: Path) -> None:
    done = _in_capped_subprocess("sheets", "评分表.xlsx", _far_xlsx(), tmp_path)
    assert done.returncode == 0, f"the parser process died ({done.returncode}): {done.stderr[-500:]}"
    assert done.stdout.startswith("REFUSED 表格有 1000000 行，太多了"), done.stdout


def test_a_refused_roster_file_changes_no_row(db: Database) -> None:
    with db.write_txn() as s:
        vid = make_village(s).id
    tables = (Household, Member, ImportBatch)
    with db.read_txn() as s:
        before = [s.execute(select(func.count()).select_from(t)).scalar_one() for t in tables]
    for name, data in HOSTILE.values():
        with pytest.raises(ValidationFailed, match="表格的范围太大"), db.write_txn() as s:
            imports.preview(s, CLERK, village_id=vid, file_name=name, data=data)
    with db.read_txn() as s:
        assert [s.execute(select(func.count()).select_from(t)).scalar_one() for t in tables] == before


def test_a_dimension_claim_beyond_the_bounds_is_refused() -> None:
    data = xlsx_by_hand(_header_row(), dimension="A1:DZZ1000000")
    with pytest.raises(ValidationFailed, match="表格的范围太大"):
        roster.read_sheet("花名册.xlsx", data)


def test_the_largest_legitimate_roster_fits_the_bounds() -> None:
    """200,000 members (the import's row limit) in 15 columns pass; one row or a few columns more do not."""
    check_extent(roster.MAX_ROWS + 1, 15, max_rows=roster.MAX_GRID_ROWS, max_cells=roster.MAX_GRID_CELLS)
    with pytest.raises(WorkbookRefused, match="第 1000000 行第 3000 列，即 DKJ1000000"):
        check_extent(FAR_ROW, FAR_COL, max_rows=roster.MAX_GRID_ROWS, max_cells=roster.MAX_GRID_CELLS)
    with pytest.raises(WorkbookRefused):
        check_extent(100, 16_385, max_rows=roster.MAX_GRID_ROWS, max_cells=roster.MAX_GRID_CELLS)


def test_a_zip_bomb_part_is_refused_without_unpacking_it_all() -> None:
    """A part that unpacks far beyond the limit (its declared size is not trusted) is refused while unpacking."""
    bomb = xlsx_by_hand(_header_row(), extra={"xl/media/pad.xml": b" " * (8 * 1024 * 1024)})
    assert len(bomb) < 60_000
    with pytest.raises(WorkbookRefused, match="文件解压后太大"):
        workbook_extent(bomb, max_unpacked=4 * 1024 * 1024)
    with pytest.raises(ValidationFailed, match="文件解压后太大"), \
            pytest.MonkeyPatch.context() as mp:
        mp.setattr(roster, "MAX_UNPACKED_BYTES", 4 * 1024 * 1024)
        roster.read_sheet("花名册.xlsx", bomb)


def test_ods_and_xlsb_are_refused_with_what_to_do() -> None:
    """calamine falls back to .xlsb and .ods readers, which are not measured: such files are refused by name."""
    ods = xlsx_by_hand(_header_row(), extra={"content.xml": b"<office:document-content/>"})
    with pytest.raises(ValidationFailed, match=r"OpenDocument 表格（\.ods）：请在 WPS 或 Excel 中另存为 \.xlsx"):
        roster.read_sheet("花名册.ods", ods)
    xlsb = xlsx_by_hand(_header_row(), extra={"xl/workbook.bin": b"\0"})
    with pytest.raises(ValidationFailed, match=r"\.xlsb"):
        roster.read_sheet("花名册.xlsb", xlsb)


def test_a_broken_compound_file_is_unreadable_not_trusted() -> None:
    good = xls_by_hand(2, 3)
    for broken in (good[:600], good[:30] + b"\x20\x00" + good[32:],  # cut short; a sector size of 2^32
                   good[:44] + struct.pack("<I", 0x7FFFFFFF) + good[48:]):  # a FAT longer than the file
        with pytest.raises(WorkbookUnreadable):
            workbook_extent(broken)


# ---- what a workbook costs to parse, measured before the parser (issue 17, item 4) -----------------------------------
#
# A compressed 826 KB .xlsx holding millions of shared strings took calamine 27 s and 1 GB, all of it while the upload
# held the county's single SQLite write lock. The extent check above saw nothing wrong (two rows, seven columns). Now
# the cells, the shared strings (declared and real) and the merged ranges are counted from the bytes as well, in
# bounded pieces, and a workbook beyond what any real roster or rating sheet holds is refused before calamine opens it.

_SST_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
_SST_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def xlsx_streamed(sheet_parts: list[bytes], *, strings: tuple[int, bytes] | None = None, repeat: int = 1,
                  declared: tuple[int, int] | None = None, after_sheet_data: bytes = b"") -> bytes:
    """An .xlsx whose sheet is `sheet_parts` (the middle one written `repeat` times) and whose shared-strings part,
    if any, holds `strings` = (n, one <si>) n times, declaring `declared` = (count, uniqueCount). Written through
    the zip stream, so that a part of hundreds of megabytes never exists in memory at once."""
    n_strings, si = strings or (0, b"")
    count, unique = declared or (n_strings, n_strings)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", CONTENT_TYPES.replace(
            "</Types>", f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_SST_TYPE}"/></Types>'))
        z.writestr("_rels/.rels", PACKAGE_RELS)
        z.writestr("xl/workbook.xml", WORKBOOK)
        z.writestr("xl/_rels/workbook.xml.rels", WORKBOOK_RELS.replace(
            "</Relationships>", f'<Relationship Id="rId2" Type="{_SST_REL}" Target="sharedStrings.xml"/>'
                                "</Relationships>"))
        with z.open("xl/worksheets/sheet1.xml", "w") as f:
            f.write(b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
                    b'spreadsheetml/2006/main"><sheetData>')
            first, *middle, last = [*sheet_parts, b""] if len(sheet_parts) == 1 else sheet_parts
            f.write(first)
            for part in middle:
                for _ in range(repeat):
                    f.write(part)
            f.write(last + b"</sheetData>" + after_sheet_data + b"</worksheet>")
        with z.open("xl/sharedStrings.xml", "w") as f:
            f.write(b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
                    b'spreadsheetml/2006/main" count="%d" uniqueCount="%d">' % (count, unique))
            block = si * 10_000
            for _ in range(n_strings // 10_000):
                f.write(block)
            f.write(si * (n_strings % 10_000) + b"</sst>")
    return buf.getvalue()


@functools.cache
def _shared_strings_bomb(n: int) -> bytes:
    """n shared strings that no cell uses, declared as one: 10,000,000 of them are about 400 KB."""
    return xlsx_streamed([_header_row().encode()], strings=(n, b"<si><t>x</t></si>"), declared=(1, 1))


@functools.cache
def _repeated_cells(n: int) -> bytes:
    return xlsx_streamed([_header_row().encode() + b'<row r="3">', b'<c r="A3" t="n"><v>1</v></c>', b"</row>"],
                         repeat=n)


# Each file sized to unpack within the reader's limit on unpacked bytes (400 MB for a roster, 100 MB for a rating
# sheet), which alone does not stop them.
COSTLY = {
    # the file of the issue: millions of shared strings in a few hundred KB (27 s and 1 GB in calamine)
    "shared-strings-bomb": (lambda reader: _shared_strings_bomb(10_000_000 if reader == "roster" else 5_000_000),
                            "共享文字"),
    # one shared string, claiming a hundred million: calamine makes room for them all first (2.4 GB) and aborts
    "declared-unique-count": (lambda reader: xlsx_streamed([_header_row().encode()], strings=(1, b"<si><t>x</t></si>"),
                                                            declared=(1, 100_000_000)), "共享文字"),
    # the same cell written millions of times: three rows and seven columns, and millions of cells to read
    "repeated-cells": (lambda reader: _repeated_cells(5_000_000 if reader == "roster" else 1_000_000), "单元格太多"),
}


@pytest.mark.parametrize("reader", ["roster", "sheets"])
@pytest.mark.parametrize("case", sorted(COSTLY))
def test_a_workbook_that_would_cost_too_much_to_parse_is_refused_first(case: str, reader: str,
                                                                       tmp_path: Path) -> None:
    build, phrase = COSTLY[case]
    data = build(reader)
    assert len(data) < 1_000_000  # small enough for every upload limit
    done = _in_capped_subprocess(reader, "花名册.xlsx", data, tmp_path, timeout=60)
    assert done.returncode == 0, f"the parser process died ({done.returncode}): {done.stderr[-500:]}"
    assert done.stdout.startswith("REFUSED "), done.stdout[:300]
    assert phrase in done.stdout and "请" in done.stdout, done.stdout


def test_merged_ranges_that_would_take_hours_to_fill_are_refused() -> None:
    """A roster's merged cells (户号 merged down a family's rows) are filled in row by row; 50,000 ranges each
    spanning 200,000 rows would be 10^10 cells to fill."""
    merges = b'<mergeCells count="50000">' + b'<mergeCell ref="A2:A200000"/>' * 50_000 + b"</mergeCells>"
    data = xlsx_streamed([_header_row().encode() + b'<row r="200000"><c r="A200000" t="n"><v>1</v></c></row>'],
                         after_sheet_data=merges)
    assert len(data) < 100_000
    import time
    started = time.monotonic()
    with pytest.raises(ValidationFailed, match="合并单元格太多") as exc:
        roster.read_sheet("花名册.xlsx", data)
    assert "请" in exc.value.message
    assert time.monotonic() - started < 30


def test_the_cost_of_a_real_roster_is_measured_and_within_the_limits() -> None:
    """What a workbook is measured at: cells, shared strings (real and declared), merged ranges, unpacked bytes."""
    from app.core.spreadsheet import measure_workbook

    strings = b"".join(b"<si><t>%d</t></si>" % i for i in range(3))
    cells = "".join(f'<row r="{r}"><c r="A{r}" t="s"><v>{r % 3}</v></c><c r="B{r}"><v>1</v></c></row>'
                    for r in range(3, 103))
    data = xlsx_by_hand(_header_row() + cells, extra={
        "xl/sharedStrings.xml": b'<sst count="100" uniqueCount="3">' + strings + b"</sst>",
        "xl/worksheets/sheet2.xml": b'<worksheet><sheetData/><mergeCells count="1"><mergeCell ref="A3:A4"/>'
                                    b"</mergeCells></worksheet>"})
    cost = measure_workbook(data)
    assert (cost.rows, cost.columns) == (102, 7)
    assert cost.cells == 7 + 3 + 200 and cost.shared_strings == 3 and cost.declared_strings == 100
    assert cost.merged == 1 and cost.unpacked > 9_000
    roster.read_sheet("花名册.xlsx", data)  # within every limit
