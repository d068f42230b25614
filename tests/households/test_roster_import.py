"""Roster import and export (issue 3, items 2, 5, 6 and "Bad input"), with real files: .xlsx written by openpyxl
and CSV written by hand in UTF-8, UTF-8 with BOM and GBK.

- the template: Chinese headers, the ID column formatted as text, dropdowns for group and relation; a filled
  template round-trips;
- headers matched by name and common variants, in any order, below a title row;
- every import problem of the issue in the preview, by row and column, in Chinese;
- nothing written before confirming; a preview with errors cannot be confirmed; all-or-nothing on a failure;
- the same file twice changes nothing; a corrected file updates in place;
- files that are not rosters: a clear Chinese message, nothing written; a GBK CSV works;
- export (.xlsx, .csv): full ID numbers for the clerk, masked for the township reviewer; an export re-imports as
  unchanged;
- the import wizard through the HTML pages, and scoping by role.
"""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select, text

from app.core.cn_id import check_digit, make_id_number
from app.core.context import Actor
from app.db import Database
from app.errors import ValidationFailed
from app.households.models import RELATIONS, Household, HouseholdEvent, ImportBatch, Member
from app.households.service import imports, roster
from app.org.models import Group, Village
from tests.support.web import login

CJK = re.compile(r"[\u4e00-\u9fff]")
ACTOR = Actor.system("测试")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ["户号", "村民小组", "姓名", "与户主关系", "性别", "出生日期", "身份证号", "联系电话", "是否党员", "是否外出务工",
          "家庭住址", "备注"]
ID_COL = HEADER.index("身份证号")
ROSTER_TABLES = ("households", "members", "household_memberships", "household_events", "village_groups")
ALL_TABLES = (*ROSTER_TABLES, "roster_imports", "audit_events")


# ---- fixtures: every test starts from conftest's demo county (4 households a village), loaded once per worker ------

@pytest.fixture
def db_url(demo_db_url: str) -> str:
    return demo_db_url


@pytest.fixture
def demo(db: Database, demo_accounts: dict[str, object]) -> dict[str, object]:
    return demo_accounts


# ---- files ----------------------------------------------------------------------------------------------------------

def pid(birth: date, seq: int, male: bool = True) -> str:
    """A valid ID number of 歙县 (341021); test sequences start at 700, clear of the demo's."""
    return make_id_number("341021", birth, seq, male)


def bad_check_digit(id_number: str) -> str:
    last = id_number[-1]
    return id_number[:-1] + ("0" if last != "0" else "1")


def impossible_birth_id() -> str:
    first17 = "341021" + "19490231" + "713"  # 31 February
    return first17 + check_digit(first17)


def good_rows() -> list[list[Any]]:
    """Two new households for 红旗村 (whose demo households are 001-004): members with and without ID numbers."""
    return [
        ["801", "第一村民小组", "王大山", "户主", "男", "1965-03-08", pid(date(1965, 3, 8), 701), "13800001111", "是", "否",
         "红旗村一组8号", "老党员"],
        ["801", "第一村民小组", "李桂花", "配偶", "女", "1967-05-20", pid(date(1967, 5, 20), 702, False), "", "否", "否", "", ""],
        ["801", "第一村民小组", "王小明", "子女", "男", "1990-11-02", pid(date(1990, 11, 2), 703), "13900002222", "否", "是",
         "", ""],
        ["801", "第一村民小组", "王小红", "子女", "女", "2015-06-01", "", "", "否", "否", "", ""],
        ["802", "2", "赵春生", "户主", "男", "1958-01-15", pid(date(1958, 1, 15), 705), "0551-12345678", "否", "否",
         "红旗村二组3号", ""],
        ["802", "2", "钱秀兰", "配偶", "女", "", "", "", "否", "否", "", ""],
        ["802", "2", "赵乐", "孙子女", "", "", "", "", "", "", "", ""],
    ]


def xlsx(rows: list[list[Any]], header: list[str] | None = None, *, title: str | None = None,
         setup: Any = None) -> bytes:
    """A real .xlsx written by openpyxl: optional merged title row and blank row above the header; birth dates as
    date cells; ID numbers in a column formatted as text (as the template has it)."""
    header = header or HEADER
    wb = Workbook()
    ws = wb.active
    ws.title = "花名册"
    if title:
        ws.append([title])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(header))
        ws.append([])
    ws.append(header)
    birth_col = next((i for i, h in enumerate(header) if roster.HEADER_LOOKUP.get(h) == "birth_date"), None)
    for r in rows:
        r = list(r)
        if birth_col is not None and isinstance(r[birth_col], str) and re.fullmatch(r"\d{4}-\d\d-\d\d", r[birth_col]):
            r[birth_col] = datetime.strptime(r[birth_col], "%Y-%m-%d")
        ws.append(r)
        if birth_col is not None and isinstance(r[birth_col], datetime):
            ws.cell(row=ws.max_row, column=birth_col + 1).number_format = "yyyy-mm-dd"
    if "身份证号" in header:
        col = header.index("身份证号") + 1
        for row in ws.iter_rows(min_row=2, min_col=col, max_col=col):
            for cell in row:
                if isinstance(cell.value, str):
                    cell.number_format = "@"
    if setup:
        setup(ws)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def csv_text(rows: list[list[Any]], header: list[str] | None = None) -> str:
    """CSV as Excel writes it, by hand: comma separated, CRLF, no quoting needed for these values."""
    lines = [",".join(header or HEADER)] + [",".join("" if v is None else str(v) for v in r) for r in rows]
    return "\r\n".join(lines) + "\r\n"


def csv_bytes(rows: list[list[Any]], encoding: str = "utf-8", header: list[str] | None = None) -> bytes:
    """encoding: "utf-8", "utf-8-sig" (with BOM) or "gbk" (Excel's "CSV (逗号分隔)" on a Chinese Windows)."""
    return csv_text(rows, header).encode(encoding)


# ---- database -------------------------------------------------------------------------------------------------------

