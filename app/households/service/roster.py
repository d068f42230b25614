"""Roster files (花名册): the template, reading what clerks bring (.xlsx, .xls, .csv in UTF-8 or GBK), checking it
row by row in Chinese, and exporting. Pure file handling: no database here (see import_service.py)."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import python_calamine
from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.worksheet.datavalidation import DataValidation

from app.core.spreadsheet import (
    ZIP_ERRORS,
    WorkbookLimits,
    WorkbookRefused,
    WorkbookUnreadable,
    inert,
    measure_workbook,
    xlsx_bytes,
)
from app.core.text import visible
from app.errors import ValidationFailed
from app.households.models import RELATIONS

MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_ROWS = 200_000
# The grid calamine may build: the largest roster (MAX_ROWS members, a header, blank rows) at 16 columns. A file whose
# farthest cell lies beyond is refused before calamine reads it (one far-away cell would make it allocate gigabytes).
MAX_GRID_ROWS = MAX_ROWS + 1_000
MAX_GRID_CELLS = MAX_GRID_ROWS * 16
MAX_UNPACKED_BYTES = 400 * 1024 * 1024
# What else a workbook may cost before calamine opens it (see app/core/spreadsheet.py and docs/operations.md): no more
# cells written than that grid holds, no more shared strings than cells, and at most one merged range per member row.
MAX_STRINGS = MAX_GRID_CELLS
MAX_MERGED = MAX_ROWS
# A CSV: at most Excel's 16,384 columns in a row, and no cell longer than this (the longest roster field kept is 500
# characters; a cell of thousands is a quote left open that joined the rows after it into one cell).
MAX_CSV_COLUMNS = 16_384
MAX_CELL_CHARS = 2_000

# canonical field -> (template header, accepted variants). Matching ignores spaces, "*" and "(必填)" notes.
COLUMNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "number": ("户号", ("户号", "户编号", "户口编号", "户籍号", "家庭编号", "户码", "编号")),
    "group": ("村民小组", ("村民小组", "小组", "组", "组别", "所在小组", "网格", "村组", "组名")),
    "name": ("姓名", ("姓名", "成员姓名", "户主姓名", "名字", "户成员姓名")),
    "relation": ("与户主关系", ("与户主关系", "关系", "家庭关系", "与户主的关系", "户主关系")),
    "gender": ("性别", ("性别",)),
    "birth_date": ("出生日期", ("出生日期", "出生年月", "生日", "出生年月日")),
    "id_number": ("身份证号", ("身份证号", "身份证号码", "公民身份号码", "身份证", "证件号码", "身份证件号码")),
    "phone": ("联系电话", ("联系电话", "电话", "手机", "手机号", "手机号码", "联系方式")),
    "party_member": ("是否党员", ("是否党员", "党员", "政治面貌")),
    "living_away": ("是否外出务工", ("是否外出务工", "外出务工", "是否外出", "外出")),
    "address": ("家庭住址", ("家庭住址", "住址", "地址", "家庭地址", "现住址")),
    "notes": ("备注", ("备注", "说明")),
}
REQUIRED = ("number", "name", "relation")
TEMPLATE_ORDER = ["number", "group", "name", "relation", "gender", "birth_date", "id_number", "phone",
                  "party_member", "living_away", "address", "notes"]
YES = {"是", "Y", "YES", "TRUE", "1", "√", "✓", "党员", "中共党员", "中国共产党党员", "预备党员", "中共预备党员"}
NO = {"", "否", "N", "NO", "FALSE", "0", "×", "群众", "无", "共青团员", "团员"}

_HEADER_NOISE = re.compile(r"[\s*＊:：]|[（(](必填|选填|可选|必须)[)）]")


def _norm_header(h: Any) -> str:
    return _HEADER_NOISE.sub("", str(h or ""))


HEADER_LOOKUP: dict[str, str] = {_norm_header(v): key for key, (_t, variants) in COLUMNS.items() for v in variants}


@dataclass
class Problem:
    row: int | None  # the row number as Excel shows it (1-based); None for the whole file
    column: str | None  # the header as it appears in the file
    message: str
    severity: str = "error"  # error | warning
    code: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "message": self.message, "severity": self.severity,
                "code": self.code}


@dataclass
class Sheet:
    headers: dict[str, str]  # canonical field -> header text in the file
    rows: list[tuple[int, dict[str, Any]]]  # (excel row number, canonical field -> raw cell value)
    problems: list[Problem] = field(default_factory=list)


def _reject(message: str) -> ValidationFailed:
    return ValidationFailed(message, code="bad_roster_file")


def _cells_from_csv(data: bytes) -> list[list[Any]]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte string
        raise _reject("CSV 文件的编码无法识别：请用 Excel 另存为“CSV UTF-8”或“CSV（逗号分隔）”")
    if "\x00" in text:
        raise _reject("这不是文本格式的 CSV 文件：请在 Excel 中另存为“CSV UTF-8（逗号分隔）”")
    sample = text[:4096]
    try:
        dialect: Any = csv.Sniffer().sniff(sample, delimiters=",\t;，")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    delimiter = getattr(dialect, "delimiter", ",")
    rows: list[list[Any]] = []
    cells = 0
    line = 1  # the line the next row starts on
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:  # a field longer than the csv module takes (131,072 characters): a quote left open
            raise _reject(_open_quote(line, reader.line_num)) from None
        if len(row) > MAX_CSV_COLUMNS:
            raise _reject(f"CSV 文件第 {line} 行有 {len(row)} 列，太多了（最多 {MAX_CSV_COLUMNS} 列）："
                          "请用 Excel 打开，删去多余的列，另存为“CSV UTF-8（逗号分隔）”后再上传")
        for value in row:
            if len(value) > MAX_CELL_CHARS or ("\n" in value and delimiter in value):
                raise _reject(_open_quote(line, reader.line_num))
        cells += len(row)
        if cells > MAX_GRID_CELLS:
            raise _reject(f"CSV 文件的单元格太多（到第 {line} 行已超过 {MAX_GRID_CELLS} 个）："
                          "请只保留花名册的列，另存后再上传")
        rows.append(row)
        line = reader.line_num + 1
    return rows


def _open_quote(line: int, until: int) -> str:
    span = f"第 {line} 行" if until <= line else f"第 {line} 行到第 {until} 行"
    return (f"CSV 文件{span}连成了一格：多半是第 {line} 行有一个多余的英文双引号（\"），或者引号没有配对。"
            f"请用记事本或 Excel 打开，改正第 {line} 行的引号后再上传")


def _xlsx_has_formulas(data: bytes, sheet_index: int = 0) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = sorted(n for n in z.namelist() if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
            if not names:
                return False
            name = f"xl/worksheets/sheet{sheet_index + 1}.xml"
            with z.open(name if name in names else names[0]) as fh:
                while chunk := fh.read(1 << 20):
                    if b"<f>" in chunk or b"<f " in chunk:
                        return True
    except ZIP_ERRORS:  # calamine read it; an unreadable part here only means no formulas were seen
        return False
    return False


def _cells_from_workbook(data: bytes, kind: str) -> tuple[list[list[Any]], list[Any], bool]:
    unreadable = _reject(f"无法读取这个文件：它不是有效的 {kind} 表格（可能是改了扩展名的图片或其他文件，"
                         "或文件已损坏）。请用 Excel 打开后另存为 .xlsx 再上传")
    limits = WorkbookLimits(max_unpacked=MAX_UNPACKED_BYTES, max_rows=MAX_GRID_ROWS, max_cells=MAX_GRID_CELLS,
                            max_strings=MAX_STRINGS, max_merged=MAX_MERGED)
    try:  # measured before calamine sees it: one far-away cell, or millions of strings, must not cost gigabytes
        measure_workbook(data, limits)
    except WorkbookUnreadable:
        raise unreadable from None
    except WorkbookRefused as e:
        raise _reject(str(e)) from None
    try:
        wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except Exception:
        raise unreadable from None
    shown = [i for i, m in enumerate(wb.sheets_metadata) if str(m.visible).endswith("Visible")]
    index = shown[0] if shown else 0
    try:
        sheet = wb.get_sheet_by_index(index)
        cells = sheet.to_python(skip_empty_area=False)
        merged = list(sheet.merged_cell_ranges or [])
    except Exception:
        raise _reject("无法读取表格内容：文件可能已损坏，请用 Excel 打开后另存为 .xlsx 再上传") from None
    formulas = kind == "xlsx" and _xlsx_has_formulas(data, index)
    return cells, merged, formulas


def read_sheet(file_name: str, data: bytes) -> Sheet:
    """Read the first visible sheet of a roster file into rows keyed by canonical field.
    Raises ValidationFailed (in Chinese) for a file that is not a roster at all."""
    if len(data) > MAX_FILE_BYTES:
        raise _reject(f"文件太大（{len(data) / 1048576:.1f} MB）：花名册不能超过 {MAX_FILE_BYTES // 1048576} MB，"
                      "请删去无关的工作表、图片后再上传")
    if not data:
        raise _reject("上传的文件是空的")
    name = (file_name or "").lower()
    merged: list[Any] = []
    formulas = False
    if data[:4] == b"PK\x03\x04":
        cells, merged, formulas = _cells_from_workbook(data, "xlsx")
    elif data[:4] == b"\xd0\xcf\x11\xe0":
        cells, merged, formulas = _cells_from_workbook(data, "xls")
    elif name.endswith((".xlsx", ".xls", ".xlsm")):
        raise _reject("这个文件的扩展名是 Excel，但内容不是 Excel 表格（可能是改了扩展名的图片或其他文件）。"
                      "请用 Excel 打开花名册后另存为 .xlsx 再上传")
    elif name.endswith((".csv", ".txt")) or not name:
        cells = _cells_from_csv(data)
    else:
        raise _reject("只支持 .xlsx、.xls 和 .csv 文件")
    if not any(any(str(c).strip() for c in row) for row in cells):
        raise _reject("表格是空的：第一个工作表里没有任何内容")
    # The header row is the first of the first ten rows that names at least two known columns.
    header_at = None
    for i, row in enumerate(cells[:10]):
        known = {HEADER_LOOKUP.get(_norm_header(c)) for c in row} - {None}
        if len(known) >= 2:
            header_at = i
            break
    merged_in_header = [m for m in merged if header_at is not None and m[0][0] <= header_at <= m[1][0]]
    if merged_in_header or (header_at is None and merged):
        raise _reject("表头有合并单元格：请取消合并，让每一列都有自己的标题（如 户号、姓名、与户主关系、身份证号）后再上传")
    if header_at is None:
        raise _reject("找不到表头：前 10 行中没有“户号”“姓名”“与户主关系”等列标题。请下载模板，按模板的列填写")
    if formulas:
        raise _reject("表格中含有公式：请全选表格，复制后用“选择性粘贴 → 数值”替换公式，保存后再上传")
    header_row = cells[header_at]
    # 户号 or 户主 merged down a family's rows: every row gets the value. The cells to fill are counted first: ranges
    # that overlap (or repeat) could otherwise ask for billions of fills from a small file.
    fills = [(r0, c0, min(r1, len(cells) - 1)) for (r0, c0), (r1, c1) in merged if r0 > header_at and c0 == c1]
    if sum(max(0, last - r0) for r0, _c0, last in fills) > MAX_GRID_CELLS:
        raise _reject(f"表格里的合并单元格太多（{len(merged)} 处，合起来远远超过表格的行数）："
                      "请全选表格，点“取消合并单元格”，另存后再上传")
    for r0, c0, last in fills:
        for ri in range(r0 + 1, last + 1):
            if c0 < len(cells[ri]):
                cells[ri][c0] = cells[r0][c0]
    headers: dict[str, str] = {}
    columns: dict[int, str] = {}
    problems: list[Problem] = []
    ignored: list[str] = []
    for ci, h in enumerate(header_row):
        key = HEADER_LOOKUP.get(_norm_header(h))
        text = visible(str(h).strip())[:100]  # quoted back in problems: nothing invisible, nothing endless
        if key is None:
            if text:
                ignored.append(text)
            continue
        if key in headers:
            raise _reject(f"“{headers[key]}”和“{text}”是同一列的两个标题，请删去其中一列")
        headers[key] = text
        columns[ci] = key
    missing = [COLUMNS[k][0] for k in REQUIRED if k not in headers]
    if missing:
        raise _reject(f"缺少必填的列：{'、'.join(missing)}。请下载模板，按模板的列填写")
    if ignored:
        problems.append(Problem(None, None, f"以下列不认识，已忽略：{'、'.join(ignored)}", "warning", "ignored_columns"))
    rows: list[tuple[int, dict[str, Any]]] = []
    for ri in range(header_at + 1, len(cells)):
        raw = cells[ri]
        values = {columns[ci]: raw[ci] for ci in columns if ci < len(raw)}
        if not any(str(v).strip() for v in values.values() if v is not None):
            continue
        rows.append((ri + 1, values))
        if len(rows) > MAX_ROWS:
            raise _reject(f"行数太多：一次最多导入 {MAX_ROWS} 行")
    if not rows:
        raise _reject("表格只有表头，没有任何成员行")
    return Sheet(headers=headers, rows=rows, problems=problems)


# ---- cell values --------------------------------------------------------------------------------------------------

def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.date().isoformat()
    return str(value).strip()


def parse_date(value: Any) -> date | None:
    """Dates as Excel and clerks write them: a date cell, 1949-12-31, 1949/12/31, 1949.12.31, 19491231, 1949年12月31日."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    s = text(value)
    m = re.fullmatch(r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?", s) or re.fullmatch(r"(\d{4})(\d{2})(\d{2})", s)
    if not m:
        raise ValueError(s)
    return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def parse_flag(value: Any) -> bool:
    s = text(value).upper()
    if s in YES:
        return True
    if s in NO:
        return False
    raise ValueError(s)


_CN_NUM = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10, "两": 2}


