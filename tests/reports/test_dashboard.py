"""The township's dashboard: which villages need attention and why, by the stated criteria, on planted data; and
who may see it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.db import Database
from app.evaluation.models import EvalRound
from app.evaluation.service import rounds
from app.ledger import service as ledger
from app.lists.models import ListPosting
from app.org.models import Township, Village
from app.reports.service import dashboard as reports
from app.store.service import counter
from tests.support.eval_helpers import CLERK, eval_village, staffed_village
from tests.support.factories import make_stocked_item, make_store, make_village
from tests.support.web import login

NOW = datetime(2026, 4, 25, 9, 0, tzinfo=UTC)  # rounds of January to March are due; March's deadline is 20 April


def _round(db: Database, vid: int, month: int, finalised: datetime | None, roster: int = 6) -> None:
    with db.write_txn() as s:
        s.execute(insert(EvalRound).values(village_id=vid, month=month, status="finalised" if finalised else "draft",
                                           mode="consensus", ruleset_code="COUNTY-DEFAULT", ruleset_version=1,
                                           present_member_ids=[], roster=[{}] * roster, roster_size=roster,
                                           households_rated=0 if finalised else None, created_by="测试",
                                           finalised_at=finalised))


def _posting(db: Database, vid: int, hid: int, month: int, list_: str = "red") -> None:
    with db.write_txn() as s:
        s.execute(insert(ListPosting).values(village_id=vid, household_id=hid, list=list_, source="d", code="c",
                                             reason="文明家庭", explanation="e", from_month=month, to_month=month))
        rounds.refresh_list_counts(s, vid, month // 100)


def test_lagging_villages_and_their_reasons(db: Database) -> None:
    with db.write_txn() as s:
        good = eval_village(s, households=6, members=0)
        poor = eval_village(s, households=10, members=0)
        store = make_store(s, good.village)
        soap = make_stocked_item(s, store, points=1, stock=50)
        for hid in good.households:  # in January 2026, whatever today is
            ledger.post(s, CLERK, ledger.award_posting(hid, good.vid, 10, "期初积分"),
                        occurred_at=datetime(2026, 1, 10, tzinfo=UTC))
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
    # a village whose first round was March's owes no round of January or February
    with db.write_txn() as s:
        newcomer = eval_village(s, households=2, members=0)
    _round(db, newcomer.vid, 202603, datetime(2026, 4, 8, tzinfo=UTC))
    with db.read_txn() as s:
        row = reports.dashboard(s, [s.get(Village, newcomer.vid)], 2026, now=NOW)[0]  # type: ignore[list-item]
    assert (row.months_due, row.late, row.finalised) == (1, [], 1)
    # a period of the year: February to March only
    with db.read_txn() as s:
        spring = reports.board(s, villages, 202602, 202603, now=NOW)  # type: ignore[arg-type]
    poor_row = next(r for r in spring.rows if r.village.id == poor.vid)
    good_row = next(r for r in spring.rows if r.village.id == good.vid)
    assert poor_row.late == [202602, 202603] and poor_row.months_due == 2
    assert good_row.finalised == 2 and good_row.issued == 0  # the awards were January's, outside the period
    assert [t.month for t in spring.trends] == [202602, 202603]
    assert [(t.finalised, t.late) for t in spring.trends] == [(1, 1), (1, 1)]
    assert [(t.red, t.black) for t in spring.trends] == [(2, 0), (2, 0)]  # the good village's planted postings
    with pytest.raises(ValueError), db.read_txn() as s:
        reports.board(s, villages, 202611, 202702)  # type: ignore[arg-type]
    # the rankings
    assert [r.village.id for r in reports.ranked(rows, "coverage")] == [good.vid, poor.vid]
    assert [r.village.id for r in reports.ranked(rows, "late")] == [poor.vid, good.vid]
    assert [r.village.id for r in reports.ranked(rows, "attention")] == [poor.vid, good.vid]
    assert [r.village.id for r in reports.ranked(rows, "issued")] == [good.vid, poor.vid]


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


def test_dashboard_page_ranks_pages_and_filters(client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.reports.pages import dashboard as pages

    ev, _home = staffed_village(db)
    with db.write_txn() as s:  # two more villages of the same township, neither with any round: both lag
        more = [make_village(s, s.get(Township, ev.village.township_id)) for _ in range(2)]
    monkeypatch.setattr(pages, "PAGE_ROWS", 2)
    login(client, "reviewer1", "Passw0rd-test")
    page = client.get("/dashboard?sort=coverage&from=3&to=5")
    assert page.status_code == 200 and 'data-testid="pager"' in page.text and "第 1 / 2 页" in page.text
    assert '<option value="3" selected>' in page.text and "3–5月" in page.text
    second = client.get("/dashboard?sort=coverage&from=3&to=5&page=2")
    ranks = [r[0] for r in _rows(page.text)] + [r[0] for r in _rows(second.text)]
    assert ranks == ["1", "2", "3"]
    names = [r[1] for r in _rows(page.text)] + [r[1] for r in _rows(second.text)]
    assert sorted(names) == sorted([ev.village.name] + [m.name for m in more])
    only = client.get("/dashboard?only=lagging").text
    assert all(r[1] != "" for r in _rows(only)) and len(_rows(only)) <= 2
    assert client.get("/dashboard?sort=nonsense&page=99").status_code == 200  # an unknown ranking: the default
    assert client.get("/dashboard?from=13").status_code == 422


def _rows(page: str) -> list[list[str]]:
    import re

    table = page.split('data-testid="villages"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)]