def counts(db, tables: tuple[str, ...] = ALL_TABLES) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        row = s.execute(text("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables))).one()
    return dict(zip(tables, (int(v) for v in row), strict=True))


def village_id(db, name: str = "红旗村") -> int:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        return int(s.execute(select(Village.id).where(Village.name == name)).scalar_one())


def preview(db, data: bytes, name: str = "花名册.xlsx", village: str = "红旗村") -> ImportBatch:  # type: ignore[no-untyped-def]
    with db.write_txn() as s:
        return imports.preview(s, ACTOR, village_id=village_id(db, village), file_name=name, data=data)


def apply(db, batch: ImportBatch, *, create_missing_groups: bool = False) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    with db.write_txn() as s:
        return imports.apply(s, ACTOR, village_id=batch.village_id, batch_id=batch.id,  # type: ignore[arg-type]
                             create_missing_groups=create_missing_groups)


def batch_status(db, batch_id: int) -> str:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        return str(s.get(ImportBatch, batch_id).status)  # type: ignore[union-attr]


def members_by_id_key(db) -> dict[str, Member]:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        return {m.id_key: m for m in s.execute(select(Member).where(Member.id_key.is_not(None))).scalars()}


def households_of(db, village: str = "红旗村") -> dict[str, Household]:  # type: ignore[no-untyped-def]
    vid = village_id(db, village)
    with db.read_txn() as s:
        return {h.number: h for h in s.execute(select(Household).where(Household.village_id == vid)).scalars()}


def members_of(db, number: str, village: str = "红旗村") -> dict[str, Member]:  # type: ignore[no-untyped-def]
    h = households_of(db, village)[number]
    with db.read_txn() as s:
        return {m.name: m for m in s.execute(select(Member).where(Member.household_id == h.id)).scalars()}


def demo_member(db, village: str, number: str = "001") -> Member:  # type: ignore[no-untyped-def]
    """A member of a demo household who has an ID number."""
    return next(m for m in members_of(db, number, village).values() if m.id_key)


def find(problems: list[dict[str, Any]], code: str) -> list[dict[str, Any]]:
    return [p for p in problems if p["code"] == code]


def one(problems: list[dict[str, Any]], code: str) -> dict[str, Any]:
    found = find(problems, code)
    assert len(found) == 1, (code, problems)
    assert CJK.search(found[0]["message"]), found[0]
    return found[0]


def parse(data: bytes, name: str = "a.csv") -> list[roster.Problem]:
    _rows, problems = imports.parse_rows(roster.read_sheet(name, data))
    return problems


# ---- HTTP -----------------------------------------------------------------------------------------------------------

def upload_api(client: TestClient, token: str, vid: int, data: bytes, name: str = "花名册.xlsx"):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/villages/{vid}/roster/imports", files={"file": (name, data, "application/octet-stream")},
                       headers={"X-CSRF-Token": token})


def confirm_api(client: TestClient, token: str, vid: int, batch_id: int, create_missing_groups: bool = False):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/villages/{vid}/roster/imports/{batch_id}/confirm",
                       json={"create_missing_groups": create_missing_groups}, headers={"X-CSRF-Token": token})


def chinese_error(r, status: int) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, (r.status_code, r.text[:800])
    message = r.json()["error"]["message"]
    assert CJK.search(message), message
    return str(message)


# ---- the template ---------------------------------------------------------------------------------------------------

def test_template_has_chinese_headers_text_id_column_and_dropdowns(client, demo, db):
    token = login(client, "clerk")
    vid = village_id(db)
    r = client.get(f"/villages/{vid}/roster/template.xlsx")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith(XLSX_TYPE)
    assert "filename*=UTF-8''" in r.headers["content-disposition"]
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames[0] == "花名册"
    ws = wb["花名册"]
    headers = [c.value for c in ws[1]]
    assert headers == ["户号*", "村民小组", "姓名*", "与户主关系*", "性别", "出生日期", "身份证号", "联系电话", "是否党员",
                       "是否外出务工", "家庭住址", "备注"]
    id_letter = ws.cell(row=1, column=ID_COL + 1).column_letter
    assert all(ws[f"{id_letter}{r}"].number_format == "@" for r in (2, 3, 500, 2001))
    # dropdowns: group (column B) and relation (column D) from the hidden options sheet
    validations = {str(dv.sqref): dv for dv in ws.data_validations.dataValidation}
    assert validations["B2:B2001"].type == "list" and validations["D2:D2001"].type == "list"
    options = wb["选项"]
    assert options.sheet_state == "hidden"

    def listed(dv) -> list[str]:  # type: ignore[no-untyped-def]
        m = re.fullmatch(r"=?选项!\$([A-Z])\$2:\$\1\$(\d+)", dv.formula1)
        assert m, dv.formula1
        return [options[f"{m.group(1)}{i}"].value for i in range(2, int(m.group(2)) + 1)]

    with db.read_txn() as s:
        group_names = list(s.execute(select(Group.name).where(Group.village_id == vid).order_by(Group.number)).scalars())
    assert listed(validations["B2:B2001"]) == group_names and group_names[0] == "第一村民小组"
    assert listed(validations["D2:D2001"]) == RELATIONS
    assert "填写说明" in wb.sheetnames

    # a filled template round-trips: the clerk picks from the dropdowns and types ID numbers into the text column
    for i, row in enumerate(good_rows(), start=2):
        row[1] = group_names[0] if row[0] == "801" else group_names[1]
        for ci, value in enumerate(row, start=1):
            ws.cell(row=i, column=ci, value=value or None)
    buf = io.BytesIO()
    wb.save(buf)
    up = upload_api(client, token, vid, buf.getvalue(), "红旗村花名册模板.xlsx")
    assert up.status_code == 201, up.text[:800]
    body = up.json()
    assert [p for p in body["problems"] if p["severity"] == "error"] == [] and body["can_confirm"], body["problems"]
    assert body["summary"]["households_new"] == 2 and body["summary"]["members_new"] == 7
    done = confirm_api(client, token, vid, body["batch_id"])
    assert done.status_code == 200, done.text[:800]
    hhs = households_of(db)
    with db.read_txn() as s:
        groups = {g.id: g.name for g in s.execute(select(Group)).scalars()}
    assert groups[hhs["801"].group_id] == group_names[0] and groups[hhs["802"].group_id] == group_names[1]
    assert hhs["801"].head_name == "王大山" and hhs["801"].address == "红旗村一组8号"
    wang = members_of(db, "801")
    assert wang["王大山"].id_number == good_rows()[0][ID_COL] and wang["王大山"].party_member
    assert wang["王小明"].living_away and wang["王小明"].phone == "13900002222"
    assert wang["王小红"].birth_date == date(2015, 6, 1) and wang["王小红"].id_number is None


# ---- reading files --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("variant", "field"), [
    ("户主姓名", "name"), ("姓名", "name"), ("成员姓名", "name"),
    ("身份证号", "id_number"), ("身份证号码", "id_number"), ("公民身份号码", "id_number"),
    ("联系电话", "phone"), ("手机", "phone"), ("手机号码", "phone"),
    ("户号", "number"), ("户编号", "number"), ("户号（必填）", "number"), ("*户号", "number"),
    ("与户主关系", "relation"), ("关系", "relation"), ("组别", "group"), ("网格", "group"), ("出生年月", "birth_date"),
    (" 家庭住址 ", "address"),
])
def test_header_variants_are_recognised(variant, field):
    header = [h for h in HEADER if roster.HEADER_LOOKUP[h] != field] + [variant]
    sheet = roster.read_sheet("a.csv", csv_bytes([["1"] * len(header)], header=header))
    assert sheet.headers[field] == variant.strip()


def test_columns_in_any_order_below_a_merged_title_row(db, demo):
    """Headers are found by name, not position, under a title row (merged across the columns) and a blank row;
    row numbers in the preview are the rows Excel shows."""
    header = ["备注", "手机", "身份证号码", "关系", "户主姓名", "出生年月", "组别", "户编号", "性别"]
    src = {h: i for i, h in enumerate(HEADER)}
    order = [src["备注"], src["联系电话"], src["身份证号"], src["与户主关系"], src["姓名"], src["出生日期"],
             src["村民小组"], src["户号"], src["性别"]]
    rows = [[r[i] for i in order] for r in good_rows()]
    rows[2][2] = bad_check_digit(rows[2][2])  # 王小明: the file's 3rd member row, Excel row 6
    batch = preview(db, xlsx(rows, header, title="红旗村2026年农户花名册"))
    problem = one(batch.problems, "member_id_number")
    assert (problem["row"], problem["column"]) == (6, "身份证号码")
    assert "校验位" in problem["message"]
    by_name = {r["name"]: r for r in batch.rows}
    assert by_name["王大山"]["number"] == "801" and by_name["王大山"]["group"] == 1
    assert by_name["王大山"]["phone"] == "13800001111" and by_name["王大山"]["relation"] == "户主"
    assert by_name["李桂花"]["id_number"] == good_rows()[1][ID_COL] and by_name["李桂花"]["birth_date"] == "1967-05-20"
    assert by_name["赵春生"]["group"] == 2 and by_name["赵乐"]["relation"] == "孙子女"

    fixed = [list(r) for r in rows]
    fixed[2][2] = good_rows()[2][ID_COL]
    ok = preview(db, xlsx(fixed, header, title="红旗村2026年农户花名册"))
    assert [p for p in ok.problems if p["severity"] == "error"] == []
    assert apply(db, ok)["members_new"] == 7
    assert members_of(db, "801")["王小明"].id_number == good_rows()[2][ID_COL]


