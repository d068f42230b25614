"""Rating sheets (评分表): the Excel route for entering a month's grades.

The committee clerk downloads the round's sheet (the month's roster, one column per theme with a dropdown of that
theme's grades, prefilled with the grades already saved), fills it offline, uploads it, sees a preview of what it
would change and every problem named by row and column, and confirms. Confirming goes through
`rounds.save_ratings`, which checks the scale and recusal again: nothing is saved unless every cell is good.

Every sheet carries a marker (a very hidden sheet, and the same code printed in its info line) naming the round, the
village, the month and the rater, so that a sheet of another village or month is refused instead of imported.
Blank cells mean "leave unchanged": a sheet never clears a grade (that is done on the page).

Services flush, never commit.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import python_calamine
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import rules
from app.audit import service as audit
from app.committee import service as committee
from app.core.context import Actor
from app.core.spreadsheet import WorkbookLimits, WorkbookRefused, WorkbookUnreadable, inert, measure_workbook
from app.core.text import visible
from app.errors import Conflict, NotFound, ValidationFailed
from app.evaluation.models import EvalRound, SheetUpload
from app.evaluation.service import rounds
from app.households.models import Household
from app.org.models import Village
from app.rulesets import service as rulesets

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MAX_BYTES = 5 * 1024 * 1024
MAX_UNPACKED_BYTES = 100 * 1024 * 1024  # a small zip that unpacks to gigabytes is refused before it is read
MAX_ROWS = 20_000
MAX_COLUMNS = 100
# A real sheet: one village's households (a few thousand) x (4 + the themes): well under 200,000 cells, a few
# thousand distinct strings, no merged ranges. These are the most a sheet may cost before calamine opens it.
MAX_CELLS = 400_000
MAX_STRINGS = 400_000
MAX_MERGED = 20_000
MAX_PROBLEMS = 200  # stored; the rest are counted in one closing line

SHEET = "评分表"
META_SHEET = "系统标记"
FORMAT = "zhenfeng-rating-sheet/1"
HEADERS = ("户号", "户主", "村民小组", "备注")
_MARK_RE = re.compile(r"ZF-R(\d{1,12})-V(\d{1,12})-M(\d{6})-P(\d{1,12})")
_THEME_CODE_RE = re.compile(r"[（(]\s*([A-Za-z][A-Za-z0-9_]{0,31})\s*[)）]\s*$")
_HEADER_NOISE = re.compile(r"[\s*＊:：]")
_FILE_NAME_BAD = re.compile(r'[\\/:*?"<>|\x00-\x1f\s]+')
_FORMULA_FIRST = ("=", "+", "-", "@", "\t", "\r")

_OLE_MAGIC = b"\xd0\xcf\x11\xe0"
_ZIP_MAGIC = b"PK\x03\x04"

_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=14)
_NOTE = Font(color="666666", size=9)
_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_INPUT_FILL = PatternFill("solid", fgColor="FFF9E5")
_BARRED_FILL = PatternFill("solid", fgColor="D9D9D9")
_THIN = Side(style="thin", color="BFBFBF")
_BORDER = Border(left=_THIN, right=_THIN, top=_THIN, bottom=_THIN)


# ---- the marker ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Marker:
    """Which round, village, month and rater a sheet was made for."""

    round_id: int
    village_id: int
    month: int
    rater_id: int
    village_name: str = ""

    @property
    def code(self) -> str:
        return f"ZF-R{self.round_id}-V{self.village_id}-M{self.month}-P{self.rater_id}"


def _marker_of(rnd: EvalRound, village_name: str, rater_id: int) -> Marker:
    assert rnd.id is not None
    return Marker(rnd.id, rnd.village_id, rnd.month, rater_id, village_name)


# ---- helpers -------------------------------------------------------------------------------------------------------


def _reject(message: str) -> ValidationFailed:
    return ValidationFailed(message, code="bad_rating_sheet")


def _check_rater(session: Session, rnd: EvalRound, rater_id: int) -> committee.Eligibility | None:
    """The same rule as `rounds.save_ratings`: consensus rounds take the committee's agreed grades (rater 0), panel
    rounds each member's own. Returns the village's eligibility for a member's sheet (None for consensus)."""
    if rnd.mode == "consensus" and rater_id != rounds.CONSENSUS:
        raise ValidationFailed("本轮由委员会合议评定，等级由文书录入；委员个人不单独评分")
    if rnd.mode == "panel" and rater_id == rounds.CONSENSUS:
        raise ValidationFailed("本轮由委员各自评分：请委员本人登录下载自己的评分表，或改用合议方式")
    if rater_id == rounds.CONSENSUS:
        return None
    elig = committee.eligibility(session, rnd.village_id)
    if rater_id not in elig.members:
        raise ValidationFailed("您不是本村评比委员会的委员（或尚未关联本人农户），不能评分")
    return elig


