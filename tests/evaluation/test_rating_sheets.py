"""Rating sheets (评分表): download the month's sheet, fill it offline, upload, preview the problems and changes,
confirm through rounds.save_ratings. Sheets of another village, month or rater are refused; bad cells are named by
row and column and nothing is saved."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from sqlalchemy import func, select, update

from app.audit.models import AuditEvent
from app.db import Database
from app.errors import AppError, Conflict, NotFound, ValidationFailed
from app.evaluation.models import Rating, SheetUpload
from app.evaluation.service import rounds, sheets
from app.households.models import Household
from tests.support.eval_helpers import CLERK, THEMES, agree_all, consensus_round, eval_village

MONTH = 202609


def _count(db: Database, model: type) -> int:
    with db.read_txn() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def _number(i: int) -> str:
    return f"{i + 1:03d}"  # eval_village numbers its households 001, 002 ...


def _open(data: bytes) -> tuple[Workbook, Worksheet, int, dict[str, int]]:
    wb = load_workbook(io.BytesIO(data))
    ws = wb[sheets.SHEET]
    header = next(r for r in range(1, 20) if ws.cell(r, 1).value == "户号")
    cols = {str(ws.cell(header, c).value): c for c in range(1, ws.max_column + 1)}
    return wb, ws, header, cols


def _theme_col(cols: dict[str, int], code: str) -> int:
    return next(c for h, c in cols.items() if h.endswith(f"（{code}）"))


def _save(wb: Workbook) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _fill(data: bytes, grades: dict[tuple[str, str], str | None], *, extra: tuple[list[Any], ...] = ()) -> bytes:
    """The downloaded sheet with cells set by (户号, theme code), and extra rows appended below."""
    wb, ws, header, cols = _open(data)
    rows = {str(ws.cell(r, 1).value): r for r in range(header + 1, ws.max_row + 1)}
    for (number, theme), grade in grades.items():
        ws.cell(rows[number], _theme_col(cols, theme)).value = grade
    for row in extra:
        ws.append(row)
    return _save(wb)


def _everyone(n: int, grade: str) -> dict[tuple[str, str], str | None]:
    return {(_number(i), t): grade for i in range(n) for t in THEMES}


def test_round_trip_download_fill_upload_preview_confirm(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        h0, h1, h2 = ev.households[:3]
        rounds.save_ratings(s, CLERK, rid, [rounds.Cell(h0, "ENV", "优"), rounds.Cell(h0, "LAW", "优"),
                                            rounds.Cell(h2, "PUBLIC", "优")])
        data, name, media = sheets.download(s, rounds.get_round(s, rid))
        village = ev.village.name
    assert name == f"评分表-{village}-2026年9月.xlsx"
    assert media == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    _, ws, header, cols = _open(data)
    assert list(cols)[:4] == ["户号", "户主", "村民小组", "备注"] and len(cols) == 4 + len(THEMES)
    assert [ws.cell(r, 1).value for r in range(header + 1, ws.max_row + 1)] == [_number(i) for i in range(6)]
    assert ws.cell(header + 1, _theme_col(cols, "ENV")).value == "优"  # prefilled with the saved grades
    assert ws.cell(header + 1, _theme_col(cols, "FILIAL")).value is None
    assert ws.freeze_panes == f"C{header + 1}"

    grades = _everyone(6, "良") | {("001", "ENV"): "优", ("001", "LAW"): "中", ("002", "LAW"): " 差 ",
                                  ("003", "PUBLIC"): None}
    filled = _fill(data, grades)
    with db.write_txn() as s:
        up = sheets.upload(s, CLERK, rid, file_name="C:\\文书\\九月评分.xlsx", data=filled)
        uid = up.id
        assert up.file_name == "九月评分.xlsx"
    assert uid is not None
    with db.read_txn() as s:
        up = sheets.preview(s, uid, rid)
        assert up.status == "preview" and up.problems == []
        assert len(up.cells) == 35  # the blank cell is "leave unchanged", not a cell
        assert {"household_id": h1, "theme": "LAW", "grade": "差"}.items() <= next(
            c for c in up.cells if c["household_id"] == h1 and c["theme"] == "LAW").items()
        assert sheets.changes(s, up) == {"new": 33, "changed": 1, "unchanged": 1, "problems": 0}
    with db.write_txn() as s:
        result = sheets.confirm(s, CLERK, rid, uid)
    assert (result.saved, result.unchanged, result.cleared) == (34, 1, 0)
    with db.read_txn() as s:
        g = rounds.grid(s, rounds.get_round(s, rid))
        assert len(g) == 36
        assert (g[(h0, "ENV")], g[(h0, "LAW")], g[(h1, "LAW")], g[(h1, "ENV")]) == ("优", "中", "差", "良")
        assert g[(h2, "PUBLIC")] == "优"  # left blank in the sheet: kept
        assert s.get(SheetUpload, uid).status == "applied"  # type: ignore[union-attr]
        audit = s.execute(select(AuditEvent).where(AuditEvent.action == "round.sheet_apply")).scalars().one()
        assert audit.object_id == str(rid)
    with pytest.raises(Conflict, match="已经导入过了"), db.write_txn() as s:
        sheets.confirm(s, CLERK, rid, uid)  # confirming twice
    with pytest.raises(NotFound), db.read_txn() as s:
        sheets.preview(s, uid, rid + 1)
    assert _count(db, Rating) == 36


def test_bad_grade_unknown_number_and_duplicate_row_are_named_and_nothing_is_saved(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        data, _, _ = sheets.download(s, rounds.get_round(s, rid))
    _, _, header, cols = _open(data)
    env = _theme_col(cols, "ENV")
    env_letter = chr(ord("A") + env - 1)
    first = header + 1
    dup = ["003", "王德明", "", "", *(["优"] * len(THEMES))]
    unknown = ["999", "某某", "", "", *(["良"] * len(THEMES))]
    filled = _fill(data, _everyone(6, "良") | {("002", "ENV"): "A+"}, extra=(dup, unknown))
    with db.write_txn() as s:
        up = sheets.upload(s, CLERK, rid, file_name="评分表.xlsx", data=filled)
        uid = up.id
        problems = list(up.problems)
    assert uid is not None
    assert len(problems) == 3, problems
    assert problems[0] == (f"第 {first + 1} 行 {env_letter} 列（环保卫生）：等级“A+”不在评分标准内"
                           "（可填：优、良、中、差，或留空）")
    assert problems[1].startswith(f"第 {first + 6} 行：户号 003 与第 {first + 2} 行重复")
    assert problems[2].startswith(f"第 {first + 7} 行 A 列：户号“999”在本村找不到")
    with db.read_txn() as s:
        assert sheets.changes(s, sheets.preview(s, uid, rid))["problems"] == 3
    with pytest.raises(ValidationFailed, match="请修改表格后重新上传"), db.write_txn() as s:
        sheets.confirm(s, CLERK, rid, uid)
    assert _count(db, Rating) == 0
    with db.write_txn() as s:
        assert sheets.discard(s, CLERK, rid, uid).status == "discarded"
    with pytest.raises(Conflict, match="已放弃"), db.write_txn() as s:
        sheets.confirm(s, CLERK, rid, uid)
    assert _count(db, Rating) == 0


def test_a_household_not_on_the_months_roster_and_a_shifted_row_are_problems(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        data, _, _ = sheets.download(s, rounds.get_round(s, rid))
        # registered after the month: in the village, not on this month's roster
        s.execute(update(Household).where(Household.id == ev.households[5]).values(
            created_at=datetime(2026, 10, 15, tzinfo=UTC)))
    wb, ws, header, _ = _open(_fill(data, _everyone(6, "良")))
    ws.cell(header + 2, 2).value = "李某"  # 户主 of 002 is 李秀英: rows pasted out of line
    ws.cell(header + 3, 1).value = 3  # Excel turned "003" into a number: still found
    with db.write_txn() as s:
        problems = sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=_save(wb)).problems
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"第 {header + 2} 行：户号 002 的户主是“李秀英”，表中写的是“李某”")
    assert problems[1].startswith(f"第 {header + 6} 行：户号 006（") and "不在本月评比名单中" in problems[1]


def test_a_sheet_of_another_village_or_month_or_not_a_sheet_is_refused(db: Database) -> None:
    with db.write_txn() as s:
        ev, other = eval_village(s), eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        rid_august = consensus_round(s, ev, 202608)
        rid_other = consensus_round(s, other, MONTH)
        august, _, _ = sheets.download(s, rounds.get_round(s, rid_august))
        elsewhere, _, _ = sheets.download(s, rounds.get_round(s, rid_other))
    august = _fill(august, _everyone(6, "良"))
    elsewhere = _fill(elsewhere, _everyone(6, "良"))
    with pytest.raises(ValidationFailed, match=f"这是 {other.village.name} 2026年9月 的评分表，不是本轮的"), \
            db.write_txn() as s:
        sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=elsewhere)
    with pytest.raises(ValidationFailed, match=f"这是 {ev.village.name} 2026年8月 的评分表，不是本轮的"), \
            db.write_txn() as s:
        sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=august)
    # the hidden marker sheet lost (the sheet copied into a new workbook): the code in the info line still tells
    wb = load_workbook(io.BytesIO(august))
    del wb[sheets.META_SHEET]
    with pytest.raises(ValidationFailed, match="2026年8月 的评分表，不是本轮的"), db.write_txn() as s:
        sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=_save(wb))
    # a workbook of the clerk's own making, with the right columns but no marker
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = sheets.SHEET
    ws.append(["户号", "户主", "村民小组", "备注", "环保卫生（ENV）"])
    ws.append(["001", "张建国", "", "", "优"])
    with pytest.raises(ValidationFailed, match="不是本系统下载的评分表"), db.write_txn() as s:
        sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=_save(wb))
    for data, message in ((b"", "空的"), (b"GIF89a not a sheet", "无法读取这个文件"),
                          (b"PK\x03\x04 broken zip", "无法读取这个文件"), (b"\xd0\xcf\x11\xe0" + b"\0" * 100, "旧版"),
                          (b"PK\x03\x04" + b"\0" * (5 * 1024 * 1024), "文件太大")):
        with pytest.raises(ValidationFailed, match=message), db.write_txn() as s:
            sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=data)
    assert _count(db, SheetUpload) == 0


def test_upload_to_a_submitted_round_is_refused_and_a_pending_preview_cannot_be_confirmed(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        agree_all(s, rid, ev.households)
        data, _, _ = sheets.download(s, rounds.get_round(s, rid))
    filled = _fill(data, _everyone(6, "优"))
    with db.write_txn() as s:
        uid = sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=filled).id
        rounds.submit(s, CLERK, rid)
    assert uid is not None
    with pytest.raises(AppError, match="待乡镇审核，不能再修改评分"), db.write_txn() as s:
        sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=filled)
    with pytest.raises(AppError, match="待乡镇审核，不能再修改评分"), db.write_txn() as s:
        sheets.confirm(s, CLERK, rid, uid)
    assert _count(db, SheetUpload) == 1
    with db.read_txn() as s:
        assert set(rounds.grid(s, rounds.get_round(s, rid)).values()) == {"良"}
        assert s.get(SheetUpload, uid).status == "preview"  # type: ignore[union-attr]


def test_each_theme_column_has_a_dropdown_of_its_grades_and_the_marker_is_hidden(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        rnd = rounds.get_round(s, rid)
        data, _, _ = sheets.download(s, rnd)
        scales = {t.code: [g.code for g in t.scale()[::-1]] for t in rounds.ruleset_of(s, rnd).themes}
    wb, ws, header, cols = _open(data)
    validations = ws.data_validations.dataValidation
    assert len(validations) == len(THEMES)
    for code in THEMES:
        col = chr(ord("A") + _theme_col(cols, code) - 1)
        dv = next(v for v in validations if str(v.sqref) == f"{col}{header + 1}:{col}{header + 6}")
        assert dv.type == "list" and dv.formula1 == '"' + ",".join(scales[code]) + '"' and dv.allow_blank
    assert wb[sheets.META_SHEET].sheet_state == "veryHidden"
    assert f"ZF-R{rid}-V{ev.vid}-M{MONTH}-P0" in str(ws.cell(2, 1).value)


def test_text_that_would_run_as_a_formula_is_written_inert_and_still_matches(db: Database) -> None:
    evil = "=HYPERLINK(\"http://x\",\"点我\")"
    with db.write_txn() as s:
        ev = eval_village(s)
        s.execute(update(Household).where(Household.id == ev.households[0]).values(head_name=evil))
        rid = consensus_round(s, ev, MONTH)
        data, _, _ = sheets.download(s, rounds.get_round(s, rid))
    _, ws, header, _ = _open(data)
    cell = ws.cell(header + 1, 2)
    assert cell.value == "'" + evil and cell.data_type == "s"
    with db.write_txn() as s:  # the inert 户主 still matches the household
        up = sheets.upload(s, CLERK, rid, file_name="x.xlsx", data=_fill(data, _everyone(6, "良")))
        assert up.problems == [] and len(up.cells) == 36


def test_a_members_sheet_marks_recusal_and_belongs_to_that_member(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, members=4)
        rid = rounds.open_round(s, CLERK, village_id=ev.vid, month=MONTH, mode="panel").id
        assert rid is not None
        m0, m1 = ev.members[0].id, ev.members[1].id
        assert m0 is not None and m1 is not None
        data, name, _ = sheets.download(s, rounds.get_round(s, rid), rater_id=m0)
        with pytest.raises(ValidationFailed, match="委员各自评分"):
            sheets.download(s, rounds.get_round(s, rid))
    assert name.endswith("-委员1.xlsx")
    _, ws, header, cols = _open(data)
    assert "回避" in str(ws.cell(header + 1, cols["备注"]).value)  # member 0 lives in household 001
    filled = _fill(data, _everyone(6, "良"))
    with pytest.raises(ValidationFailed, match="这是委员 委员1的评分表，不是委员 委员2的"), db.write_txn() as s:
        sheets.upload(s, ev.actor(1), rid, file_name="x.xlsx", data=filled, rater_id=m1)
    with db.write_txn() as s:
        up = sheets.upload(s, ev.actor(0), rid, file_name="x.xlsx", data=filled, rater_id=m0)
        assert len(up.problems) == 1 and "回避" in up.problems[0]
    clean = _fill(data, {k: v for k, v in _everyone(6, "良").items() if k[0] != "001"})
    with db.write_txn() as s:
        uid = sheets.upload(s, ev.actor(0), rid, file_name="x.xlsx", data=clean, rater_id=m0).id
    assert uid is not None
    with pytest.raises(ValidationFailed, match="另一位评分人"), db.write_txn() as s:
        sheets.confirm(s, ev.actor(1), rid, uid, rater_id=m1)
    with db.write_txn() as s:
        assert sheets.confirm(s, ev.actor(0), rid, uid, rater_id=m0).saved == 30
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(Rating).where(Rating.rater_id == m0)).scalar_one() == 30


def test_a_small_file_with_one_far_away_cell_is_refused_before_it_is_read(db: Database) -> None:
    """Read as a full rectangle, one cell in column XFD would make a 5 KB file take gigabytes."""
    with db.write_txn() as s:
        ev = eval_village(s)
        rid = consensus_round(s, ev, MONTH)
        data, _, _ = sheets.download(s, rounds.get_round(s, rid))
    wb, ws, _, _ = _open(data)
    ws.cell(300, 16384).value = "y"
    with pytest.raises(ValidationFailed, match="列，太多了"), db.write_txn() as s:
        sheets.upload(s, CLERK, rid, file_name="wide.xlsx", data=_save(wb))
    assert _count(db, SheetUpload) == 0


def test_an_uploaded_sheet_is_read_outside_any_write_transaction(client, db: Database, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """As a roster file (issue 17, item 4): while the upload's workbook is read, the process's write lock is free
    (SQLite) and no transaction of the upload is open (PostgreSQL)."""
    from sqlalchemy import text

    from tests.support.eval_helpers import staffed_village
    from tests.support.web import login

    ev, _home = staffed_village(db)
    with db.write_txn() as s:
        rid = consensus_round(s, ev, MONTH)
        data, _name, _media = sheets.download(s, rounds.get_round(s, rid))
    filled = _fill(data, _everyone(6, "良"))
    app = client.app
    seen: dict[str, object] = {}
    real = sheets._read

    def watched(content: bytes) -> object:
        if app.state.db.is_sqlite:
            seen["lock_free"] = not app.state.db._write_lock._locked
        else:
            with db.read_txn() as s:
                seen["open"] = s.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()")).scalar_one()
        return real(content)

    monkeypatch.setattr(sheets, "_read", watched)
    csrf = login(client, "clerk1", "Passw0rd-test")
    r = client.post(f"/rounds/{rid}/sheet", data={"csrf_token": csrf}, follow_redirects=False,
                    files={"file": ("评分表.xlsx", filled, sheets.MEDIA_TYPE)})
    assert r.status_code == 303, r.text[:500]
    assert seen and seen.get("lock_free", True) and seen.get("open", 0) == 0, seen
    assert _count(db, SheetUpload) == 1
