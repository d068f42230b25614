"""Red and black lists over time: status by month, the way off the black list (plan, visits, the committee's
decision), expiry, coverage arithmetic against the 60 % target, and who may see and do what."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, text, update

from app.audit.models import AuditEvent
from app.db import Database
from app.errors import Conflict, ValidationFailed
from app.evaluation.service import rounds
from app.households.models import Household
from app.lists import service as lists
from app.lists.models import ListPosting, RectificationVisit
from tests.support.eval_helpers import CLERK, eval_village, staffed_village
from tests.support.web import csrf_from, login

PW = "Passw0rd-test"


def _post(db: Database, vid: int, hid: int, list_: str, from_month: int, to_month: int, *,
          status: str = "effective", reason: str = "卫生不整洁户") -> int:
    """A posting as a round's finalisation writes it, with the village's list counts rewritten."""
    with db.write_txn() as s:
        pid = int(s.execute(insert(ListPosting).values(
            village_id=vid, household_id=hid, list=list_, source="determination", code="D-" + reason[:4],
            reason=reason, explanation="委员会认定", from_month=from_month, to_month=to_month, status=status)
            .returning(ListPosting.id)).scalar_one())
        rounds.refresh_list_counts(s, vid, from_month // 100)
        return pid


def test_status_by_month_and_expiry() -> None:
    p = ListPosting(village_id=1, household_id=1, list="black", source="d", code="c", reason="r", explanation="e",
                    from_month=202603, to_month=202605)
    assert [lists.status_on(p, m) for m in (202602, 202603, 202605, 202606)] == ["effective"] * 3 + ["expired"]
    assert [lists.is_shown(p, m) for m in (202602, 202603, 202605, 202606)] == [False, True, True, False]
    p.status = "lifted"
    assert not lists.is_shown(p, 202604) and lists.status_on(p, 202604) == "lifted"


def test_the_way_off_the_black_list(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, households=6, members=5)
    month = lists.this_month()
    pid = _post(db, ev.vid, ev.households[5], "black", month, month + 2 if month % 100 <= 10 else month)
    red = _post(db, ev.vid, ev.households[4], "red", month, month, reason="文明家庭")
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="只有黑榜才有整改"):
        lists.start_rectification(s, CLERK, red, measures="x", helper="y")
    with db.write_txn() as s, pytest.raises(Conflict, match="须有整改方案"):
        lists.lift(s, CLERK, pid, decided_on=date.today(), members_present=5, members_for=5, decision="好")
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="整改措施"):
        lists.start_rectification(s, CLERK, pid, measures=" ", helper="老党员 李德明")
    with db.write_txn() as s:
        lists.start_rectification(s, CLERK, pid, measures="每周清理院落，垃圾分类投放", helper="老党员 李德明")
    with db.write_txn() as s, pytest.raises(Conflict, match="已经有整改方案"):
        lists.start_rectification(s, CLERK, pid, measures="再来", helper="某某")
    with db.write_txn() as s, pytest.raises(Conflict, match="至少回访一次"):
        lists.lift(s, CLERK, pid, decided_on=date.today(), members_present=5, members_for=5, decision="好")
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="回访日期不对"):
        lists.record_visit(s, CLERK, pid, visited_on=date.today() + timedelta(days=3), notes="未来")
    with db.write_txn() as s:
        lists.record_visit(s, CLERK, pid, visited_on=date.today(), notes="院落已清理干净")
    # a committee of five: three must be present, and more than half of those present must agree
    for present, agree, message in ((2, 2, "到会委员须超过半数"), (6, 6, "超过了委员会"), (4, 2, "同意移出的须超过"),
                                    (3, 4, "同意人数不能超过到会人数")):
        with db.write_txn() as s, pytest.raises(ValidationFailed, match=message):
            lists.lift(s, CLERK, pid, decided_on=date.today(), members_present=present, members_for=agree,
                       decision="整改到位")
    with db.read_txn() as s:
        assert lists.get_posting(s, pid).status == "effective"
        assert [p.id for p in lists.shown_now(s, ev.vid, month) if p.list == "black"] == [pid]
    with db.write_txn() as s:
        lists.lift(s, CLERK, pid, decided_on=date.today(), members_present=3, members_for=2,
                   decision="回访三次，院落保持整洁，同意移出")
    with db.read_txn() as s:  # off the public list at once; the record stays
        assert lists.get_posting(s, pid).status == "lifted"
        assert pid not in [p.id for p in lists.shown_now(s, ev.vid, month)]
        assert lists.rectification_of(s, pid).status == "lifted"  # type: ignore[union-attr]
        ev_ = s.execute(select(AuditEvent).where(AuditEvent.action == "lists.posting.lift")).scalar_one()
        assert ev_.summary["after"]["present"] == 3 and ev_.summary["after"]["committee"] == 5
    with db.write_txn() as s, pytest.raises(Conflict, match="已移出"):
        lists.lift(s, CLERK, pid, decided_on=date.today(), members_present=5, members_for=5, decision="再移一次")


def test_expire_due_stores_what_the_views_already_show(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, households=3, members=1)
    old = _post(db, ev.vid, ev.households[0], "black", 202401, 202403)
    current = _post(db, ev.vid, ev.households[1], "red", 202401, 209912)
    with db.write_txn() as s:
        assert lists.expire_due(s, CLERK, month=202404) == 1
        assert lists.expire_due(s, CLERK, month=202404) == 0  # idempotent
    with db.read_txn() as s:
        assert lists.get_posting(s, old).status == "expired" and lists.get_posting(s, current).status == "effective"
    with db.write_txn() as s, pytest.raises(Conflict, match="已期满"):
        lists.start_rectification(s, CLERK, old, measures="x", helper="y", month=202404)


def test_coverage_arithmetic(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, households=10, members=0)
        gone = ev.households[9]  # moved out before the year: not on the year's roll
        s.execute(update(Household).where(Household.id == gone).values(status="moved_out",
                                                                        status_date=date(2025, 6, 1)))
    hs = ev.households
    _post(db, ev.vid, hs[0], "red", 202601, 202601, reason="文明家庭")
    with db.read_txn() as s:  # the year as it stood in February: one household in one month
        slow = lists.coverage(s, ev.vid, 2026, target_pct=60, as_of_month=202602)
    assert slow.covered == 1 and slow.months_done == 1 and slow.projected == 9
    _post(db, ev.vid, hs[0], "red", 202602, 202602, reason="文明家庭")  # the same household twice counts once
    _post(db, ev.vid, hs[1], "black", 202602, 202604)
    _post(db, ev.vid, hs[2], "red", 202603, 202603, reason="好婆媳")
    _post(db, ev.vid, hs[3], "black", 202603, 202603, status="voided")  # an upheld objection: not coverage
    _post(db, ev.vid, hs[4], "red", 202512, 202601, reason="文明家庭")  # last year's
    with db.read_txn() as s:
        c = lists.coverage(s, ev.vid, 2026, target_pct=60, as_of_month=202604)
        many = lists.coverage_many(s, {ev.vid: 60}, 2026, as_of_month=202604)[ev.vid]
    assert (c.households, c.covered, c.red, c.black) == (9, 3, 2, 1)  # the household gone before 2026 is not counted
    assert round(c.share_pct, 1) == 33.3 and c.target_households == 6 and c.needed == 3
    assert c.months_done == 3 and c.projected == 9 and c.on_track  # 3 households in 3 months: 12 in a year, capped
    assert c.by_month == [(202601, 1, 0), (202602, 1, 1), (202603, 1, 0)]  # the voided one is not counted
    assert c.never == sorted(set(hs[:9]) - {hs[0], hs[1], hs[2]})
    assert (many.households, many.covered, many.by_month, many.never) == (9, 3, c.by_month, [])
    assert lists.ratio_stability(c) == pytest.approx(28.868, abs=0.01)  # red shares 100, 50, 100
    with db.read_txn() as s:
        late_in_year = lists.coverage(s, ev.vid, 2026, target_pct=60, as_of_month=202611)
    # three households by the end of October: four in the year at that pace, short of six
    assert late_in_year.months_done == 10 and late_in_year.projected == 4 and not late_in_year.on_track
    assert lists._elapsed(2025, 202604) == 12 and lists._elapsed(2027, 202604) == 0
    empty = lists.Coverage(ev.vid, 2027, 60, 0, 0, 0, 0, 0)
    assert empty.share_pct == 0 and empty.projected == 0 and empty.needed == 0
    with db.read_txn() as s:  # in January no month of the year is over: no pace to judge yet
        january = lists.coverage(s, ev.vid, 2027, target_pct=60, as_of_month=202701)
    assert january.months_done == 0 and january.covered == 0 and january.on_track


def test_pages_and_scoping(client: TestClient, db: Database) -> None:
    ev, home = staffed_village(db)
    month = lists.this_month()
    pid = _post(db, ev.vid, home, "black", month, month)
    with db.write_txn() as s:
        other = eval_village(s, households=2, members=0)
    theirs = _post(db, other.vid, other.households[0], "black", month, month)
    # the household sees its own history and what it must do, nobody else's
    login(client, "home5", PW)
    assert client.get("/lists", follow_redirects=False).headers["location"] == f"/households/{home}/lists"
    page = client.get(f"/households/{home}/lists")
    assert page.status_code == 200 and "怎样从黑榜上移出" in page.text and "请与村评比委员会联系" in page.text
    assert client.get(f"/postings/{pid}").status_code == 200
    assert client.get(f"/postings/{theirs}").status_code == 404
    assert client.get(f"/villages/{ev.vid}/lists").status_code == 404
    token = csrf_from(client.get(f"/postings/{pid}").text)
    assert client.post(f"/postings/{pid}/rectification", data={"csrf_token": token, "measures": "x",
                                                               "helper": "y"}).status_code == 404
    # the clerk: the village's lists and coverage, the plan, a visit; the lift refused without a quorum
    token = login(client, "clerk1", PW)
    page = client.get(f"/villages/{ev.vid}/lists")
    assert page.status_code == 200 and 'data-testid="share"' in page.text
    assert client.get(f"/postings/{theirs}").status_code == 404
    r = client.post(f"/postings/{pid}/rectification", data={"csrf_token": token, "measures": "每周清理院落",
                                                            "helper": "老党员 李德明"})
    assert r.status_code == 200 and "已记录整改方案" in r.text
    r = client.post(f"/postings/{pid}/visits", data={"csrf_token": token, "visited_on": date.today().isoformat(),
                                                     "notes": "院落干净"})
    assert r.status_code == 200 and "院落干净" in r.text
    r = client.post(f"/postings/{pid}/lift", data={"csrf_token": token, "decided_on": date.today().isoformat(),
                                                   "members_present": "2", "members_for": "2", "decision": "同意"})
    assert r.status_code == 422 and "到会委员须超过半数" in r.text and 'value="同意"' in r.text
    r = client.post(f"/postings/{pid}/lift", data={"csrf_token": token, "decided_on": "昨天",
                                                   "members_present": "3", "members_for": "3", "decision": "同意"})
    assert r.status_code == 422 and "决定日期格式不对" in r.text
    r = client.post(f"/postings/{pid}/lift", data={"csrf_token": token, "decided_on": date.today().isoformat(),
                                                   "members_present": "3", "members_for": "3", "decision": "整改到位"})
    assert r.status_code == 200 and "已从公示的黑榜上撤下" in r.text
    # the township's reviewer sees the overview, and cannot act
    token = login(client, "reviewer1", PW)
    overview = client.get("/lists")
    assert overview.status_code == 200 and ev.village.name in overview.text
    assert client.post(f"/postings/{pid}/visits", data={"csrf_token": token, "visited_on": "2026-01-01",
                                                        "notes": "x"}).status_code == 404


def test_retention_erases_personal_details_and_keeps_the_counts(db: Database) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, households=6, members=5)
    hs = ev.households
    old_black = _post(db, ev.vid, hs[0], "black", 201902, 201904, reason="不诚信户")
    _post(db, ev.vid, hs[1], "red", 201903, 201903, reason="文明家庭")
    _post(db, ev.vid, hs[0], "red", 201905, 201905, reason="文明家庭")
    recent = _post(db, ev.vid, hs[2], "black", 202601, 202603)
    with db.write_txn() as s:
        s.execute(update(ListPosting).where(ListPosting.id == old_black).values(member_name="张小三"))
        lists.start_rectification(s, CLERK, old_black, measures="按月归还欠款", helper="老党员 李德明", month=201903)
        lists.record_visit(s, CLERK, old_black, visited_on=date.today(), notes="已还清欠款，邻居认可", month=201903)
        lists.lift(s, CLERK, old_black, decided_on=date.today(), members_present=5, members_for=4,
                   decision="欠款还清，同意移出", month=201903)
        lists.start_rectification(s, CLERK, recent, measures="清理院落", helper="村委委员 王芳", month=202602)
    with db.read_txn() as s:  # the audit log proves the texts without holding them
        start = s.execute(select(AuditEvent).where(AuditEvent.action == "lists.rectification.start")).scalars().first()
        assert "按月归还欠款" not in str(start.summary) and start.summary["after"]["measures"]["chars"] == 6  # type: ignore[union-attr]
        before = lists.coverage(s, ev.vid, 2019, target_pct=60, as_of_month=202611)
    assert (before.covered, before.red, before.black) == (2, 2, 1)

    with db.write_txn() as s:  # five years after November 2026: periods ended before November 2021
        trial = lists.erase_due(s, CLERK, years=5, month=202611, dry_run=True)
    assert (trial.postings, trial.rectifications, trial.visits, trial.years) == (3, 1, 1, [(ev.vid, 2019)])
    with db.read_txn() as s:
        assert lists.get_posting(s, old_black).household_id == hs[0]  # a dry run changes nothing
    with db.write_txn() as s:
        run = lists.erase_due(s, CLERK, years=5, month=202611)
    assert (run.postings, run.rectifications, run.visits) == (3, 1, 1)
    with db.read_txn() as s:
        p = lists.get_posting(s, old_black)
        assert (p.household_id, p.member_name, p.explanation, p.status, p.reason) == (
            None, None, lists.ERASED, "lifted", "不诚信户")
        plan = lists.rectification_of(s, old_black)
        assert plan is not None and (plan.household_id, plan.measures, plan.decision) == (None, lists.ERASED,
                                                                                          lists.ERASED)
        assert [v.notes for v in lists.visits(s, plan.id)] == [lists.ERASED]  # type: ignore[arg-type]
        assert lists.get_posting(s, recent).household_id == hs[2]  # within the period: kept whole
        assert lists.rectification_of(s, recent).measures == "清理院落"  # type: ignore[union-attr]
        assert [x.id for x in lists.household_history(s, hs[0])] == []  # no longer traceable to the household
        after = lists.coverage(s, ev.vid, 2019, target_pct=60, as_of_month=202611)
        erase_events = s.execute(select(AuditEvent).where(AuditEvent.action == "lists.retention.erase")).scalars().all()
    assert (after.covered, after.red, after.black, after.by_month) == (2, 2, 1, before.by_month)  # counts stay
    assert len(erase_events) == 1 and erase_events[0].summary["after"]["postings"] == 3
    with db.write_txn() as s:  # a second run finds nothing; a frozen year is not recounted from erased rows
        assert lists.erase_due(s, CLERK, years=5, month=202611).postings == 0
        rounds.refresh_list_counts(s, ev.vid, 2019)
    with db.read_txn() as s:
        assert lists.coverage(s, ev.vid, 2019, target_pct=60, as_of_month=202611).covered == 2
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="保存年限"):
        lists.erase_due(s, CLERK, years=0)


@pytest.mark.parametrize("statement", [
    "UPDATE rectification_visits SET notes = '改写的回访记录'",
    "UPDATE rectification_visits SET notes = '（已按保存期限删除）', visited_on = '2020-01-01'",
    "DELETE FROM rectification_visits",
])
def test_check_visits_can_only_be_erased(db: Database, statement: str) -> None:
    with db.write_txn() as s:
        ev = eval_village(s, households=3, members=3)
    pid = _post(db, ev.vid, ev.households[0], "black", lists.this_month(), lists.this_month())
    with db.write_txn() as s:
        lists.start_rectification(s, CLERK, pid, measures="清理院落", helper="王芳")
        lists.record_visit(s, CLERK, pid, visited_on=date.today(), notes="已清理")
    with pytest.raises(Exception, match="append-only"), db.write_txn() as s:
        s.execute(text(statement))
    with db.write_txn() as s:  # the erasure itself passes the guard
        s.execute(text(f"UPDATE rectification_visits SET notes = '{lists.ERASED}'"))
    with db.read_txn() as s:
        assert [v.notes for v in s.execute(select(RectificationVisit)).scalars()] == [lists.ERASED]


def test_an_erased_posting_page_says_so(client: TestClient, db: Database) -> None:
    ev, _home = staffed_village(db)
    pid = _post(db, ev.vid, ev.households[0], "black", 201902, 201903, reason="不诚信户")
    with db.write_txn() as s:
        lists.erase_due(s, CLERK, years=5)
    login(client, "clerk1", PW)
    page = client.get(f"/postings/{pid}")
    assert page.status_code == 200 and "个人信息已按保存期限删除" in page.text and "不诚信户" in page.text
    village = client.get(f"/villages/{ev.vid}/lists?year=2019")
    assert village.status_code == 200 and "（已按保存期限删除）" in village.text