def _rater_label(rater_id: int, elig: committee.Eligibility | None) -> str:
    if rater_id == rounds.CONSENSUS or elig is None:
        return "委员会合议（文书录入）"
    return f"委员 {elig.members.get(rater_id, rater_id)}"


def _grade_list(theme: rules.Theme) -> list[str]:
    """The theme's grade codes, best first (as the dropdown lists them)."""
    return [g.code for g in theme.scale()[::-1]]


def _text(value: Any) -> str:
    """A cell as the text a clerk sees: whole numbers without ".0", surrounding spaces (also full-width) trimmed."""
    if value is None or isinstance(value, bool):
        return "" if value is None else ("TRUE" if value else "FALSE")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return visible(str(value).strip())  # quoted back in problems: no NUL or control character (PostgreSQL refuses NUL)


def _uninert(text: str) -> str:
    """Text written inert (a leading apostrophe before =, +, -, @) as it was before."""
    return text[1:] if text[:1] == "'" and text[1:2] in _FORMULA_FIRST else text


def _norm_header(value: Any) -> str:
    return _HEADER_NOISE.sub("", _text(value))


def _safe_file_name(name: str) -> str:
    return _FILE_NAME_BAD.sub("", name) or "评分表"


# ---- download ------------------------------------------------------------------------------------------------------


