"""The two file parsers a clerk feeds (roster imports, rating sheets), fuzzed: random bytes, and real files mangled
(bytes flipped, cut short, spliced). Each file is either read, or refused with a Chinese ValidationFailed; nothing
else ever escapes (no crash, no 500). The roster import's whole path then keeps its promise on the same inputs: a
refused file writes nothing at all."""

from __future__ import annotations

import io
import re
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook
from sqlalchemy import func, select

from app import rules
from app.db import Database
from app.errors import ValidationFailed
from app.evaluation.service import sheets
from app.households.models import Household, ImportBatch, Member
from app.households.service import imports, roster
from tests.support.eval_helpers import CLERK
from tests.support.factories import make_village

CSV = ("户号,姓名,与户主关系,性别,出生日期,身份证号,联系电话\n"
       "001,张三,户主,男,1960-01-01,,13800000000\n"
       "001,李四,配偶,女,1962-02-02,,\n"
       "002,王五,户主,男,1970-03-03,,\n").encode()


def _xlsx() -> bytes:
    wb = Workbook()
    ws = wb.active
    for row in CSV.decode().splitlines():
        ws.append(row.split(","))
    buf = io.BytesIO()
    wb.save(buf)
    return _fixed_times(buf.getvalue())


def _fixed_times(data: bytes) -> bytes:
    """The workbook with its stored times fixed (openpyxl stamps the time of saving), so that the fuzzing's
    mangled copies are the same bytes on every run."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2026-01-01T00:00:00Z", body)
            z.writestr(zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0)), body,
                       compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


XLSX = _xlsx()


def _mangled(base: bytes) -> st.SearchStrategy[bytes]:
    """The file with some bytes changed, cut short, or with random bytes spliced in."""
    flips = st.lists(st.tuples(st.integers(0, len(base) - 1), st.integers(0, 255)), min_size=1, max_size=12).map(
        lambda changes: bytes(_apply(base, changes)))
    cut = st.integers(0, len(base) - 1).map(lambda n: base[:n])
    splice = st.tuples(st.integers(0, len(base)), st.binary(max_size=64)).map(lambda t: base[:t[0]] + t[1] + base[t[0]:])
    return st.one_of(flips, cut, splice)


def _apply(base: bytes, changes: list[tuple[int, int]]) -> bytearray:
    out = bytearray(base)
    for at, value in changes:
        out[at] = value
    return out


FILES = st.one_of(st.binary(max_size=2048), _mangled(CSV), _mangled(XLSX))
NAMES = st.sampled_from(["花名册.csv", "花名册.xlsx", "roster.xls", "名单.txt", ""])


@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples every run: CI stays stable
@given(name=NAMES, data=FILES)
def test_the_roster_reader_reads_or_refuses_in_chinese(name: str, data: bytes) -> None:
    try:
        sheet = roster.read_sheet(name, data)
    except ValidationFailed as e:
        assert e.message and any("\u4e00" <= ch <= "\u9fff" for ch in e.message), e.message
        return
    rows, problems = imports.parse_rows(sheet)  # whatever was read is checked row by row, never raises
    assert isinstance(rows, list) and all(p.message for p in problems)


@settings(max_examples=300, deadline=None, derandomize=True)  # the same examples every run: CI stays stable
@given(data=st.one_of(st.binary(max_size=2048), _mangled(XLSX)))
def test_the_rating_sheet_reader_reads_or_refuses_in_chinese(data: bytes) -> None:
    try:
        sheets._read(data)
    except ValidationFailed as e:
        assert e.message and any("\u4e00" <= ch <= "\u9fff" for ch in e.message), e.message


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, data=FILES)
def test_a_refused_roster_file_writes_nothing(db: Database, name: str, data: bytes) -> None:
    with db.write_txn() as s:
        vid = make_village(s).id
    with db.read_txn() as s:
        before = [s.execute(select(func.count()).select_from(t)).scalar_one() for t in (Household, Member, ImportBatch)]
    try:
        with db.write_txn() as s:
            batch = imports.preview(s, CLERK, village_id=vid, file_name=name, data=data)  # type: ignore[arg-type]
            batch_id = batch.id
    except ValidationFailed:
        with db.read_txn() as s:
            after = [s.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (Household, Member, ImportBatch)]
        assert after == before  # refused whole: not even a batch
        return
    with db.read_txn() as s:  # a preview keeps the batch and writes no roster row
        assert s.execute(select(func.count()).select_from(Household)).scalar_one() == before[0]
        assert s.get(ImportBatch, batch_id) is not None


def test_a_zip_claiming_a_newer_version_is_refused_not_a_crash() -> None:
    """Found by the fuzzing above: a central directory entry whose "version needed" is 6.4 made zipfile raise
    NotImplementedError, which escaped the rating-sheet reader as a 500."""
    at = XLSX.index(b"PK\x01\x02") + 6  # the first central directory entry's "version needed to extract"
    newer = XLSX[:at] + bytes([64, 0]) + XLSX[at + 2:]
    try:
        sheets._read(newer)
    except ValidationFailed as e:
        assert "无法读取这个文件" in e.message
    try:
        roster.read_sheet("花名册.xlsx", newer)
    except ValidationFailed as e:
        assert "无法读取" in e.message


# ---- issue 17, item 6: every parser, fuzzed -------------------------------------------------------------------------

# CSV rosters built from the pieces that break CSV: quotes, delimiters, line ends, long and invisible cells.
_CSV_PIECES = st.sampled_from(['"', '""', ",", "\r\n", "\n", "\r", "\t", ";", "，", "张三", "001", "户主", "配偶",
                               "x" * 3_000, "\x00", "\x07", "\u2028", "341021196503087017", " "])
BAD_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
CSV_BODIES = st.lists(_CSV_PIECES, max_size=80).map(lambda parts: "户号,姓名,与户主关系\r\n" + "".join(parts))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(body=CSV_BODIES, encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]))
def test_a_csv_roster_of_quotes_and_delimiters_is_read_or_refused_naming_the_line(body: str, encoding: str) -> None:
    """Read, or refused in Chinese; and nothing a problem quotes back holds a NUL or control character (the
    problems are stored with the preview: PostgreSQL would refuse the NUL)."""
    try:
        data = body.encode(encoding)
    except UnicodeEncodeError:
        return
    try:
        sheet = roster.read_sheet("花名册.csv", data)
    except ValidationFailed as e:
        assert e.message and any("\u4e00" <= ch <= "\u9fff" for ch in e.message), e.message
        assert not BAD_CHARACTER.search(e.message)
        return
    _rows, problems = imports.parse_rows(sheet)
    for p in problems:
        assert not BAD_CHARACTER.search(p.message + (p.column or "")), p


def _mangled_text(base: str) -> st.SearchStrategy[str]:
    """The text with pieces of TOML syntax (and worse) put in, or parts taken out or repeated."""
    syntax = st.sampled_from(["[", "]", "[[", "]]", "{", "}", '"', "'", '"""', "=", ".", ",", "#", "\n", "\\",
                              "\\u0000", "\x00", "\x07", "1979-13-45", "1e309", "inf", "nan", "9" * 40, "a.b.c",
                              "[" * 600, "{a=" * 300, ".a" * 300])
    insert = st.tuples(st.integers(0, len(base)), syntax).map(lambda t: base[:t[0]] + t[1] + base[t[0]:])
    cut = st.tuples(st.integers(0, len(base)), st.integers(0, 200)).map(lambda t: base[:t[0]] + base[t[0] + t[1]:])
    repeat = st.tuples(st.integers(0, len(base)), st.integers(1, 400), st.integers(2, 50)).map(
        lambda t: base[:t[0]] + base[t[0]:t[0] + t[1]] * t[2] + base[t[0]:])
    return st.one_of(insert, cut, repeat)


DEFAULT_TOML = rules.dumps(rules.default_ruleset())
NESTED_TOML = st.tuples(st.sampled_from(["[", "{a = ", "[{a = "]), st.integers(1, 3_000)).map(
    lambda t: "x = " + t[0] * t[1])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.one_of(st.text(max_size=500), _mangled_text(DEFAULT_TOML), NESTED_TOML))
def test_the_ruleset_reader_reads_or_refuses_in_chinese(text: str) -> None:
    try:
        rules.loads(text)
    except rules.RulesetInvalid as e:
        assert e.message and any("\u4e00" <= ch <= "\u9fff" for ch in e.message), e.message
        assert len(e.problems) <= 201  # listed up to 200, the rest counted


@settings(max_examples=100, deadline=None, derandomize=True)
@given(data=st.one_of(st.binary(max_size=2048), _mangled(DEFAULT_TOML.encode())))
def test_a_ruleset_file_of_any_bytes_is_read_or_refused_in_chinese(data: bytes) -> None:
    try:
        rules.loads(data)
    except rules.RulesetInvalid as e:
        assert e.message and any("\u4e00" <= ch <= "\u9fff" for ch in e.message), e.message