def group_number(value: Any) -> int | None:
    """'3', 3.0, '3组', '第三组', '第三村民小组', '十二组' -> the group's number; None if it names no number."""
    s = text(value)
    if not s:
        return None
    m = re.search(r"\d+", s)
    if m:
        return int(m.group(0)) if len(m.group(0)) <= 4 else 10_000  # absurd numbers are refused by the caller
    m2 = re.search(r"([一二三四五六七八九十两]+)", s)
    if not m2:
        return None
    cn = m2.group(1)
    if cn == "十":
        return 10
    if "十" in cn:
        tens, _, ones = cn.partition("十")
        return (_CN_NUM.get(tens, 1) if tens else 1) * 10 + (_CN_NUM.get(ones, 0) if ones else 0)
    return _CN_NUM.get(cn)


# ---- template and export ------------------------------------------------------------------------------------------

_HEADER_FILL = PatternFill("solid", fgColor="F4CCCC")


def template_xlsx(village_name: str, group_names: list[str]) -> bytes:
    """The roster template: Chinese headers, one row per member, the ID column formatted as text, dropdowns for
    group, relation, gender and yes/no, and a sheet of instructions."""
    wb = Workbook()
    ws = wb.active
    ws.title = "花名册"
    headers = [COLUMNS[k][0] + ("*" if k in REQUIRED else "") for k in TEMPLATE_ORDER]
    ws.append(headers)
    widths = {"number": 8, "group": 14, "name": 10, "relation": 12, "gender": 6, "birth_date": 12, "id_number": 22,
              "phone": 14, "party_member": 10, "living_away": 13, "address": 28, "notes": 20}
    for ci, key in enumerate(TEMPLATE_ORDER, start=1):
        cell = ws.cell(row=1, column=ci)
        cell.font = Font(bold=True)
        cell.fill = _HEADER_FILL
        cell.alignment = Alignment(horizontal="center")
        letter = cell.column_letter
        ws.column_dimensions[letter].width = widths[key]
        if key in ("id_number", "number", "phone"):
            for r in range(2, 2002):
                ws.cell(row=r, column=ci).number_format = "@"
    ws.freeze_panes = "A2"

    lists = wb.create_sheet("选项")
    options = {"group": group_names or ["第一村民小组"], "relation": RELATIONS, "gender": ["男", "女"],
               "party_member": ["是", "否"], "living_away": ["是", "否"]}
    for ci, (key, values) in enumerate(options.items(), start=1):
        lists.cell(row=1, column=ci, value=COLUMNS[key][0])
        for ri, v in enumerate(values, start=2):
            lists.cell(row=ri, column=ci, value=v)
        letter = lists.cell(row=1, column=ci).column_letter
        dv = DataValidation(type="list", formula1=f"=选项!${letter}$2:${letter}${len(values) + 1}", allow_blank=True,
                            showErrorMessage=True, errorTitle="请从下拉列表中选择", error=f"请选择{COLUMNS[key][0]}")
        col = ws.cell(row=1, column=TEMPLATE_ORDER.index(key) + 1).column_letter
        dv.add(f"{col}2:{col}2001")
        ws.add_data_validation(dv)
    lists.sheet_state = "hidden"

    help_ws = wb.create_sheet("填写说明")
    for line in [
        f"{village_name} 农户花名册 填写说明",
        "1. 每位家庭成员填一行；同一户的成员填相同的“户号”，每户有且只有一位“户主”。",
        "2. 带 * 的列必须填写。“身份证号”一列已设为文本格式，请直接输入 18 位号码（最后一位可以是 X）。",
        "3. 不要合并单元格，不要使用公式；村民小组、与户主关系、性别请从下拉列表中选择。",
        "4. 出生日期和性别可以不填，系统会从身份证号中读出。",
        "5. 上传后系统会先列出所有问题，确认无误后才会保存；同一文件重复导入不会重复登记。",
    ]:
        help_ws.append([line])
    help_ws.column_dimensions["A"].width = 100
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_rows_xlsx(rows: list[list[Any]]) -> bytes:
    return xlsx_bytes("花名册", [COLUMNS[k][0] for k in TEMPLATE_ORDER], rows)


def export_rows_csv(rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([COLUMNS[k][0] for k in TEMPLATE_ORDER])
    for r in rows:
        # A leading tab keeps Excel from turning long digit strings (ID numbers) into numbers.
        w.writerow(["\t" + v if isinstance(v, str) and v.isdigit() and len(v) > 11 else inert(v) for v in r])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