def download(session: Session, rnd: EvalRound, *, rater_id: int = rounds.CONSENSUS) -> tuple[bytes, str, str]:
    """The round's rating sheet: (xlsx bytes, file name, media type). Prefilled with the grades saved for the rater;
    for a member's sheet (panel rounds) the households the member must not rate are marked 回避 and shaded."""
    assert rnd.id is not None
    elig = _check_rater(session, rnd, rater_id)
    village = session.get(Village, rnd.village_id)
    village_name = village.name if village else ""
    month = rulesets.month_label(rnd.month)
    ruleset = rounds.ruleset_of(session, rnd)
    themes = ruleset.themes
    entries = rounds.roster(session, rnd)
    saved = rounds.grid(session, rnd, rater_id=rater_id)
    marker = _marker_of(rnd, village_name, rater_id)
    rater = _rater_label(rater_id, elig)

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = SHEET
    ncols = len(HEADERS) + len(themes)
    scales = {tuple(_grade_list(t)) for t in themes}
    legend = "、".join(next(iter(scales))) if len(scales) == 1 else "见各列下拉框"
    ws.append([inert(f"{village_name} {month} 文明新风评比评分表")])
    ws.append([inert(f"村：{village_name}　月份：{month}　评比轮次：第 {rnd.id} 号"
                     f"（{rounds.STATUS_LABELS.get(rnd.status, rnd.status)}）　评分人：{rater}　"
                     f"细则：{ruleset.name}　表格编号：{marker.code}")])
    ws.append([inert(f"填写说明：在各评比项目列中从下拉框选择等级（{legend}）。留空表示不修改已保存的等级（要清除等级请在网页上操作）。"
                     "不要改动户号和表头，不要增删列；填好后在本轮评比页面上传，核对预览无误后点“确认导入”。")])
    header_row = ws.max_row + 1
    ws.append([*HEADERS, *(inert(f"{t.name}（{t.code}）") for t in themes)])
    first = header_row + 1
    for e in entries:
        barred = elig is not None and not elig.may_rate(rater_id, e.household_id)
        note = "、".join(x for x in (e.note, "回避（不评）" if barred else "") if x)
        grades = [None if barred else saved.get((e.household_id, t.code)) for t in themes]
        ws.append([inert(e.number), inert(e.head_name), inert(e.group_name), inert(note), *grades])
        r = ws.max_row
        ws.cell(r, 1).number_format = "@"  # 户号 stays text: "003" keeps its zeros
        for ci in range(1, ncols + 1):
            c = ws.cell(r, ci)
            c.border = _BORDER
            if ci > len(HEADERS):
                c.fill = _BARRED_FILL if barred else _INPUT_FILL
                c.alignment = Alignment(horizontal="center")
    last = max(first, ws.max_row)

    ws.cell(1, 1).font = _TITLE
    ws.cell(2, 1).font = _NOTE
    ws.cell(3, 1).font = _NOTE
    ws.row_dimensions[header_row].height = 30
    for ci in range(1, ncols + 1):
        c = ws.cell(header_row, ci)
        c.font, c.fill, c.border = _BOLD, _HEADER_FILL, _BORDER
        c.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for ci, width in enumerate((10, 12, 12, 14), start=1):
        ws.column_dimensions[get_column_letter(ci)].width = width
    for ti, t in enumerate(themes):
        col = get_column_letter(len(HEADERS) + 1 + ti)
        ws.column_dimensions[col].width = max(12, len(t.name) * 2 + len(t.code) + 4)
        codes = _grade_list(t)
        dv = DataValidation(type="list", formula1='"' + ",".join(codes) + '"', allow_blank=True,
                            showErrorMessage=True, errorStyle="stop", errorTitle="等级不在评分标准内",
                            error=f"{t.name}只能填：{'、'.join(codes)}（也可以留空）",
                            showInputMessage=True, promptTitle=t.name[:32], prompt=f"可填：{'、'.join(codes)}")
        dv.add(f"{col}{first}:{col}{last}")
        ws.add_data_validation(dv)
    ws.freeze_panes = f"C{first}"
    ws.auto_filter.ref = f"A{header_row}:{get_column_letter(ncols)}{last}"
    ws.print_title_rows = f"{header_row}:{header_row}"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True

    meta = wb.create_sheet(META_SHEET)
    meta.sheet_state = "veryHidden"
    for row in (("说明", "请勿修改：上传时用本页核对评分表属于哪个村、哪个月、哪一轮"), ("format", FORMAT),
                ("round_id", rnd.id), ("village_id", rnd.village_id), ("village", inert(village_name)),
                ("month", rnd.month), ("rater_id", rater_id), ("ruleset", inert(f"{ruleset.code} v{ruleset.version}")),
                ("marker", marker.code)):
        meta.append(list(row))

    buf = io.BytesIO()
    wb.save(buf)
    suffix = "" if elig is None else f"-{elig.members.get(rater_id, '')}"
    name = _safe_file_name(f"评分表-{village_name}-{month}{suffix}") + ".xlsx"
    return buf.getvalue(), name, MEDIA_TYPE


# ---- reading an uploaded sheet ---------------------------------------------------------------------------------------


@dataclass
class _Read:
    cells: list[list[Any]]  # the rating sheet, from A1
    meta: list[list[Any]] | None  # the marker sheet, if the file still has it


