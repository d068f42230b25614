"""Spreadsheets: writing ones safe to open (text a spreadsheet would run as a formula stays text), and what reading a
damaged one can raise."""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

# What reading a damaged or hostile zip (an .xlsx) can raise besides BadZipFile: a header claiming a newer zip
# version, a truncated or corrupt deflate stream, a bad offset. Each means "not a workbook we can read".
ZIP_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError,
                                           KeyError, zlib.error)


def inert(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula (=, +, -, @ first) is kept as text: an address, a note or a
    reason typed by anyone must never execute on the clerk's PC. Control characters, which a worksheet cannot hold
    (openpyxl refuses the whole file), are dropped: a stray one in a stored reason must not make the export fail."""
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("", value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not value.lstrip("\t").isdigit():
        return "'" + value
    return value


def xlsx_bytes(sheet: str, header: Sequence[Any], rows: Iterable[Sequence[Any]],
               widths: Sequence[int] | None = None) -> bytes:
    """One sheet: a header row and data rows, every text cell made inert."""
    return xlsx_sheets([(sheet, header, rows, widths or ())])


def xlsx_sheets(sheets: Iterable[tuple[str, Sequence[Any], Iterable[Sequence[Any]], Sequence[int]]]) -> bytes:
    """Several sheets, each (title, header row, data rows, column widths), every text cell made inert."""
    wb = Workbook(write_only=True)
    for title, header, rows, widths in sheets:
        ws = wb.create_sheet(title)
        for i, w in enumerate(widths):
            ws.column_dimensions[chr(ord("A") + i)].width = w
        ws.append(list(header))
        for r in rows:
            ws.append([inert(v) for v in r])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# ---- checking a workbook before the native parser sees it --------------------------------------------------------
#
# python-calamine builds every sheet as a full rectangle from A1 to the farthest cell. A 5 KB .xlsx with one cell at
# row 1,000,000, column 3,000 makes it allocate 96 GB, and Rust aborts the whole worker process: no exception to
# catch. It also makes room for as many shared strings as <sst uniqueCount> claims (24 bytes each: a claim of 10^8
# aborts it the same way), reads every shared string and every <c> (the same cell written millions of times is
# millions of cells), and every merged range. So what a workbook will cost is measured here first, from the bytes,
# with bounded memory and time: its extent, its cells, its shared strings (counted and as declared), its merged
# ranges and its unpacked size. A workbook beyond the caller's limits (or one that cannot be measured) never reaches
# calamine, and the measuring itself stops as soon as a count passes its limit.

ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
MAX_ZIP_ENTRIES = 2000
_CHUNK = 1 << 16
_MAX_TAIL = 1 << 22  # an XML tag split across chunks; no real tag is 4 MB long


class WorkbookRefused(ValueError):
    """The workbook must not be handed to the parser. str() is a Chinese message that says what to fix."""


class WorkbookUnreadable(WorkbookRefused):
    """The workbook's structure is broken or of a kind we do not read: the caller says "not a valid file"."""


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + ch - 64
    return n


def column_letters(n: int) -> str:
    s = ""
    while n > 0:
        n, rem = divmod(n - 1, 26)
        s = chr(65 + rem) + s
    return s


# <row …>, <c …> and <dimension …>, with or without a namespace prefix (<x:c …>); the attributes up to ">".
_TAG = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?(row|c|dimension)(?=[\s/>])([^>]*)>")
_REF_ATTR = re.compile(rb"""(?:^|\s)(r|ref)\s*=\s*["']\s*([^"']*)["']""")
_CELL_REF = re.compile(rb"\$?([A-Za-z]{0,7})\$?(\d{1,12})$")


class _SheetScan:
    """The farthest cell of one XML part, the way calamine places cells: a <c> without r="…" follows the one
    before it in its row, a <row> without r="…" follows the row before it. A <dimension ref> counts as well."""

    def __init__(self) -> None:
        self.rows = 0
        self.cols = 0
        self._row = 0  # 1-based; the current <row>
        self._col = 0  # 1-based; the last cell in the current row

    def feed(self, chunk: bytes) -> None:
        for m in _TAG.finditer(chunk):
            kind = m.group(1)
            attrs = {a.group(1): a.group(2).strip() for a in _REF_ATTR.finditer(m.group(2))}
            if kind == b"row":
                r = attrs.get(b"r", b"")
                self._row = int(r) if r.isdigit() and len(r) <= 12 else self._row + 1
                self._col = 0
            elif kind == b"c":
                ref = _CELL_REF.match(attrs.get(b"r", b""))
                if ref and ref.group(1):
                    row = int(ref.group(2))
                    col = _column_number(ref.group(1))
                else:
                    row, col = max(self._row, 1), self._col + 1
                self._col = col
                self.rows = max(self.rows, row)
                self.cols = max(self.cols, col)
            else:  # <dimension ref="A1:K100001">: the farthest corner it claims
                for part in attrs.get(b"ref", b"").split(b":"):
                    ref = _CELL_REF.match(part.strip())
                    if ref:
                        self.rows = max(self.rows, int(ref.group(2)))
                        self.cols = max(self.cols, _column_number(ref.group(1)))


def _inflate(data: bytes, info: zipfile.ZipInfo, budget: int) -> Iterable[bytes]:
    """The entry's bytes as they would be unpacked, decompressed here from the raw stream (the sizes the zip
    declares are not trusted), in pieces, stopping with WorkbookRefused once more than budget bytes came out."""
    if info.flag_bits & 0x1:
        raise WorkbookUnreadable("encrypted")
    at = info.header_offset
    head = data[at:at + 30]
    if len(head) < 30 or head[:4] != ZIP_MAGIC:
        raise WorkbookUnreadable("bad local header")
    start = at + 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little")
    end = start + info.compress_size
    if end > len(data):
        raise WorkbookUnreadable("truncated")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size > budget:
            raise _too_big_unpacked(budget)
        for i in range(start, end, _CHUNK):
            yield data[i:min(i + _CHUNK, end)]
        return
    if info.compress_type != zipfile.ZIP_DEFLATED:
        raise WorkbookUnreadable("compression")
    inflater = zlib.decompressobj(-15)
    out = 0
    pos = start
    pending = b""
    while True:
        if not pending:
            if pos >= end or inflater.eof:
                break
            pending, pos = data[pos:min(pos + _CHUNK, end)], min(pos + _CHUNK, end)
        piece = inflater.decompress(pending, _CHUNK)
        pending = inflater.unconsumed_tail
        out += len(piece)
        if out > budget:
            raise _too_big_unpacked(budget)
        if piece:
            yield piece
        elif inflater.eof:
            break
    tail = inflater.flush()
    if tail:
        out += len(tail)
        if out > budget:
            raise _too_big_unpacked(budget)
        yield tail


def _too_big_unpacked(budget: int) -> WorkbookRefused:
    return WorkbookRefused(f"文件解压后太大（超过 {budget // 1048576} MB）：这不像是一个正常的表格。"
                           "请删去无关的工作表、图片后，用 Excel 另存为 .xlsx 再上传")


# Every <c> tag: with the letters and digits of its r="K100001", or two empty groups when it names no cell.
_C_TAG = re.compile(rb"""<(?:[A-Za-z_][\w.\-]*:)?c(?:\s[^>]*?(?<![\w:.\-])r\s*=\s*["']\$?([A-Za-z]{1,7})\$?(\d{1,12})["']"""
                    rb"""|(?=[\s/>]))""")
_DIMENSION = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?dimension\s[^>]*>")


_SI_TAG = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?si(?=[\s/>])")
_MERGE_TAG = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?mergeCell(?=[\s/>])")
_SST_TAG = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?sst\s[^>]*>")
_SST_COUNT = re.compile(rb"""(?:^|\s)(?:count|uniqueCount)\s*=\s*["']\s*(\d+)""")


@dataclass
class WorkbookCost:
    """What reading a workbook will take, measured from its bytes. Counts cover every part of the file."""

    rows: int = 0  # the farthest cell of any sheet: the rectangle calamine builds
    columns: int = 0
    cells: int = 0  # <c> elements (an .xls: cell records)
    shared_strings: int = 0  # <si> elements (an .xls: the SST's own count)
    declared_strings: int = 0  # the largest count / uniqueCount an <sst> claims (calamine makes room for those)
    merged: int = 0  # <mergeCell> elements (an .xls: ranges in MERGEDCELLS records)
    unpacked: int = 0  # bytes, every part unpacked (an .xls: the file itself)


@dataclass(frozen=True)
class WorkbookLimits:
    """The most a caller's workbooks may cost. Each is far beyond what its real files reach (see docs/operations.md)."""

    max_unpacked: int
    max_rows: int
    max_cells: int  # the <c> elements written, in every part; and the rectangle, unless max_grid says otherwise
    max_strings: int  # shared strings, counted or declared
    max_merged: int
    max_columns: int = 16384
    max_grid: int | None = None  # the rectangle (rows x columns); None: max_cells


class _FastScan:
    """The common case, at C speed: every <c> names its cell (r="K100001"), so the farthest cell is the largest of
    those. A part with any <c> that does not is measured again by _SheetScan for its extent; the counts (cells,
    shared strings, merged ranges) are always this scan's."""

    def __init__(self, cost: WorkbookCost, limits: WorkbookLimits | None = None) -> None:
        self.rows = 0
        self.cols = 0
        self.unnamed = False
        self._dimension = _SheetScan()
        self.cost = cost
        self.limits = limits

    def feed(self, chunk: bytes) -> None:
        cells = _C_TAG.findall(chunk)
        cost = self.cost
        if b"<" in chunk:
            cost.cells += len(cells)
            if b"si" in chunk:
                cost.shared_strings += len(_SI_TAG.findall(chunk))
            if b"mergeCell" in chunk:
                cost.merged += len(_MERGE_TAG.findall(chunk))
            if b"sst" in chunk:
                for tag in _SST_TAG.findall(chunk):
                    for digits in _SST_COUNT.findall(tag):
                        claimed = int(digits) if len(digits) <= 15 else 10 ** 15
                        cost.declared_strings = max(cost.declared_strings, claimed)
            if self.limits is not None:
                _check_counts(cost, self.limits)
        if cells and not self.unnamed:
            letters = set(map(itemgetter(0), cells))
            if b"" in letters:
                self.unnamed = True
            else:
                self.rows = max(self.rows, max(map(int, map(itemgetter(1), cells))))
                self.cols = max(self.cols, max(map(_column_number, letters)))
        if b"dimension" in chunk:
            for m in _DIMENSION.findall(chunk):
                self._dimension.feed(m)
        self.rows = max(self.rows, self._dimension.rows)
        self.cols = max(self.cols, self._dimension.cols)


def _scan_part(data: bytes, info: zipfile.ZipInfo, budget: int, scan: _FastScan | _SheetScan) -> int:
    """Feed the part to scan, whole tags at a time; the number of bytes it unpacked to."""
    used = 0
    tail = b""
    for piece in _inflate(data, info, budget):
        used += len(piece)
        buf = tail + piece
        cut = buf.rfind(b">") + 1
        scan.feed(buf[:cut])
        tail = buf[cut:]
        if len(tail) > _MAX_TAIL:
            tail = tail[-_MAX_TAIL:]  # text, not a tag: keep only what could still start one
    scan.feed(tail)
    return used


def _xlsx_cost(data: bytes, max_unpacked: int, limits: WorkbookLimits | None) -> WorkbookCost:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = z.infolist()
    except ZIP_ERRORS:
        raise WorkbookUnreadable("not a zip") from None
    if len(infos) > MAX_ZIP_ENTRIES:
        raise WorkbookUnreadable("too many parts")
    names = {i.filename for i in infos}
    # calamine tries .xlsx, then .xlsb, then .ods: only an .xlsx is measured here, so the others are refused
    if "xl/workbook.bin" in names:
        raise WorkbookRefused("这是 Excel 二进制工作簿（.xlsb）：请在 Excel 中另存为 .xlsx 格式后再上传")
    if "content.xml" in names or "mimetype" in names:
        raise WorkbookRefused("这是 OpenDocument 表格（.ods）：请在 WPS 或 Excel 中另存为 .xlsx 格式后再上传")
    if "xl/workbook.xml" not in names:
        raise WorkbookUnreadable("no workbook")
    cost = WorkbookCost()
    budget = max_unpacked
    for info in infos:  # every part, whatever its name: a sheet can live at any path the workbook points to
        fast = _FastScan(cost, limits)
        used = _scan_part(data, info, budget, fast)
        scan: _FastScan | _SheetScan = fast
        if fast.unnamed:
            scan = _SheetScan()
            _scan_part(data, info, budget, scan)
        budget -= used
        cost.unpacked += used
        cost.rows, cost.columns = max(cost.rows, scan.rows), max(cost.columns, scan.cols)
    return cost


# ---- .xls: the compound file (OLE) and its BIFF records ----------------------------------------------------------

_ENDOFCHAIN, _FREESECT = 0xFFFFFFFE, 0xFFFFFFFF
# cell records that start with the cell's row and column (BIFF2 to BIFF8)
_BIFF_CELLS = frozenset({0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0006, 0x0206, 0x0406, 0x0201, 0x0203, 0x0204,
                         0x0205, 0x027E, 0x00FD, 0x00D6})
_BIFF_MULTI = frozenset({0x00BD, 0x00BE})  # MULRK, MULBLANK: row, first column, …, last column at the end
_BIFF_SST, _BIFF_BOUNDSHEET, _BIFF_EOF, _BIFF_MERGEDCELLS = 0x00FC, 0x0085, 0x000A, 0x00E5


def _u32s(b: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(b) // 4}I", b[:len(b) // 4 * 4])


def _ole_stream(data: bytes) -> bytes:
    """The Workbook (or Book) stream of an .xls, read strictly: every sector, chain and size must lie inside the
    file, so nothing the header claims can make anyone allocate more than the file holds."""
    if len(data) < 512 or data[:8] != OLE_MAGIC:
        raise WorkbookUnreadable("not ole")
    shift, mini_shift = struct.unpack_from("<HH", data, 30)
    if shift not in (9, 12) or mini_shift != 6 or struct.unpack_from("<I", data, 56)[0] != 4096:
        raise WorkbookUnreadable("sector sizes")
    size = 1 << shift
    n_sectors = max(0, (len(data) - 1) // size)  # the header fills the first sector

    def sector(i: int) -> bytes:
        if i >= n_sectors:
            raise WorkbookUnreadable("sector outside the file")
        return data[size * (i + 1):size * (i + 2)]

    def chain(start: int, table: Sequence[int], limit: int) -> list[int]:
        out: list[int] = []
        while start not in (_ENDOFCHAIN, _FREESECT):
            if start >= len(table) or len(out) > limit:
                raise WorkbookUnreadable("bad chain")
            out.append(start)
            start = table[start]
        return out

    # counts the header gives, which a reader may make room for before reading: none may exceed the file
    dir_len, fat_len, _, _, _, _, minifat_len, _, difat_len = struct.unpack_from("<9I", data, 40)
    if max(dir_len, fat_len, minifat_len, difat_len) > n_sectors:
        raise WorkbookUnreadable("header counts")
    difat = list(_u32s(data[76:512]))
    nxt = struct.unpack_from("<I", data, 68)[0]
    for _ in range(n_sectors + 1):
        if nxt in (_ENDOFCHAIN, _FREESECT):
            break
        s = sector(nxt)
        difat += _u32s(s[:-4])
        nxt = struct.unpack_from("<I", s, size - 4)[0]
    else:
        raise WorkbookUnreadable("difat loop")
    fat_ids = [i for i in difat if i != _FREESECT]
    if len(fat_ids) > n_sectors:
        raise WorkbookUnreadable("fat longer than the file")
    fat = _u32s(b"".join(sector(i) for i in fat_ids))

    directory = b"".join(sector(i) for i in chain(struct.unpack_from("<I", data, 48)[0], fat, n_sectors))
    entries = [directory[i:i + 128] for i in range(0, len(directory) - 127, 128)]
    if not entries:
        raise WorkbookUnreadable("no directory")
    wanted = None
    for e in entries:
        if struct.unpack_from("<Q" if size == 4096 else "<I", e, 120)[0] > len(data):
            raise WorkbookUnreadable("a stream longer than the file")
    for e in entries:
        name_len = min(struct.unpack_from("<H", e, 64)[0], 64)
        if e[66] == 2 and e[:name_len].decode("utf-16-le", "ignore").rstrip("\0") in ("Workbook", "Book"):
            wanted = e
            break
    if wanted is None:
        raise WorkbookUnreadable("no workbook stream")
    start = struct.unpack_from("<I", wanted, 116)[0]
    length = struct.unpack_from("<Q" if size == 4096 else "<I", wanted, 120)[0]
    if length > len(data):
        raise WorkbookUnreadable("stream longer than the file")
    if length >= 4096:  # a normal stream
        return b"".join(sector(i) for i in chain(start, fat, n_sectors))[:length]
    root = entries[0]  # a small stream lives in the root entry's mini stream, in 64-byte sectors
    mini = b"".join(sector(i) for i in chain(struct.unpack_from("<I", root, 116)[0], fat, n_sectors))
    minifat = _u32s(b"".join(sector(i) for i in chain(struct.unpack_from("<I", data, 60)[0], fat, n_sectors)))
    out = b"".join(mini[64 * i:64 * i + 64] for i in chain(start, minifat, len(mini) // 64))
    if len(out) < length:
        raise WorkbookUnreadable("short stream")
    return out[:length]


def _xls_cost(data: bytes) -> WorkbookCost:
    """The farthest cell of any sheet, and the cells, strings and merged ranges. calamine reads the globals from the
    start of the stream and each sheet from the offset its BOUNDSHEET record gives (which may lie anywhere), so
    every such walk is followed here."""
    stream = _ole_stream(data)
    cost = WorkbookCost(unpacked=len(data))
    rows = cols = 0
    visited = bytearray(len(stream) + 1)
    starts = [(0, False)]
    while starts:
        at, sheet = starts.pop()
        while at + 4 <= len(stream) and not visited[at]:
            visited[at] = 1
            kind, length = struct.unpack_from("<HH", stream, at)
            body = stream[at + 4:at + 4 + length]
            at += 4 + length
            if kind in _BIFF_CELLS and len(body) >= 4:
                r, c = struct.unpack_from("<HH", body)
                rows, cols = max(rows, r + 1), max(cols, c + 1)
                cost.cells += 1
            elif kind in _BIFF_MULTI and len(body) >= 6:
                r, c = struct.unpack_from("<HH", body)
                last = struct.unpack_from("<H", body, len(body) - 2)[0]
                rows, cols = max(rows, r + 1), max(cols, c + 1, last + 1)
                cost.cells += max(1, last - c + 1)
            elif kind == _BIFF_SST and len(body) >= 8:
                # calamine makes room for this many strings before reading them; each takes at least 3 bytes
                unique = struct.unpack_from("<i", body, 4)[0]
                if not 0 <= unique <= len(stream) // 3:
                    raise WorkbookUnreadable("string table")
                cost.shared_strings = cost.declared_strings = max(cost.shared_strings, unique)
            elif kind == _BIFF_MERGEDCELLS and len(body) >= 2:
                cost.merged += struct.unpack_from("<H", body)[0]
            elif kind == _BIFF_BOUNDSHEET and len(body) >= 4:
                starts.append((struct.unpack_from("<I", body)[0], True))
            elif kind == _BIFF_EOF and sheet:
                break
    cost.rows, cost.columns = rows, cols
    return cost


_DAMAGED: tuple[type[Exception], ...] = (*ZIP_ERRORS, struct.error, IndexError, OverflowError, MemoryError)


def measure_workbook(data: bytes, limits: WorkbookLimits | None = None, *,
                     max_unpacked: int = 256 * 1024 * 1024) -> WorkbookCost:
    """What reading this .xlsx or .xls will cost (WorkbookCost), measured without the native parser. With limits,
    a workbook beyond any of them is refused (WorkbookRefused, in Chinese, saying what to fix), the counting
    stopping as soon as one passes. Raises WorkbookUnreadable for a broken file or one of another kind (.xlsb,
    .ods say so in their message), WorkbookRefused for a zip that unpacks to more than max_unpacked bytes
    (limits.max_unpacked when given)."""
    try:
        if data[:4] == ZIP_MAGIC:
            cost = _xlsx_cost(data, limits.max_unpacked if limits else max_unpacked, limits)
        elif data[:8] == OLE_MAGIC:
            cost = _xls_cost(data)
        else:
            raise WorkbookUnreadable("neither xlsx nor xls")
    except WorkbookRefused:
        raise
    except _DAMAGED:  # a damaged file (found by fuzzing): not one we can measure
        raise WorkbookUnreadable("damaged") from None
    if limits is not None:
        check_cost(cost, limits)
    return cost


def workbook_extent(data: bytes, *, max_unpacked: int = 256 * 1024 * 1024) -> tuple[int, int]:
    """(rows, columns) of the largest rectangle any sheet of this .xlsx or .xls would be read as."""
    cost = measure_workbook(data, max_unpacked=max_unpacked)
    return cost.rows, cost.columns


def _check_counts(cost: WorkbookCost, limits: WorkbookLimits) -> None:
    """The counts that can only grow while a file is read: checked as they are counted."""
    strings = max(cost.shared_strings, cost.declared_strings)
    if strings > limits.max_strings:
        raise WorkbookRefused(
            f"表格里的共享文字太多（{_at_least(strings, limits.max_strings)} 条，正常的表格不会超过 {limits.max_strings} 条）："
            "这个文件多半不是正常保存的表格。请用 Excel 或 WPS 打开，把需要的内容复制到一个新表格，另存为 .xlsx 后再上传")
    if cost.cells > limits.max_cells:
        raise WorkbookRefused(
            f"表格的单元格太多（超过 {limits.max_cells} 个）：请只保留有内容的行和列，删去无关的工作表，"
            "另存为 .xlsx 后再上传")
    if cost.merged > limits.max_merged:
        raise WorkbookRefused(
            f"表格里的合并单元格太多（超过 {limits.max_merged} 处）：请全选表格，点“取消合并单元格”，另存后再上传")


def _at_least(n: int, limit: int) -> str:
    return f"至少 {n}" if n <= 10 ** 12 else f"超过 {limit}"


def check_cost(cost: WorkbookCost, limits: WorkbookLimits) -> None:
    """Refuse (WorkbookRefused, in Chinese, saying what to fix) a workbook that would cost more than limits allow.
    Besides each count on its own: a workbook holds no more distinct strings than it has cells to show them (Excel
    and WPS keep only the strings in use), so strings far beyond the cells mean a file made to be expensive."""
    _check_counts(cost, limits)
    strings = max(cost.shared_strings, cost.declared_strings)
    if strings > 2 * cost.cells + 10_000:
        raise WorkbookRefused(
            f"表格里的共享文字太多（{strings} 条，而表格只有 {cost.cells} 个单元格）：这个文件多半不是正常保存的表格。"
            "请用 Excel 或 WPS 打开，把需要的内容复制到一个新表格，另存为 .xlsx 后再上传")
    check_extent(cost.rows, cost.columns, max_rows=limits.max_rows, max_columns=limits.max_columns,
                 max_cells=limits.max_cells if limits.max_grid is None else limits.max_grid)


def check_extent(rows: int, cols: int, *, max_rows: int, max_columns: int = 16384, max_cells: int) -> None:
    """Refuse (WorkbookRefused, in Chinese, saying what to fix) a sheet whose farthest cell makes it too large."""
    if rows > max_rows or cols > max_columns or rows * cols > max_cells:
        raise WorkbookRefused(
            f"表格的范围太大（最远的单元格在第 {rows} 行第 {cols} 列，即 {column_letters(cols)}{rows}）："
            "请只保留有内容的行和列（选中多余的行或列，右键“删除”，不要只是“清除内容”），另存后再上传")