def test_household_cells_merged_down_a_familys_rows_count_for_every_row(db, demo):
    """Many rosters merge 户号 and 村民小组 over a family's rows (the header itself is not merged): every row of the
    family has that value; an unknown column such as 序号 is ignored with a warning."""
    def merge_families(ws) -> None:  # type: ignore[no-untyped-def]
        for col in "BC":
            ws.merge_cells(f"{col}2:{col}5")
            ws.merge_cells(f"{col}6:{col}8")

    rows = [[str(i), *r] for i, r in enumerate(good_rows(), start=1)]
    for r in rows[1:4] + rows[5:]:
        r[1] = r[2] = None  # as Excel keeps a merged range: the value in its first cell only
    batch = preview(db, xlsx(rows, ["序号", *HEADER], setup=merge_families))
    assert [p["code"] for p in batch.problems] == ["ignored_columns"], batch.problems
    assert "序号" in batch.problems[0]["message"] and batch.problems[0]["severity"] == "warning"
    assert [(r["number"], r["group"]) for r in batch.rows] == [("801", 1)] * 4 + [("802", 2)] * 3
    assert apply(db, batch)["members_new"] == 7


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk"])
def test_csv_in_utf8_with_and_without_bom_and_gbk_imports(db, demo, encoding):
    data = csv_bytes(good_rows(), encoding)
    if encoding == "gbk":
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")  # really GBK, not UTF-8 in disguise
    else:
        assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")
    before = counts(db, ROSTER_TABLES)
    batch = preview(db, data, "花名册.csv")
    assert batch.problems == [], batch.problems
    assert batch.summary["households_new"] == 2 and batch.summary["members_new"] == 7
    assert counts(db, ROSTER_TABLES) == before
    apply(db, batch)
    assert set(members_of(db, "801")) == {"王大山", "李桂花", "王小明", "王小红"}
    assert households_of(db)["802"].head_name == "赵春生" and households_of(db)["802"].phone == "0551-12345678"


# ---- every problem of the issue, by row and column ------------------------------------------------------------------

def test_preview_names_every_problem_by_row_and_column(db, demo):
    elsewhere_same = demo_member(db, "红旗村", "001")
    elsewhere_other = demo_member(db, "桃园村", "002")
    g = ["第一村民小组"]
    rows = [
        # row 2-3: a good household
        ["901", g[0], "孙正", "户主", "男", "", pid(date(1970, 1, 1), 711), "", "", "", "", ""],
        ["901", g[0], "孙小正", "子女", "男", "", pid(date(1999, 9, 9), 713), "", "", "", "", ""],
        # row 4: invalid check digit
        ["902", g[0], "周甲", "户主", "男", "", bad_check_digit(pid(date(1971, 2, 2), 715)), "", "", "", "", ""],
        # row 5: impossible birth date in the ID
        ["903", g[0], "吴乙", "户主", "男", "", impossible_birth_id(), "", "", "", "", ""],
        # row 6: an ID number that Excel turned into a number
        ["904", g[0], "郑丙", "户主", "男", "", 1.1010519491231002e+17, "", "", "", "", ""],
        # rows 7-8: no head
        ["905", g[0], "冯丁", "配偶", "女", "", "", "", "", "", "", ""],
        ["905", g[0], "冯小丁", "子女", "男", "", "", "", "", "", "", ""],
        # rows 9-10: two heads
        ["906", g[0], "陈戊", "户主", "男", "", "", "", "", "", "", ""],
        ["906", g[0], "陈己", "户主", "男", "", "", "", "", "", "", ""],
        # rows 11-12: one household number used for two families in two groups
        ["907", "第一村民小组", "褚庚", "户主", "男", "", "", "", "", "", "", ""],
        ["907", "第二村民小组", "卫辛", "户主", "男", "", "", "", "", "", "", ""],
        # row 13: a group the village does not have (a warning)
        ["908", "第九村民小组", "蒋壬", "户主", "男", "", "", "", "", "", "", ""],
        # row 14: already a member of another household of this village; row 15: of another village
        ["909", g[0], elsewhere_same.name, "户主", elsewhere_same.gender, "", elsewhere_same.id_number, "", "", "", "", ""],
        ["910", g[0], elsewhere_other.name, "户主", elsewhere_other.gender, "", elsewhere_other.id_number, "", "", "",
         "", ""],
        # row 16: the same person twice in the file
        ["911", g[0], "孙正", "户主", "男", "", pid(date(1970, 1, 1), 711), "", "", "", "", ""],
    ]
    before = counts(db)
    batch = preview(db, xlsx(rows))
    problems = batch.problems

    by_row = {(p["row"], p["code"]): p for p in problems}
    assert not [p for p in problems if p["row"] in (2, 3)], problems
    assert {p["row"] for p in problems} == set(range(4, 17)) - {8, 9}, problems

    check = by_row[(4, "member_id_number")]
    assert check["column"] == "身份证号" and "校验位" in check["message"] and check["severity"] == "error"
    birth = by_row[(5, "member_id_number")]
    assert birth["column"] == "身份证号" and "出生日期" in birth["message"] and "不存在" in birth["message"]
    lost = by_row[(6, "member_id_number")]
    # openpyxl, like Excel, keeps 15 significant digits: the file itself holds 1.1010519491231e+17
    assert lost["column"] == "身份证号" and re.search(r"1\.1010519491231\d*e\+17", lost["message"]), lost
    assert "数字" in lost["message"] and "丢失" in lost["message"] and "文本" in lost["message"]

    no_head = one(problems, "no_head")
    assert (no_head["row"], no_head["column"]) == (7, "与户主关系")
    assert "905" in no_head["message"] and "没有户主" in no_head["message"]
    two = [p for p in find(problems, "two_heads") if "906" in p["message"]]
    assert len(two) == 1 and (two[0]["row"], two[0]["column"]) == (10, "与户主关系") and "9、10" in two[0]["message"]
    dup = one(problems, "duplicate_number")
    assert (dup["row"], dup["column"]) == (11, "村民小组") and "907" in dup["message"] and "户号重复" in dup["message"]

    unknown = one(problems, "unknown_group")
    assert (unknown["row"], unknown["column"], unknown["severity"]) == (13, "村民小组", "warning")
    assert "第 9 组" in unknown["message"] and "新建" in unknown["message"]
    assert batch.summary["missing_groups"] == [9]

    same = by_row[(14, "member_elsewhere")]
    assert same["column"] == "身份证号" and "本村户号 001" in same["message"]
    other = by_row[(15, "member_elsewhere")]
    # another village's roster is not told to this village's clerk: only that the number is taken elsewhere
    assert other["column"] == "身份证号" and "其他村" in other["message"]
    assert "桃园村" not in other["message"] and "002" not in other["message"]

    for p in problems:
        assert CJK.search(p["message"]), p
    twice = one(problems, "duplicate_id")
    assert (twice["row"], twice["column"]) == (16, "身份证号") and "第 2 行" in twice["message"]

    assert all(elsewhere_same.id_number not in p["message"] for p in problems if p["code"] == "member_elsewhere")
    # nothing but the batch itself was written
    after = counts(db)
    # only the batch and the audit event of the preview itself
    assert after == {**before, "roster_imports": before["roster_imports"] + 1, "audit_events": before["audit_events"] + 1}
    # and a batch with errors cannot be confirmed
    with pytest.raises(ValidationFailed) as exc:
        apply(db, batch, create_missing_groups=True)
    assert "问题" in exc.value.message and "未导入任何数据" in exc.value.message
    assert counts(db) == after and batch_status(db, batch.id) == "preview"  # type: ignore[arg-type]