def _read(data: bytes) -> _Read:
    if not data:
        raise _reject("上传的文件是空的")
    if len(data) > MAX_BYTES:
        raise _reject(f"文件太大（{len(data) / 1048576:.1f} MB）：评分表不能超过 {MAX_BYTES // 1048576} MB。"
                      "请上传本系统下载的评分表，不要在里面插入图片")
    if data[:4] == _OLE_MAGIC:
        raise _reject("这是旧版 Excel（.xls）文件：请在 Excel 或 WPS 中另存为 .xlsx 格式后再上传")
    unreadable = _reject("无法读取这个文件：它不是有效的 Excel（.xlsx）表格（可能是改了扩展名的其他文件，或文件已损坏）。"
                         "请上传本系统下载并填写好的评分表")
    if data[:4] != _ZIP_MAGIC:
        raise unreadable
    # the rectangle is checked below, with this sheet's own words
    limits = WorkbookLimits(max_unpacked=MAX_UNPACKED_BYTES, max_rows=2**62, max_columns=2**62, max_grid=2**62,
                            max_cells=MAX_CELLS, max_strings=MAX_STRINGS, max_merged=MAX_MERGED)
    try:  # measured before calamine sees it: one far-away cell, or millions of strings, must not cost gigabytes
        cost = measure_workbook(data, limits)
        height, width = cost.rows, cost.columns
    except WorkbookUnreadable:
        raise unreadable from None
    except WorkbookRefused as e:
        raise _reject(str(e)) from None
    if height > MAX_ROWS:
        raise _reject(f"表格有 {height} 行，太多了：评分表最多 {MAX_ROWS} 行。请上传本系统下载的评分表")
    if width > MAX_COLUMNS:  # the sheet is read as a full rectangle: a far-away cell must not make it huge
        raise _reject(f"表格有 {width} 列，太多了：评分表最多 {MAX_COLUMNS} 列。请上传本系统下载的评分表")
    try:
        wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        names = list(wb.sheet_names)
        if SHEET in names:
            sheet = wb.get_sheet_by_name(SHEET)
        else:
            shown = [m.name for m in wb.sheets_metadata
                     if str(m.visible).endswith("Visible") and m.name != META_SHEET]
            if not shown:
                raise unreadable
            sheet = wb.get_sheet_by_name(shown[0])
        if sheet.height > MAX_ROWS:
            raise _reject(f"表格有 {sheet.height} 行，太多了：评分表最多 {MAX_ROWS} 行。请上传本系统下载的评分表")
        if sheet.width > MAX_COLUMNS:  # the sheet is read as a full rectangle: a far-away cell must not make it huge
            raise _reject(f"表格有 {sheet.width} 列，太多了：评分表最多 {MAX_COLUMNS} 列。请上传本系统下载的评分表")
        cells = sheet.to_python(skip_empty_area=False)
        meta = wb.get_sheet_by_name(META_SHEET).to_python(skip_empty_area=False) if META_SHEET in names else None
    except ValidationFailed:
        raise
    except Exception:
        raise unreadable from None
    return _Read(cells, meta)


def _read_marker(read: _Read) -> Marker | None:
    if read.meta:
        kv = {_text(r[0]): r[1] for r in read.meta if len(r) >= 2 and _text(r[0])}
        if _text(kv.get("format")) == FORMAT:
            try:
                return Marker(int(_text(kv["round_id"])), int(_text(kv["village_id"])), int(_text(kv["month"])),
                              int(_text(kv["rater_id"])), _uninert(_text(kv.get("village"))))
            except (KeyError, ValueError):
                raise _reject("评分表里的系统标记已损坏，无法确认它属于哪一轮：请重新下载本轮的评分表填写后上传") from None
    for row in read.cells[:10]:  # the marker sheet lost (the sheet copied into another workbook): the info line
        for c in row:
            m = _MARK_RE.search(_text(c))
            if m:
                return Marker(int(m[1]), int(m[2]), int(m[3]), int(m[4]))
    return None


def _check_marker(session: Session, marker: Marker | None, rnd: EvalRound, rater_id: int,
                  elig: committee.Eligibility | None) -> None:
    if marker is None:
        raise _reject("这不是本系统下载的评分表（找不到表格编号）：请在本轮评比页面下载评分表，填写后再上传")
    if (marker.round_id, marker.village_id, marker.month) != (rnd.id, rnd.village_id, rnd.month):
        village = session.get(Village, rnd.village_id)
        here = f"{village.name if village else ''} {rulesets.month_label(rnd.month)}".strip()
        theirs = marker.village_name
        if not theirs and marker.village_id == rnd.village_id and village is not None:
            theirs = village.name
        month = rulesets.month_label(marker.month) if 1 <= marker.month % 100 <= 12 else str(marker.month)
        raise _reject(f"这是 {theirs or '另一个村'} {month} 的评分表，不是本轮的（本轮是 {here}）。"
                      "请下载本轮的评分表填写后上传")
    if marker.rater_id != rater_id:
        if marker.rater_id == rounds.CONSENSUS or (elig is not None and marker.rater_id in elig.members):
            whose = _rater_label(marker.rater_id, elig)
        else:
            whose = "另一位委员"
        raise _reject(f"这是{whose}的评分表，不是{_rater_label(rater_id, elig)}的：请下载自己的评分表填写后上传")


@dataclass(frozen=True)
class _Column:
    index: int
    letter: str
    header: str
    theme: rules.Theme | None  # None: a theme column this round's ruleset does not have


