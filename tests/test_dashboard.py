"""The township's dashboard: which villages need attention and why, by the stated criteria, on planted data; and
who may see it."""

from __future__ import annotations

from datetime import UTC, date, datetime

from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.db import Database
from app.evaluation.models import EvalRound, ListPosting
from app.ledger import service as ledger
from app.org.models import Village
from app.reports import service as reports
from app.store import counter
from tests.conftest import login
from tests.eval_helpers import CLERK, eval_village, staffed_village
from tests.factories import make_stocked_item, make_store

NOW = datetime(2026, 4, 25, 9, 0, tzinfo=UTC)  # rounds of January to March are due; March's deadline is 20 April


def _round(db: Database, vid: int, month: int, finalised: datetime | None, roster: int = 6) -> None:
    with db.write_txn() as s:
        s.execute(insert(EvalRound).values(village_id=vid, month=month, status="finalised" if finalised else "draft",
                                           mode="consensus", ruleset_code="COUNTY-DEFAULT", ruleset_version=1,
                                           present_member_ids=[], roster=[{}] * roster, created_by="测试",
                                           finalised_at=finalised))


def _posting(db: Database, vid: int, hid: int, month: int, list_: str = "red") -> None:
    with db.write_txn() as s:
        s.execute(insert(ListPosting).values(village_id=vid, household_id=hid, list=list_, source="d", code="c",
                                             reason="文明家庭", explanation="e", from_month=month, to_month=month))


def test_lagging_villages_and_their_reasons(db: Database) -> None:
    with db.write_txn() as s:
        good = eval_village(s, households=6, members=0)
        poor = eval_village(s, households=10, members=0)
        store = make_store(s, good.village)
        soap = make_stocked_item(s, store, points=1, stock=50)
        for hid in good.households:
            ledger.award(s, CLERK, household_id=hid, points=10, memo="期初积分")
    # the good village: every round finalised by the 20th of the next month, everyone recognised, a recent redemption
    for month, day in ((202601, datetime(2026, 2, 10, tzinfo=UTC)), (202602, datetime(2026, 3, 12, tzinfo=UTC)),
                       (202603, datetime(2026, 4, 15, tzinfo=UTC))):
        _round(db, good.vid, month, day)
    for i, hid in enumerate(good.households):
        _posting(db, good.vid, hid, 202601 + i % 3, "red" if i % 3 else "black")
    with db.write_txn() as s:
        counter.redeem(s, CLERK, store_id=store.id, household_id=good.households[0], identity_note="户主本人",  # type: ignore[arg-type]
                       lines=[counter.Line(soap.id, 2)], at=datetime(2026, 4, 1, 10, tzinfo=UTC))  # type: ignore[arg-type]
    # the poor one: January finalised late (after 20 February), February never, March still a draft past 20 April
    _round(db, poor.vid, 202601, datetime(2026, 3, 2, tzinfo=UTC))
    _round(db, poor.vid, 202603, None)
    _posting(db, poor.vid, poor.households[0], 202601)
    with db.read_txn() as s:
        villages = [s.get(Village, good.vid), s.get(Village, poor.vid)]
        rows = reports.dashboard(s, villages, 2026, now=NOW)  # type: ignore[arg-type]
    first, second = rows
    assert first.village.id == poor.vid and second.village.id == good.vid  # lagging first
    assert second.reasons == [] and second.late == [] and second.finalised == 3 and second.months_due == 3
    assert second.coverage.covered == 6 and second.redemptions == 1 and second.redeemed == 2 and second.issued == 60
    assert first.late == [202601, 202602, 202603] and first.open_state == "draft"
    assert len(first.reasons) == 3, first.reasons
    assert "3 个月的评比没有按时完成（1月、2月、3月）" in first.reasons[0]
    # one household of ten by March: four in the year at that pace, short of six (60 %)
    assert "红黑榜覆盖率 10%，按目前进度全年约 4 户" in first.reasons[1] and "还需 5 户" in first.reasons[1]
    assert "超市一直没有兑换" in first.reasons[2]
    # before the deadline of a month, its missing round is not late yet
    with db.read_txn() as s:
        early = reports.dashboard(s, [s.get(Village, poor.vid)], 2026,  # type: ignore[list-item]
                                  now=datetime(2026, 4, 10, tzinfo=UTC))[0]
    assert early.late == [202601, 202602]
    assert reports._deadline(202612) == date(2027, 1, 20)


def test_dashboard_page_scope(client: TestClient, db: Database) -> None:
    ev, _home = staffed_village(db)
    with db.write_txn() as s:
        elsewhere = eval_village(s, households=2, members=0)  # another township
    login(client, "reviewer1", "Passw0rd-test")
    page = client.get("/dashboard")
    assert page.status_code == 200 and ev.village.name in page.text and elsewhere.village.name not in page.text
    assert 'data-testid="lagging"' in page.text
    login(client, "home5", "Passw0rd-test")
    assert client.get("/dashboard").status_code == 404