def test_a_head_with_a_bad_id_number_is_not_reported_as_a_missing_head():
    """The head's row carries its own error; telling the clerk to "make someone the head" would mislead."""
    head = bad_check_digit(pid(date(1970, 1, 1), 711))
    problems = parse(csv_bytes([["1", "", "张三", "户主", "", "", head, "", "", "", "", ""],
                                ["1", "", "李四", "配偶", "", "", "", "", "", "", "", ""],
                                ["2", "", "王五", "配偶", "", "", "", "", "", "", "", ""]]))
    assert [(p.row, p.column, p.code) for p in problems] == [(2, "身份证号", "member_id_number"),
                                                              (4, "与户主关系", "no_head")]


def test_member_of_an_existing_household_listed_under_another_number(db, demo):
    """An ID number already registered in household 001, listed by the clerk under existing household 002."""
    moved = demo_member(db, "红旗村", "001")
    head_002 = next(m for m in members_of(db, "002").values() if m.relation == "户主")
    rows = [["002", "", head_002.name, "户主", "", "", head_002.id_number or "", "", "", "", "", ""],
            ["002", "", moved.name, "子女", "", "", moved.id_number, "", "", "", "", ""]]
    batch = preview(db, csv_bytes(rows), "花名册.csv")
    problem = one(batch.problems, "member_elsewhere")
    assert (problem["row"], problem["column"]) == (3, "身份证号") and "户号 001" in problem["message"]


@pytest.mark.parametrize("cell", ["1.10105E+17", "1.10105194912310E+17", "110105194912310000.0"])
def test_csv_id_number_turned_into_a_number_says_digits_were_lost(cell):
    rows = parse(csv_bytes([["1", "", "张三", "户主", "", "", cell, "", "", "", "", ""]]))
    (problem,) = rows
    assert (problem.row, problem.column, problem.code) == (2, "身份证号", "member_id_number")
    assert "丢失" in problem.message and cell in problem.message


def test_lowercase_x_and_legacy_15_digit_numbers_are_accepted():
    first17 = "34102119800101" + "02"
    for digit in range(10):
        candidate = first17 + str(digit)
        if check_digit(candidate) == "X":
            break
    else:  # pragma: no cover
        pytest.fail("no X check digit in the range")
    with_x = candidate + "X"
    legacy = "341021800101023"
    rows, problems = imports.parse_rows(roster.read_sheet("a.csv", csv_bytes([
        ["1", "", "张三", "户主", "", "", with_x.lower(), "", "", "", "", ""],
        ["1", "", "张四", "子女", "", "", legacy, "", "", "", "", ""],
    ])))
    assert problems == [], problems
    assert rows[0]["id_number"] == with_x and rows[0]["birth_date"] == "1980-01-01"
    assert rows[1]["id_number"] == legacy and rows[1]["id_key"].startswith("34102119800101023")


# ---- unknown groups -------------------------------------------------------------------------------------------------

def test_unknown_group_is_created_only_when_the_clerk_agrees(client, demo, db):
    token = login(client, "clerk")
    vid = village_id(db)
    rows = [["950", "第九组", "韩明", "户主", "男", "", pid(date(1980, 4, 4), 721), "", "", "", "", ""]]
    up = upload_api(client, token, vid, xlsx(rows))
    assert up.status_code == 201, up.text
    body = up.json()
    assert body["can_confirm"] and body["summary"]["missing_groups"] == [9]
    assert one(body["problems"], "unknown_group")["severity"] == "warning"
    before = counts(db)
    message = chinese_error(confirm_api(client, token, vid, body["batch_id"]), 422)
    assert "村民小组" in message
    assert counts(db) == before and batch_status(db, body["batch_id"]) == "preview"
    done = confirm_api(client, token, vid, body["batch_id"], create_missing_groups=True)
    assert done.status_code == 200, done.text
    assert done.json()["groups_created"] == 1
    with db.read_txn() as s:
        group = s.execute(select(Group).where(Group.village_id == vid, Group.number == 9)).scalar_one()
    assert group.name == "第九村民小组" and households_of(db)["950"].group_id == group.id
    assert batch_status(db, body["batch_id"]) == "applied"
    # a batch is applied once
    assert "已经处理过" in chinese_error(confirm_api(client, token, vid, body["batch_id"], True), 409)


# ---- nothing before confirming; all or nothing ----------------------------------------------------------------------

def test_nothing_is_written_before_confirming_and_errors_block_the_confirmation(client, demo, db):
    token = login(client, "clerk")
    vid = village_id(db)
    before = counts(db)
    up = upload_api(client, token, vid, xlsx(good_rows()))
    assert up.status_code == 201, up.text
    assert counts(db) == {**before, "roster_imports": before["roster_imports"] + 1,
                          "audit_events": before["audit_events"] + 1}
    assert "801" not in households_of(db)

    rows = good_rows()
    rows[1][ID_COL] = bad_check_digit(rows[1][ID_COL])
    bad = upload_api(client, token, vid, xlsx(rows))
    assert bad.status_code == 201 and not bad.json()["can_confirm"]
    middle = counts(db)
    refused = confirm_api(client, token, vid, bad.json()["batch_id"], create_missing_groups=True)
    assert "未导入任何数据" in chinese_error(refused, 422)
    details = refused.json()["error"]["details"]
    assert [(d["row"], d["column"]) for d in details] == [(3, "身份证号")]
    assert counts(db) == middle and batch_status(db, bad.json()["batch_id"]) == "preview"
    assert "801" not in households_of(db)


def test_a_change_made_since_the_preview_is_noticed_at_confirmation(db, demo):
    """apply() re-plans against the roster as it is now: an ID number registered meanwhile is refused."""
    first = preview(db, xlsx(good_rows()))
    rows = [[*r] for r in good_rows()[:1]]
    rows[0][0] = "803"
    meanwhile = preview(db, xlsx(rows))
    apply(db, meanwhile)
    before = counts(db)
    with pytest.raises(ValidationFailed) as exc:
        apply(db, first)
    assert any(d["code"] == "member_elsewhere" and "户号 803" in d["message"] for d in exc.value.details)
    assert counts(db) == before and "801" not in households_of(db)