def _columns(cells: list[list[Any]], ruleset: rules.Ruleset) -> tuple[int, int, int | None, list[_Column], list[str]]:
    """(header row index, 户号 column, 户主 column, theme columns, problems with the header)."""
    header_at = next((ri for ri, row in enumerate(cells[:20]) if any(_norm_header(c) == "户号" for c in row)), None)
    if header_at is None:
        raise _reject("找不到表头：表格前 20 行中没有“户号”列。请上传本系统下载的评分表，不要删改表头")
    number_col: int | None = None
    head_col: int | None = None
    themes: list[_Column] = []
    problems: list[str] = []
    seen: dict[str, _Column] = {}
    names = {t.name: t for t in ruleset.themes}
    for ci, h in enumerate(cells[header_at]):
        key = _norm_header(h)
        letter = get_column_letter(ci + 1)
        if key == "户号" and number_col is None:
            number_col = ci
            continue
        if key == "户主" and head_col is None:
            head_col = ci
            continue
        if not key or key in HEADERS:
            continue
        text = _uninert(_text(h))
        m = _THEME_CODE_RE.search(text)
        theme = ruleset.theme(m[1]) if m else names.get(key)
        if theme is None and not m:
            continue  # a column the clerk added (说明 ...): not ours, ignored
        col = _Column(ci, letter, text, theme)
        if theme is not None and theme.code in seen:
            problems.append(f"第 {header_at + 1} 行：评比项目“{theme.name}”有两列（{seen[theme.code].letter} 列和 "
                            f"{letter} 列），请删去其中一列")
            continue
        if theme is not None:
            seen[theme.code] = col
        themes.append(col)
    assert number_col is not None
    if not seen:
        raise _reject("表格中没有本轮的评比项目列（如“环保卫生（ENV）”）：请上传本系统下载的评分表，不要删改表头")
    return header_at, number_col, head_col, themes, problems


def _match_grade(theme: rules.Theme, text: str) -> str | None:
    if theme.grade(text) is not None:
        return text
    folded = [g.code for g in theme.grades if g.code.casefold() == text.casefold()]
    return folded[0] if len(folded) == 1 else None


def _household_lookup(session: Session, village_id: int) -> tuple[dict[str, tuple[int, str]], dict[int, list[int]]]:
    """户号 -> (household id, head) for the whole village, and for numbers that are all digits: their value -> ids
    (a clerk's Excel may have turned "003" into 3)."""
    by_number: dict[str, tuple[int, str]] = {}
    by_value: dict[int, list[int]] = {}
    for hid, number, head in session.execute(select(Household.id, Household.number, Household.head_name).where(
            Household.village_id == village_id)):
        by_number[number.strip()] = (hid, head)
        if number.strip().isdigit():
            by_value.setdefault(int(number), []).append(hid)
    return by_number, by_value


