"""Red and black lists over time: status by month, the way off the black list (plan, visits, the committee's
decision), expiry, coverage arithmetic against the 60 % target, and who may see and do what."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update

from app.audit.models import AuditEvent
from app.db import Database
from app.errors import Conflict, ValidationFailed
from app.evaluation.models import ListPosting
from app.households.models import Household
from app.lists import service as lists
from tests.conftest import csrf_from, login
from tests.eval_helpers import CLERK, eval_village, staffed_village

PW = "Passw0rd-test"


def _post(db: Database, vid: int, hid: int, list_: str, from_month: int, to_month: int, *,
          status: str = "effective", reason: str = "卫生不整洁户") -> int:
    with db.write_txn() as s:
        return int(s.execute(insert(ListPosting).values(
            village_id=vid, household_id=hid, list=list_, source="determination", code="D-" + reason[:4],
            reason=reason, explanation="委员会认定", from_month=from_month, to_month=to_month, status=status)
            .returning(ListPosting.id)).scalar_one())


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
    _post(db, ev.vid, hs[0], "red", 202602, 202602, reason="文明家庭")  # the same household twice counts once
    _post(db, ev.vid, hs[1], "black", 202602, 202604)
    _post(db, ev.vid, hs[2], "red", 202603, 202603, reason="好婆媳")
    _post(db, ev.vid, hs[3], "black", 202603, 202603, status="voided")  # an upheld objection: not coverage
    _post(db, ev.vid, hs[4], "red", 202512, 202601, reason="文明家庭")  # last year's
    _post(db, ev.vid, gone, "red", 202602, 202602, reason="文明家庭")  # not on the roll
    with db.read_txn() as s:
        c = lists.coverage(s, ev.vid, 2026, target_pct=60, as_of_month=202604)
    assert (c.households, c.covered, c.red, c.black) == (9, 3, 2, 1)
    assert round(c.share_pct, 1) == 33.3 and c.target_households == 6 and c.needed == 3
    assert c.months_done == 3 and c.projected == 9 and c.on_track  # 3 households in 3 months: 12 in a year, capped
    assert c.by_month == [(202601, 1, 0), (202602, 2, 1), (202603, 1, 0)]  # the voided one is not counted
    assert c.never == sorted(set(hs[:9]) - {hs[0], hs[1], hs[2]})
    assert lists.ratio_stability(c) == pytest.approx(19.245, abs=0.01)  # red shares 100, 66.7, 100
    with db.read_txn() as s:
        slow = lists.coverage(s, ev.vid, 2026, target_pct=60, until_month=202601, as_of_month=202602)
        late_in_year = lists.coverage(s, ev.vid, 2026, target_pct=60, as_of_month=202611)
    assert slow.covered == 1 and slow.months_done == 1 and slow.projected == 9
    # three households by the end of October: four in the year at that pace, short of six
    assert late_in_year.months_done == 10 and late_in_year.projected == 4 and not late_in_year.on_track
    assert lists._elapsed(2025, 202604) == 12 and lists._elapsed(2027, 202604) == 0
    empty = lists.Coverage(ev.vid, 2027, 60, 0, 0, 0, 0, 0)
    assert empty.share_pct == 0 and empty.projected == 0 and empty.needed == 0


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