def corrected_roster_of_001(db) -> tuple[list[list[Any]], Member]:  # type: ignore[no-untyped-def]
    """Demo household 001 as an export shows it, with one member's phone changed."""
    members = sorted(members_of(db, "001").values(), key=lambda m: m.relation != "户主")
    changed = next(m for m in members if m.id_key)
    rows = [["001", "", m.name, m.relation, m.gender or "", m.birth_date.isoformat() if m.birth_date else "",
             m.id_number or "", "13712345678" if m.id == changed.id else (m.phone or ""), "", "", "", ""]
            for m in members]
    for r, m in zip(rows, members, strict=True):
        r[8], r[9] = ("是" if m.party_member else "否"), ("是" if m.living_away else "否")
    return rows, changed


@pytest.mark.parametrize("fail_at", ["initials", "audit"])
def test_import_is_all_or_nothing(app, demo, db, monkeypatch, fail_at):
    """A failure in the middle (after groups and households are inserted) or at the very end (after the history
    events) of the confirmation leaves no group, household, member, membership or event behind."""
    client = TestClient(app, raise_server_exceptions=False)
    token = login(client, "clerk")
    vid = village_id(db)
    rows, changed = corrected_roster_of_001(db)
    rows += good_rows()
    rows += [["951", "第九村民小组", "韩明", "户主", "男", "", pid(date(1980, 4, 4), 721), "", "", "", "", ""]]
    up = upload_api(client, token, vid, xlsx(rows))
    assert up.status_code == 201 and up.json()["can_confirm"], up.text
    summary = up.json()["summary"]
    assert summary["households_new"] == 3 and summary["members_updated"] == 1 and summary["missing_groups"] == [9]
    before = counts(db)
    old_phone = changed.phone

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("simulated failure in the middle of the import")

    if fail_at == "initials":
        monkeypatch.setattr(imports, "initials", boom)
    else:
        monkeypatch.setattr(imports, "audit", SimpleNamespace(record=boom))
    r = confirm_api(client, token, vid, up.json()["batch_id"], create_missing_groups=True)
    assert r.status_code == 500 and CJK.search(r.json()["error"]["message"])
    assert counts(db) == before
    with db.read_txn() as s:
        assert s.get(Member, changed.id).phone == old_phone  # type: ignore[union-attr]
        assert not s.execute(select(Group).where(Group.village_id == vid, Group.number == 9)).first()
    assert batch_status(db, up.json()["batch_id"]) == "preview"
    monkeypatch.undo()
    ok = confirm_api(client, token, vid, up.json()["batch_id"], create_missing_groups=True)
    assert ok.status_code == 200, ok.text
    assert {"801", "802", "951"} <= set(households_of(db))
    client.close()


# ---- re-import ------------------------------------------------------------------------------------------------------

def test_same_file_twice_changes_nothing_the_second_time(db, demo):
    data = xlsx(good_rows())
    first = apply(db, preview(db, data))
    assert (first["households_new"], first["members_new"]) == (2, 7)
    hh_before = {n: h.id for n, h in households_of(db).items()}
    before = counts(db)
    with db.read_txn() as s:
        events_before = s.execute(select(func.count()).select_from(HouseholdEvent)).scalar_one()

    again = preview(db, data)
    assert [p for p in again.problems if p["severity"] == "error"] == []
    second = apply(db, again)
    assert second["households_unchanged"] == 2 and second["members_unchanged"] == 7 == second["rows"]
    assert second["households_new"] == second["households_updated"] == 0
    assert second["members_new"] == second["members_updated"] == 0
    after = counts(db)
    # only the batch and its audit record are new
    # the batch, and the audit events of its preview and its confirmation
    assert after == {**before, "roster_imports": before["roster_imports"] + 1, "audit_events": before["audit_events"] + 2}
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(HouseholdEvent)).scalar_one() == events_before
        dup = s.execute(select(Member.household_id, Member.name, func.count()).group_by(Member.household_id, Member.name)
                        .having(func.count() > 1)).all()
    assert dup == []
    assert {n: h.id for n, h in households_of(db).items()} == hh_before

    # the same roster as a GBK CSV is the same roster
    third = apply(db, preview(db, csv_bytes(good_rows(), "gbk"), "花名册.csv"))
    assert third["members_unchanged"] == 7 and third["households_unchanged"] == 2
    assert counts(db, ROSTER_TABLES) == {k: after[k] for k in ROSTER_TABLES}


def test_corrected_file_updates_in_place(db, demo):
    apply(db, preview(db, xlsx(good_rows())))
    ids_before = {n: h.id for n, h in households_of(db).items()}
    members_before = {name: m.id for name, m in members_of(db, "801").items()}
    before = counts(db)

    rows = good_rows()
    rows[0][7] = "13800009999"  # the head's phone changed (the household's phone follows)
    rows[2][2] = "王晓明"  # a name fixed (same ID number)
    rows.insert(4, ["801", "第一村民小组", "王小宝", "孙子女", "男", "2020-02-02", pid(date(2020, 2, 2), 731), "", "否", "否",
                    "", ""])
    batch = preview(db, xlsx(rows))
    assert batch.summary["members_new"] == 1 and batch.summary["members_updated"] == 2
    assert batch.summary["members_unchanged"] == 5 and batch.summary["households_updated"] == 1
    assert batch.summary["households_unchanged"] == 1
    result = apply(db, batch)
    assert result["members_updated"] == 2

    assert {n: h.id for n, h in households_of(db).items()} == ids_before
    after = members_of(db, "801")
    assert after["王大山"].id == members_before["王大山"] and after["王大山"].phone == "13800009999"
    assert after["王晓明"].id == members_before["王小明"] and "王小明" not in after
    assert after["王晓明"].name_pinyin == "wangxiaoming" and after["王晓明"].name_initials == "wxm"
    assert after["王小宝"].id not in members_before.values()
    assert households_of(db)["801"].phone == "13800009999"
    assert counts(db, ROSTER_TABLES) == {**{k: before[k] for k in ROSTER_TABLES},
                                          "members": before["members"] + 1,
                                          "household_memberships": before["household_memberships"] + 1,
                                          "household_events": before["household_events"] + 1}
    with db.read_txn() as s:
        event = s.execute(select(HouseholdEvent).where(HouseholdEvent.household_id == ids_before["801"])
                          .order_by(HouseholdEvent.id.desc())).scalars().first()
    assert event is not None and event.kind == "imported"
    # and importing the corrected file again changes nothing
    assert apply(db, preview(db, xlsx(rows)))["members_unchanged"] == 8


# ---- files that are not rosters -------------------------------------------------------------------------------------

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")


def _merged_header(ws) -> None:  # type: ignore[no-untyped-def]
    """A two-row header: 户号 spans both rows, 成员信息 spans the member columns."""
    ws.insert_rows(1)
    ws["A1"], ws["A2"], ws["C1"] = "户号", None, "成员信息"
    ws.merge_cells("A1:A2")
    ws.merge_cells("C1:F1")


def _formulas(ws) -> None:  # type: ignore[no-untyped-def]
    ws["A3"] = "=A2"
    ws["F2"] = '=TEXT(DATE(1965,3,8),"yyyy-mm-dd")'


def _empty_sheet() -> bytes:
    buf = io.BytesIO()
    Workbook().save(buf)
    return buf.getvalue()