def _parse(session: Session, rnd: EvalRound, read: _Read, rater_id: int,
           elig: committee.Eligibility | None) -> tuple[list[dict[str, Any]], list[str]]:
    ruleset = rounds.ruleset_of(session, rnd)
    header_at, number_col, head_col, columns, problems = _columns(read.cells, ruleset)
    roster = {e.household_id: e for e in rounds.roster(session, rnd)}
    by_number, by_value = _household_lookup(session, rnd.village_id)
    heads = {hid: head for hid, head in by_number.values()}
    unknown_columns: dict[int, int] = {}  # column index -> cells filled in a column that is not a theme of the round
    seen: dict[int, int] = {}  # household id -> the row it was first on
    cells: list[dict[str, Any]] = []
    for ri in range(header_at + 1, len(read.cells)):
        row = read.cells[ri]
        n = ri + 1  # the row number Excel shows

        def at(ci: int, row: list[Any] = row) -> str:
            return _text(row[ci]) if ci < len(row) else ""

        filled = [(col, at(col.index)) for col in columns if at(col.index)]
        if not filled:
            continue  # nothing to import on this row (blank means "leave unchanged")
        for col, _ in filled:
            if col.theme is None:
                unknown_columns[col.index] = unknown_columns.get(col.index, 0) + 1
        filled = [(col, v) for col, v in filled if col.theme is not None]
        if not filled:
            continue
        number = _uninert(at(number_col))
        if not number:
            problems.append(f"第 {n} 行：没有填户号，这一行的等级无法导入（请补上户号，或删去这一行）")
            continue
        found = by_number.get(number)
        if found is None and number.isdigit() and len(by_value.get(int(number), [])) == 1:
            hid = by_value[int(number)][0]
            found = (hid, heads[hid])
        if found is None:
            problems.append(f"第 {n} 行 A 列：户号“{number}”在本村找不到，请核对户号")
            continue
        hid, head = found
        if hid in seen:
            problems.append(f"第 {n} 行：户号 {number} 与第 {seen[hid]} 行重复，同一户只能有一行（请删去多余的一行）")
            continue
        seen[hid] = n
        entry = roster.get(hid)
        if entry is None:
            problems.append(f"第 {n} 行：户号 {number}（{head}）不在本月评比名单中（本月之前已迁出或注销，或本月之后才登记），"
                            "请清空这一行的等级或删去这一行")
            continue
        written_head = _uninert(at(head_col)) if head_col is not None else ""
        if written_head and written_head != entry.head_name:
            problems.append(f"第 {n} 行：户号 {entry.number} 的户主是“{entry.head_name}”，表中写的是“{written_head}”，"
                            "请核对是否错行")
            continue
        if elig is not None and not elig.may_rate(rater_id, hid):
            problems.append(f"第 {n} 行（{entry.number} {entry.head_name}）：{elig.why_not(rater_id, hid)}，"
                            "请清空这一行的等级")
            continue
        for col, value in filled:
            theme = col.theme
            assert theme is not None
            grade = _match_grade(theme, value)
            if grade is None:
                problems.append(f"第 {n} 行 {col.letter} 列（{theme.name}）：等级“{value}”不在评分标准内"
                                f"（可填：{'、'.join(_grade_list(theme))}，或留空）")
                continue
            cells.append({"household_id": hid, "theme": theme.code, "grade": grade, "row": n, "rater_id": rater_id})
    for col in columns:
        if col.index in unknown_columns:
            problems.append(f"第 {header_at + 1} 行 {col.letter} 列：“{col.header}”不是本轮评分标准中的评比项目，"
                            f"这一列填的 {unknown_columns[col.index]} 个等级无法导入（请删去这一列）")
    if len(problems) > MAX_PROBLEMS:
        problems = [*problems[:MAX_PROBLEMS], f"……另有 {len(problems) - MAX_PROBLEMS} 处问题未列出"]
    return cells, problems


# ---- upload, preview, confirm ----------------------------------------------------------------------------------------


def read_file(data: bytes) -> _Read:
    """Read an uploaded file's sheet and marker without the database: the part of an upload that may take a while,
    which a route runs outside any transaction. Raises ValidationFailed (in Chinese) for a file that is no sheet."""
    return _read(data)


@dataclass(frozen=True)
class Checked:
    """An uploaded sheet checked against its round: the cells it would save and every problem."""

    cells: list[dict[str, Any]]
    problems: list[str]


def check(session: Session, round_id: int, *, read: _Read, rater_id: int = rounds.CONSENSUS) -> Checked:
    """The sheet against the round, its marker, the roster and the rater's recusals. Reads only. A file that is not
    this round's sheet, or a round that can no longer be edited, is refused."""
    rnd = rounds.get_round(session, round_id)
    rounds._editable(rnd)
    elig = _check_rater(session, rnd, rater_id)
    _check_marker(session, _read_marker(read), rnd, rater_id, elig)
    cells, problems = _parse(session, rnd, read, rater_id, elig)
    if not cells and not problems:
        raise _reject("表格中没有填写任何等级：请在各评比项目列中选择等级后再上传")
    return Checked(cells, problems)


def keep(session: Session, actor: Actor, round_id: int, *, file_name: str, checked: Checked,
         rater_id: int = rounds.CONSENSUS) -> SheetUpload:
    """Store a checked sheet as a preview (status "preview"): a short write. The round must still be editable."""
    rounds._editable(rounds.get_round(session, round_id))
    name = visible(file_name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()[:200] or "评分表.xlsx"
    up = SheetUpload(round_id=round_id, file_name=name, cells=checked.cells, problems=checked.problems,
                     status="preview", created_by=actor.name[:80])
    session.add(up)
    session.flush()
    audit.record(session, actor, "round.sheet_upload", object_type="round", object_id=round_id,
                 after={"upload_id": up.id, "file_name": name, "rater_id": rater_id, "cells": len(checked.cells),
                        "problems": len(checked.problems)})
    return up


def upload(session: Session, actor: Actor, round_id: int, *, file_name: str, data: bytes,
           rater_id: int = rounds.CONSENSUS) -> SheetUpload:
    """Read an uploaded sheet into a preview: the cells it would save and every problem. All in the caller's
    transaction (a route runs read_file, check and keep apart, the reading outside any transaction). A file that
    is not this round's sheet, or a round that can no longer be edited, is refused and nothing is stored."""
    rnd = rounds.get_round(session, round_id)
    rounds._editable(rnd)
    _check_rater(session, rnd, rater_id)
    checked = check(session, round_id, read=read_file(data), rater_id=rater_id)
    return keep(session, actor, round_id, file_name=file_name, checked=checked, rater_id=rater_id)


def _get(session: Session, upload_id: int, round_id: int, *, lock: bool = False) -> SheetUpload:
    q = select(SheetUpload).where(SheetUpload.id == upload_id)
    if lock:
        q = q.with_for_update().execution_options(populate_existing=True)
    up = session.execute(q).scalar_one_or_none()
    if up is None or up.round_id != round_id:
        raise NotFound("没有这份上传的评分表")
    return up


def preview(session: Session, upload_id: int, round_id: int) -> SheetUpload:
    return _get(session, upload_id, round_id)


def changes(session: Session, upload: SheetUpload, rater_id: int = rounds.CONSENSUS) -> dict[str, int]:
    """What confirming would do, against the grades saved now: cells new, changed, unchanged; and the problems."""
    rnd = rounds.get_round(session, upload.round_id)
    saved = rounds.grid(session, rnd, rater_id=rater_id)
    out = {"new": 0, "changed": 0, "unchanged": 0, "problems": len(upload.problems)}
    for c in upload.cells:
        old = saved.get((int(c["household_id"]), str(c["theme"])))
        out["new" if old is None else "unchanged" if old == c["grade"] else "changed"] += 1
    return out


def _not_pending(up: SheetUpload) -> Conflict:
    if up.status == "applied":
        return Conflict("这份评分表已经导入过了，不能重复导入（如需修改，请重新下载评分表填写后上传）")
    return Conflict("这份评分表的预览已放弃，不能再导入：请重新上传")


def confirm(session: Session, actor: Actor, round_id: int, upload_id: int, *,
            rater_id: int = rounds.CONSENSUS) -> rounds.SaveResult:
    """Save the previewed cells through `rounds.save_ratings` (which checks the scale, the roster and recusal again:
    one bad cell saves nothing) and mark the upload applied."""
    up = _get(session, upload_id, round_id, lock=True)
    if up.status != "preview":
        raise _not_pending(up)
    if up.problems:
        raise ValidationFailed(f"表格中还有 {len(up.problems)} 处问题，不能导入：请修改表格后重新上传",
                               details={"problems": list(up.problems)})
    if any(int(c.get("rater_id", rater_id)) != rater_id for c in up.cells):
        raise ValidationFailed("这份评分表是另一位评分人上传的，不能由您确认导入")
    rnd = rounds.get_round(session, round_id)
    rounds._editable(rnd)
    cells = [rounds.Cell(int(c["household_id"]), str(c["theme"]), str(c["grade"])) for c in up.cells]
    result = rounds.save_ratings(session, actor, round_id, cells, rater_id=rater_id)
    up.status = "applied"
    session.add(up)
    session.flush()
    audit.record(session, actor, "round.sheet_apply", object_type="round", object_id=round_id,
                 after={"upload_id": up.id, "file_name": up.file_name, "rater_id": rater_id, "cells": len(cells),
                        "saved": result.saved, "unchanged": result.unchanged})
    return result


def discard(session: Session, actor: Actor, round_id: int, upload_id: int, *,
            rater_id: int = rounds.CONSENSUS) -> SheetUpload:
    """Drop a preview without saving anything (the rater's own upload only)."""
    up = _get(session, upload_id, round_id, lock=True)
    if up.status != "preview":
        raise _not_pending(up)
    if any(int(c.get("rater_id", rater_id)) != rater_id for c in up.cells):
        raise ValidationFailed("这份评分表是另一位评分人上传的，不能由您放弃")
    up.status = "discarded"
    session.add(up)
    session.flush()
    audit.record(session, actor, "round.sheet_discard", object_type="round", object_id=round_id,
                 after={"upload_id": up.id, "file_name": up.file_name})
    return up