def _fifty_megabytes() -> bytes:
    row = csv_text(good_rows()[:1], header=[]).encode("utf-8")
    body = row * (50 * 1024 * 1024 // len(row) + 1)
    return csv_text([]).encode("utf-8") + body


BAD_FILES: dict[str, tuple[str, Any, str]] = {
    # case: (file name, file content (or a function making it), a phrase of the message)
    "image-renamed-xlsx": ("花名册.xlsx", PNG * 40, "改了扩展名的图片"),
    "image-renamed-xls": ("花名册.xls", PNG, "改了扩展名的图片"),
    "corrupt-xlsx": ("花名册.xlsx", b"PK\x03\x04" + b"\x00" * 200, "不是有效的 xlsx 表格"),
    "corrupt-xls": ("花名册.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "不是有效的 xls 表格"),
    "empty-sheet": ("花名册.xlsx", _empty_sheet, "表格是空的"),
    "empty-file": ("花名册.csv", b"", "空的"),
    "fifty-megabytes": ("花名册.csv", _fifty_megabytes, "10 MB"),
    "merged-header": ("花名册.xlsx", lambda: xlsx(good_rows(), setup=_merged_header), "合并单元格"),
    "formulas": ("花名册.xlsx", lambda: xlsx(good_rows(), setup=_formulas), "公式"),
    "only-header": ("花名册.xlsx", lambda: xlsx([]), "只有表头"),
    "only-header-csv": ("花名册.csv", lambda: csv_bytes([], "gbk"), "只有表头"),
    "no-header": ("花名册.xlsx", lambda: xlsx([["张三", "李四"]], ["甲", "乙"]), "找不到表头"),
    "missing-required-column": ("花名册.csv", lambda: csv_bytes([["1", "张三"]], header=["户号", "姓名"]), "与户主关系"),
    "pdf": ("花名册.pdf", b"%PDF-1.4\n", "只支持"),
    "binary-as-csv": ("花名册.csv", b"\x00\x01\x02abc\x00" * 50, "不是文本格式"),
}


def _content(case: str) -> tuple[str, bytes, str]:
    name, content, phrase = BAD_FILES[case]
    return name, content() if callable(content) else content, phrase


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_file_that_is_not_a_roster_gets_a_clear_message(case):
    name, data, phrase = _content(case)
    with pytest.raises(ValidationFailed) as exc:
        roster.read_sheet(name, data)
    assert exc.value.code == "bad_roster_file"
    assert phrase in exc.value.message and CJK.search(exc.value.message), exc.value.message


def test_bad_files_over_http_write_nothing(client, demo, db):
    token = login(client, "clerk")
    vid = village_id(db)
    before = counts(db)
    for case in sorted(BAD_FILES):
        name, data, phrase = _content(case)
        r = upload_api(client, token, vid, data, name)
        assert r.status_code in (413, 422), (case, r.status_code, r.text[:300])
        message = chinese_error(r, r.status_code)
        assert phrase in message or r.status_code == 413, (case, message)
        assert counts(db) == before, case
    # through the page: the form comes back with the reason
    for case in ("image-renamed-xlsx", "formulas", "merged-header"):
        name, data, phrase = _content(case)
        r = client.post(f"/villages/{vid}/roster/imports", files={"file": (name, data, "application/octet-stream")},
                        data={"csrf_token": token}, follow_redirects=False)
        assert r.status_code == 422, (case, r.status_code)
        shown = html.unescape(re.search(r'data-testid="error">([^<]+)<', r.text).group(1))  # type: ignore[union-attr]
        assert phrase in shown, (case, shown)
        assert 'data-testid="upload-form"' in r.text
    assert counts(db) == before


def test_formulas_in_a_data_cell_are_refused_even_when_values_look_fine(db, demo):
    def one_formula(ws) -> None:  # type: ignore[no-untyped-def]
        ws["H3"] = "=H2"  # 李桂花's phone copies 王大山's

    before = counts(db)
    with pytest.raises(ValidationFailed) as exc:
        preview(db, xlsx(good_rows(), setup=one_formula))
    assert "选择性粘贴" in exc.value.message
    assert counts(db) == before


# ---- export ---------------------------------------------------------------------------------------------------------

def _xlsx_rows(data: bytes) -> list[list[Any]]:
    ws = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    return [["" if v is None else v for v in row] for row in ws.iter_rows(values_only=True)]


def _csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_export_full_for_the_clerk_masked_for_the_reviewer_and_it_reimports_unchanged(client, demo, db):
    vid = village_id(db)
    with db.read_txn() as s:
        members = list(s.execute(select(Member).where(Member.village_id == vid)).scalars())
    ids = {m.id_number for m in members if m.id_number}
    phones = {m.phone for m in members if m.phone}
    assert ids and phones

    token = login(client, "clerk")
    x = client.get(f"/villages/{vid}/roster/export.xlsx")
    assert x.status_code == 200 and x.headers["content-type"].startswith(XLSX_TYPE)
    rows = _xlsx_rows(x.content)
    assert rows[0] == [roster.COLUMNS[k][0] for k in roster.TEMPLATE_ORDER]
    assert len(rows) - 1 == len(members)
    assert {r[ID_COL] for r in rows[1:] if r[ID_COL]} == ids
    assert {r[7] for r in rows[1:] if r[7]} == phones
    c = client.get(f"/villages/{vid}/roster/export.csv")
    assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
    crow = _csv_rows(c.content)
    assert {r[ID_COL].strip() for r in crow[1:] if r[ID_COL].strip()} == ids
    # a leading tab keeps Excel from turning an all-digit ID number into 3.41021E+17 when it opens the file
    assert all(r[ID_COL].startswith("\t") for r in crow[1:] if r[ID_COL].isdigit() or r[ID_COL][1:].isdigit())
    assert any(r[ID_COL].startswith("\t") for r in crow[1:])

    # filtered by group
    with db.read_txn() as s:
        some = s.execute(select(Household).where(Household.village_id == vid)).scalars().first()
    g = client.get(f"/villages/{vid}/roster/export.csv", params={"group_id": some.group_id})  # type: ignore[union-attr]
    grouped = _csv_rows(g.content)[1:]
    assert grouped and len(grouped) <= len(crow) - 1
    assert {r[0] for r in grouped} == {h.number for h in households_of(db).values() if h.group_id == some.group_id}  # type: ignore[union-attr]

    # the export comes back as "unchanged", both formats
    before = counts(db, ROSTER_TABLES)
    for data, name in ((x.content, "export.xlsx"), (c.content, "export.csv")):
        up = upload_api(client, token, vid, data, name)
        assert up.status_code == 201, up.text[:500]
        s_ = up.json()["summary"]
        assert up.json()["problems"] == [], up.json()["problems"]
        assert (s_["households_unchanged"], s_["members_unchanged"]) == (4, len(members)), s_
        assert s_["households_new"] == s_["households_updated"] == s_["members_new"] == s_["members_updated"] == 0
        done = confirm_api(client, token, vid, up.json()["batch_id"])
        assert done.status_code == 200, done.text
    assert counts(db, ROSTER_TABLES) == before

    # the township reviewer (read-only) sees the roster masked
    login(client, "reviewer")
    for fmt in ("xlsx", "csv"):
        r = client.get(f"/villages/{vid}/roster/export.{fmt}")
        assert r.status_code == 200, r.text[:300]
        got = _xlsx_rows(r.content) if fmt == "xlsx" else _csv_rows(r.content)
        assert len(got) - 1 == len(members)
        shown_ids = [str(row[ID_COL]).strip() for row in got[1:] if row[ID_COL]]
        shown_phones = [str(row[7]).strip() for row in got[1:] if row[7]]
        assert shown_ids and all(re.fullmatch(r"\*{16}[\dX]{2}", v) for v in shown_ids), shown_ids
        births = [str(row[5]).strip() for row in got[1:] if row[5]]
        assert births and all(re.fullmatch(r"\d{4}年", v) for v in births), births  # the year, never the date
        assert shown_phones and all("****" in v for v in shown_phones), shown_phones
        blob = r.content.decode("utf-8-sig") if fmt == "csv" else str(got)
        assert not any(i in blob for i in ids) and not any(p in blob for p in phones)


# ---- the import wizard in the browser -------------------------------------------------------------------------------

def test_import_wizard_through_the_pages(client, demo, db):
    token = login(client, "clerk")
    vid = village_id(db)
    page = client.get(f"/villages/{vid}/roster")
    assert page.status_code == 200 and 'data-testid="upload-form"' in page.text and "template.xlsx" in page.text
    before = counts(db, ROSTER_TABLES)

    # a file with a problem: the preview page shows it, offers no confirmation; the clerk discards it
    rows = good_rows()
    rows[1][ID_COL] = bad_check_digit(rows[1][ID_COL])
    r = client.post(f"/villages/{vid}/roster/imports", files={"file": ("花名册.xlsx", xlsx(rows), XLSX_TYPE)},
                    data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    location = r.headers["location"]
    m = re.fullmatch(rf"/villages/{vid}/roster/imports/(\d+)", location)
    assert m, location
    bad_id = int(m.group(1))
    shown = client.get(location)
    assert shown.status_code == 200
    table = re.search(r'data-testid="problems">(.*?)</table>', shown.text, re.S)
    assert table, shown.text[:2000]
    cells = [[html.unescape(c).strip() for c in re.findall(r"<td>(.*?)</td>", tr, re.S)]
             for tr in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)]
    cells = [c for c in cells if c]
    assert len(cells) == 1 and cells[0][:2] == ["3", "身份证号"] and "校验位" in cells[0][2], cells
    assert 'data-testid="confirm-form"' not in shown.text
    refused = client.post(f"/villages/{vid}/roster/imports/{bad_id}/confirm", data={"csrf_token": token},
                          follow_redirects=False)
    assert refused.status_code == 422 and "未导入任何数据" in refused.text
    d = client.post(f"/villages/{vid}/roster/imports/{bad_id}/discard", data={"csrf_token": token},
                    follow_redirects=False)
    assert d.status_code == 303 and d.headers["location"] == f"/villages/{vid}/roster"
    assert "已放弃这次上传" in client.get(d.headers["location"]).text
    assert batch_status(db, bad_id) == "discarded"
    assert counts(db, ROSTER_TABLES) == before
    again = client.post(f"/villages/{vid}/roster/imports/{bad_id}/confirm", data={"csrf_token": token},
                        follow_redirects=False)
    assert again.status_code == 409 and "已经处理过" in again.text

    # the corrected file (now also with a new group): preview, confirm, the Chinese summary
    rows = good_rows()
    rows[4][1] = rows[5][1] = rows[6][1] = "第九村民小组"
    r = client.post(f"/villages/{vid}/roster/imports", files={"file": ("花名册.csv", csv_bytes(rows, "gbk"), "text/csv")},
                    data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    shown = client.get(r.headers["location"])
    assert 'data-testid="confirm-form"' in shown.text and 'name="create_missing_groups"' in shown.text
    assert "第 9 组" in shown.text and "新建 2 户" in shown.text.replace("\n", "")
    assert counts(db, ROSTER_TABLES) == before
    batch_id = int(r.headers["location"].rsplit("/", 1)[1])
    done = client.post(f"/villages/{vid}/roster/imports/{batch_id}/confirm",
                       data={"csrf_token": token, "create_missing_groups": "1"}, follow_redirects=False)
    assert done.status_code == 303, done.text[:800]
    assert done.headers["location"] == f"/households?village_id={vid}"
    listing = client.get(done.headers["location"])
    assert "导入完成：新建 2 户、更新 0 户；新增成员 7 人、更新 0 人，0 人没有变化" in listing.text
    assert "王大山" in listing.text
    assert counts(db, ROSTER_TABLES)["households"] == before["households"] + 2


# ---- scoping --------------------------------------------------------------------------------------------------------

def test_clerk_cannot_import_into_another_village_and_reviewer_cannot_import(client, demo, db):
    own, other = village_id(db), village_id(db, "桃园村")
    foreign = preview(db, xlsx(good_rows()), village="桃园村")
    before = counts(db, ROSTER_TABLES)

    token = login(client, "clerk")
    assert upload_api(client, token, other, xlsx(good_rows())).status_code == 404
    r = client.post(f"/villages/{other}/roster/imports", files={"file": ("a.xlsx", xlsx(good_rows()), XLSX_TYPE)},
                    data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 404
    assert confirm_api(client, token, other, foreign.id).status_code == 404  # type: ignore[arg-type]
    # the other village's batch through one's own village
    assert confirm_api(client, token, own, foreign.id).status_code == 404  # type: ignore[arg-type]
    assert client.post(f"/villages/{own}/roster/imports/{foreign.id}/confirm", data={"csrf_token": token},
                       follow_redirects=False).status_code == 404
    assert client.post(f"/villages/{other}/roster/imports/{foreign.id}/discard", data={"csrf_token": token},
                       follow_redirects=False).status_code == 404
    assert client.get(f"/villages/{other}/roster/imports/{foreign.id}").status_code == 404
    assert client.get(f"/villages/{other}/roster/export.xlsx").status_code == 404
    assert client.get(f"/villages/{other}/roster/template.xlsx").status_code == 404

    token = login(client, "reviewer")
    assert upload_api(client, token, own, xlsx(good_rows())).status_code == 404
    assert client.post(f"/villages/{own}/roster/imports", files={"file": ("a.xlsx", xlsx(good_rows()), XLSX_TYPE)},
                       data={"csrf_token": token}, follow_redirects=False).status_code == 404
    assert client.get(f"/villages/{own}/roster/template.xlsx").status_code == 404
    page = client.get(f"/villages/{own}/roster")
    assert page.status_code == 200 and 'data-testid="upload-form"' not in page.text

    assert counts(db, ROSTER_TABLES) == before
    assert batch_status(db, foreign.id) == "preview"  # type: ignore[arg-type]


def test_a_file_with_fewer_columns_neither_erases_nor_duplicates(db, demo):
    """A clerk's own sheet may lack the ID, phone or flag columns, or leave an ID blank: the people already on the
    roster are found by name in their household and keep what the file does not say."""
    apply(db, preview(db, xlsx(good_rows())))
    before = counts(db, ROSTER_TABLES)
    kept = {name: (m.id, m.id_number, m.phone, m.party_member, m.living_away, m.gender, m.birth_date)
            for name, m in members_of(db, "801").items()}
    short = [[r[0], r[2], r[3]] for r in good_rows() if r[0] == "801"]
    batch = preview(db, xlsx(short, ["户号", "姓名", "与户主关系"]))
    assert batch.problems == [], batch.problems
    assert (batch.summary["members_unchanged"], batch.summary["members_new"]) == (4, 0), batch.summary
    apply(db, batch)
    blank_id = good_rows()
    blank_id[0][ID_COL] = ""
    batch = preview(db, xlsx(blank_id))
    assert (batch.summary["members_unchanged"], batch.summary["members_new"]) == (7, 0), batch.summary
    apply(db, batch)
    assert counts(db, ROSTER_TABLES) == before
    assert {name: (m.id, m.id_number, m.phone, m.party_member, m.living_away, m.gender, m.birth_date)
            for name, m in members_of(db, "801").items()} == kept


# ---- hostile and huge files (issue 17, items 4 and 6) ---------------------------------------------------------------

def test_a_stray_quote_in_a_csv_is_a_clear_422_naming_the_line(client, demo, db):
    """One stray quote opens a field that swallows the rest of the file: past 131,072 characters the csv module
    raised an error that escaped as a 500; below that, the following rows silently became one cell."""
    token = login(client, "clerk")
    vid = village_id(db)
    before = counts(db)
    long_tail = "".join(f"{900 + i},某人{i},户主\r\n" for i in range(12_000))  # ~190,000 characters
    for body in (f"户号,姓名,与户主关系\r\n801,王大山,户主\r\n802,\"赵春生,户主\r\n{long_tail}",
                 "户号,姓名,与户主关系\r\n801,王大山,户主\r\n802,\"赵春生,户主\r\n803,钱秀兰,户主\r\n804,孙乐,户主\r\n"):
        r = upload_api(client, token, vid, body.encode(), "花名册.csv")
        message = chinese_error(r, 422)
        assert "第 3 行" in message and "引号" in message, message
    assert counts(db) == before


def test_a_csv_row_of_millions_of_columns_is_refused_naming_the_line(client, demo, db):
    token = login(client, "clerk")
    vid = village_id(db)
    body = "户号,姓名,与户主关系\r\n801,王大山,户主\r\n" + "," * 5_000_000 + "\r\n"
    message = chinese_error(upload_api(client, token, vid, body.encode(), "花名册.csv"), 422)
    assert "第 3 行" in message and "列" in message, message


def test_a_huge_file_valid_in_shape_gives_a_bounded_preview(client, demo, db):
    """200,000 rows (the import's limit), each with a problem: the preview lists the first few hundred and says
    how many more there are, instead of answering 30 MB."""
    token = login(client, "clerk")
    vid = village_id(db)
    body = "户号,姓名,与户主关系,身份证号\r\n" + "".join(f"{i:06d},张三,户主,12345\r\n" for i in range(200_000))
    r = upload_api(client, token, vid, body.encode(), "花名册.csv")
    assert r.status_code == 201, r.text[:500]
    assert len(r.content) < 300_000, len(r.content)
    preview_body = r.json()
    assert not preview_body["can_confirm"]
    listed = preview_body["problems"]
    assert 100 <= len(listed) <= 501
    more = listed[-1]
    assert more["code"] == "more_problems" and CJK.search(more["message"])
    hidden = 200_000 - (len(listed) - 1)
    assert f"另有 {hidden} 处问题" in more["message"], more
    assert preview_body["summary"]["errors"] == 200_000
    page = client.get(f"/villages/{vid}/roster/imports/{preview_body['batch_id']}")
    assert page.status_code == 200 and len(page.content) < 400_000, len(page.content)
    assert f"另有 {hidden} 处问题" in page.text


def _idle_in_transaction(db) -> int:  # type: ignore[no-untyped-def]
    """PostgreSQL: the connections of this database, other than the asking one, holding a transaction open."""
    with db.read_txn() as s:
        return int(s.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")).scalar_one())


@pytest.mark.parametrize("route", ["api", "page"])
def test_an_upload_is_parsed_outside_any_write_transaction(app, client, demo, db, monkeypatch, route):
    """While a roster file is being parsed (27 s for the file of the issue), another write of the county (a
    redemption) must not wait for it: on SQLite the process's one write lock is free and a write transaction
    completes during the parse; on PostgreSQL the upload holds no transaction open. Synchronised with events:
    the parse waits until the other write has finished (or gives up after a while, and the test fails)."""
    import threading

    token = login(client, "clerk")
    vid = village_id(db)
    parsing, written = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}
    real_read = roster.read_sheet

    def watched_read(name: str, data: bytes) -> roster.Sheet:
        # looked at before the other write may start (it starts on `parsing`): its own transaction is not counted
        if app.state.db.is_sqlite:
            seen["lock_free"] = not app.state.db._write_lock._locked
        else:
            seen["open_transactions"] = _idle_in_transaction(db)
        parsing.set()
        seen["written_meanwhile"] = written.wait(timeout=15)
        return real_read(name, data)

    monkeypatch.setattr(roster, "read_sheet", watched_read)

    def upload() -> None:
        if route == "api":
            seen["response"] = upload_api(client, token, vid, xlsx(good_rows()))
        else:
            seen["response"] = client.post(f"/villages/{vid}/roster/imports", data={"csrf_token": token},
                                           files={"file": ("花名册.xlsx", xlsx(good_rows()), XLSX_TYPE)},
                                           follow_redirects=False)

    def other_write() -> None:  # any write transaction of the same application, as a redemption takes
        with app.state.db.write_txn() as s:
            s.execute(text("UPDATE village_groups SET name = name WHERE id = (SELECT min(id) FROM village_groups)"))
        written.set()

    uploader = threading.Thread(target=upload)
    uploader.start()
    assert parsing.wait(timeout=30), "the upload never reached the parser"
    writer = threading.Thread(target=other_write)
    writer.start()
    uploader.join(timeout=120)
    writer.join(timeout=120)
    assert seen["response"].status_code in (201, 303), seen["response"].text[:500]
    assert seen.get("lock_free", True), "the upload held the write lock while its file was parsed"
    assert seen.get("open_transactions", 0) == 0, "the upload held a transaction open while its file was parsed"
    assert seen["written_meanwhile"], "another write waited for the upload's parse"


def test_a_nul_or_control_character_in_a_workbook_cell_is_a_problem_naming_row_and_column(client, demo, db):
    """Excel writes an invisible character as _x0000_, and calamine reads it back as one: such a cell is a problem
    of its row and column (PostgreSQL would refuse the NUL when the preview is stored; SQLite kept it)."""
    from tests.support.spreadsheets import xlsx_by_hand

    token = login(client, "clerk")
    vid = village_id(db)
    head = "".join(f'<c r="{chr(65 + i)}1" t="inlineStr"><is><t>{h}</t></is></c>'
                   for i, h in enumerate(["户号", "姓名", "与户主关系", "家庭住址"]))

    def row(r: int, *cells: str) -> str:
        return f'<row r="{r}">' + "".join(f'<c r="{chr(65 + i)}{r}" t="inlineStr"><is><t>{v}</t></is></c>'
                                          for i, v in enumerate(cells)) + "</row>"

    data = xlsx_by_hand(f'<row r="1">{head}</row>' + row(2, "801", "王_x0000_大山", "户主", "一组")
                        + row(3, "802", "赵春生", "户主", "二组_x0007_3号") + row(4, "803", "钱秀兰", "户主", "三组"))
    r = upload_api(client, token, vid, data, "花名_x0000_册.xlsx")
    assert r.status_code == 201, r.text[:500]
    problems = r.json()["problems"]
    assert [(p["row"], p["column"]) for p in problems if p["code"] == "bad_character"] == [(2, "姓名"), (3, "家庭住址")]
    assert "空字符" in problems[0]["message"] and "\x00" not in r.text and "\\u0000" not in r.text
