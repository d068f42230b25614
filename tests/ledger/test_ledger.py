"""The points ledger through its service, its JSON API, its pages and its commands (issue: the points ledger)."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select, text

from app import cli
from app.audit.models import AuditEvent
from app.core.context import Actor
from app.db import Database
from app.errors import Conflict, NotFound, ValidationFailed
from app.households.models import Household
from app.ledger import service as ledger
from app.org.models import Store, Village
from tests.support.factories import make_household, make_store, make_village
from tests.support.web import login

ADMIN = Actor(user_id=None, name="县管理员", role="county_admin")


def _setup(db: Database, households: int = 2) -> tuple[int, int, list[int]]:
    with db.write_txn() as s:
        v = make_village(s)
        st = make_store(s, v)
        hs = [make_household(s, v).id for _ in range(households)]
        return v.id, st.id, hs  # type: ignore[return-value]


def _award(db: Database, hid: int, points: int, memo: str = "2026年10月 环保卫生 评为优秀", **kw: Any) -> ledger.Posted:
    with db.write_txn() as s:
        return ledger.award(s, ADMIN, household_id=hid, points=points, memo=memo, **kw)


def _balance(db: Database, hid: int) -> int:
    with db.read_txn() as s:
        return ledger.balance(s, hid)


def _tx_count(db: Database) -> int:
    with db.read_txn() as s:
        return ledger.transaction_count(s)


def _clean(db: Database) -> None:
    with db.read_txn() as s:
        assert ledger.verify(s) == []


# ---- posting -------------------------------------------------------------------------------------------------------

def test_award_posts_two_legs_that_sum_to_zero_with_a_running_balance(db: Database) -> None:
    vid, _sid, (hid, _) = _setup(db)
    first = _award(db, hid, 10, "2026年10月 环保卫生 评为优秀 +10")
    second = _award(db, hid, 5)
    assert first.tx is not None and second.tx is not None
    legs = {e.account: (e.amount, e.balance_after) for e in second.tx.entries}
    assert legs == {f"household:{hid}": (5, 15), f"village:{vid}:issue": (-5, None)}
    assert _balance(db, hid) == 15
    with db.read_txn() as s:
        assert ledger.account_balance(s, ledger.issue_account(vid)) == -15  # a source account's balance is a sum
        st = ledger.statement(s, hid)
    assert [(ln.amount, ln.balance_after, ln.memo) for ln in st.lines] == [
        (5, 15, "2026年10月 环保卫生 评为优秀"), (10, 10, "2026年10月 环保卫生 评为优秀 +10")]
    _clean(db)


@pytest.mark.parametrize("legs, message", [
    ((("household:{h}", 10), ("village:{v}:issue", -9)), "合计须为零"),
    ((("household:{h}", 10),), "至少有两条分录"),
    ((("household:{h}", 0), ("village:{v}:issue", 0)), "非零整数"),
    ((("household:{h}", 5), ("household:{h}", -5)), "出现了两次"),
    ((("household:{h}", 5), ("village:{v}:bogus", -5)), "账户代码"),
])
def test_malformed_postings_are_refused_and_post_nothing(db: Database, legs: tuple, message: str) -> None:
    vid, _sid, (hid, _) = _setup(db)
    posting = ledger.Posting(ledger.TxKind.AWARD, "测试", tuple(ledger.Leg(a.format(h=hid, v=vid), n) for a, n in legs))
    with pytest.raises(ValidationFailed, match=message), db.write_txn() as s:
        ledger.post(s, ADMIN, posting)
    assert _tx_count(db) == 0


def test_a_posting_needs_a_reason_and_an_existing_household(db: Database) -> None:
    _vid, _sid, (hid, _) = _setup(db)
    with pytest.raises(ValidationFailed, match="原因"), db.write_txn() as s:
        ledger.award(s, ADMIN, household_id=hid, points=5, memo="  ")
    with pytest.raises(NotFound), db.write_txn() as s:
        ledger.award(s, ADMIN, household_id=987654, points=5, memo="x")
    assert _tx_count(db) == 0


def test_idempotency_same_request_replays_and_a_different_request_is_refused(db: Database) -> None:
    _vid, sid, (hid, _) = _setup(db)
    _award(db, hid, 100)
    with db.write_txn() as s:
        first = ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=30, memo="兑换 食用油", idempotency_key="k-1")
    with db.write_txn() as s:
        again = ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=30, memo="兑换 食用油", idempotency_key="k-1")
    assert again.replayed and again.tx is not None and first.tx is not None and again.tx.id == first.tx.id
    assert _balance(db, hid) == 70
    with pytest.raises(Conflict) as exc, db.write_txn() as s:
        ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=31, memo="兑换 食用油", idempotency_key="k-1")
    assert exc.value.code == "idempotency_conflict"
    assert _balance(db, hid) == 70 and _tx_count(db) == 2


def test_bulk_posting_is_all_or_nothing_and_replays_by_key(db: Database) -> None:
    vid, sid, (h1, h2) = _setup(db)
    postings = [ledger.award_posting(h, vid, 10, "2026年10月 月度评比", idempotency_key=f"round-1:{h}") for h in (h1, h2)]
    with db.write_txn() as s:
        res = ledger.post_many(s, ADMIN, postings)
    assert (res.posted, res.replayed, res.points) == (2, 0, 20)
    with db.write_txn() as s:  # the whole close sent again: nothing new
        again = ledger.post_many(s, ADMIN, postings)
    assert (again.posted, again.replayed) == (0, 2) and again.transaction_ids == res.transaction_ids
    # one bad posting (an overdrawing spend) refuses the whole batch
    bad = [ledger.award_posting(h1, vid, 5, "x"),
           ledger.Posting(ledger.TxKind.REDEMPTION, "兑换", (ledger.Leg(ledger.household_account(h2), -11),
                                                  ledger.Leg(ledger.redeemed_account(sid), 11)))]
    with pytest.raises(ledger.InsufficientPoints), db.write_txn() as s:
        ledger.post_many(s, ADMIN, bad)
    assert (_balance(db, h1), _balance(db, h2), _tx_count(db)) == (10, 10, 2)
    with db.read_txn() as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.action == "ledger.post_many")).scalars().all()
    assert len(events) == 2 and events[0].summary["after"]["posted"] == 2
    _clean(db)


# ---- spending ------------------------------------------------------------------------------------------------------

def test_a_spend_never_overdraws_and_says_how_much_is_missing(db: Database) -> None:
    _vid, sid, (hid, _) = _setup(db)
    _award(db, hid, 25)
    with pytest.raises(ledger.InsufficientPoints, match="现有 25 分，本次需要 30 分") as exc, db.write_txn() as s:
        ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=30, memo="兑换 大米")
    assert exc.value.status == 409 and exc.value.details["balance"] == 25
    with db.write_txn() as s:
        ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=25, memo="兑换 大米")
    assert _balance(db, hid) == 0
    _clean(db)


def test_a_store_serves_only_its_own_village(db: Database) -> None:
    _vid, _sid, (hid, _) = _setup(db)
    _award(db, hid, 50)
    _other_village, other_store, _ = _setup(db, households=0)
    with pytest.raises(ValidationFailed, match="不在本超市服务的村"), db.write_txn() as s:
        ledger.spend(s, ADMIN, household_id=hid, store_id=other_store, points=5, memo="兑换")
    assert _balance(db, hid) == 50


# ---- penalties -----------------------------------------------------------------------------------------------------

def test_penalty_floor_at_zero_caps_the_deduction_and_says_so(db: Database) -> None:
    _vid, _sid, (hid, h2) = _setup(db)
    _award(db, hid, 6)
    with db.write_txn() as s:
        r = ledger.penalize(s, ADMIN, household_id=hid, points=10, memo="2026年10月 卫生不整洁户 -10")
    assert (r.requested, r.applied) == (10, 6) and r.tx is not None
    assert "应扣 10 分，余额仅 6 分" in r.tx.memo and "实扣 6 分" in r.tx.memo
    assert _balance(db, hid) == 0
    with db.write_txn() as s:  # nothing to take: the household still sees the penalty, with 0 taken
        empty = ledger.penalize(s, ADMIN, household_id=h2, points=10, memo="不诚信户 -10", idempotency_key="p-2")
    assert empty.tx is not None and (empty.requested, empty.applied) == (10, 0) and _tx_count(db) == 3
    assert empty.tx.household_amount(h2) == 0 and "实扣 0 分" in empty.tx.memo
    _award(db, h2, 8)
    with db.write_txn() as s:  # a retry of that penalty after the household earned points takes nothing either
        again = ledger.penalize(s, ADMIN, household_id=h2, points=10, memo="不诚信户 -10", idempotency_key="p-2")
    assert again.replayed and _balance(db, h2) == 8
    _clean(db)


def test_penalty_allow_debt_goes_negative_and_blocks_spending_until_positive(db: Database) -> None:
    _vid, sid, (hid, _) = _setup(db)
    _award(db, hid, 6)
    with db.write_txn() as s:
        r = ledger.penalize(s, ADMIN, household_id=hid, points=10, memo="不孝儿女 -10", policy="allow_debt")
    assert r.tx is not None and r.tx.memo == "不孝儿女 -10" and _balance(db, hid) == -4
    with pytest.raises(ledger.InsufficientPoints, match="须先得到积分"), db.write_txn() as s:
        ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=1, memo="兑换")
    _award(db, hid, 5)
    with db.write_txn() as s:
        ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=1, memo="兑换")
    assert _balance(db, hid) == 0
    with db.read_txn() as s:
        assert ledger.village_totals(s, [_vid])[_vid].in_debt == 0
    _clean(db)


# ---- reversals and adjustments -------------------------------------------------------------------------------------

def test_reversal_negates_once_with_a_reason(db: Database) -> None:
    _vid, sid, (hid, _) = _setup(db)
    _award(db, hid, 40)
    with db.write_txn() as s:
        spent = ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=15, memo="兑换 毛巾")
    assert spent.tx is not None
    with pytest.raises(Conflict, match="到这笔兑换的详情页“作废”") as refused, db.write_txn() as s:
        ledger.reverse(s, ADMIN, spent.tx.id, reason="收银员扫错了商品")  # goods must come back too: a store void
    assert refused.value.code == "redemption_needs_void" and _balance(db, hid) == 25
    with db.write_txn() as s:  # what the store's void does
        rev = ledger.reverse(s, ADMIN, spent.tx.id, reason="收银员扫错了商品", voiding_redemption=True)
    assert rev.tx is not None and rev.tx.reverses_id == spent.tx.id and rev.tx.kind == "reversal"
    assert rev.tx.memo == "冲正：兑换 毛巾（原因：收银员扫错了商品）" and _balance(db, hid) == 40
    with pytest.raises(Conflict, match="只能冲正一次") as exc, db.write_txn() as s:
        ledger.reverse(s, ADMIN, spent.tx.id, reason="再来一次", voiding_redemption=True)
    assert exc.value.code == "already_reversed"
    with pytest.raises(Conflict, match="冲正交易不能再冲正"), db.write_txn() as s:
        ledger.reverse(s, ADMIN, rev.tx.id, reason="撤销冲正")
    with pytest.raises(ValidationFailed, match="原因"), db.write_txn() as s:
        ledger.reverse(s, ADMIN, spent.tx.id, reason="", voiding_redemption=True)
    with db.read_txn() as s:
        assert ledger.reversed_among(s, [spent.tx.id, rev.tx.id]) == {spent.tx.id: rev.tx.id}
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "ledger.reverse")).scalar_one()
    _clean(db)


def test_a_reversal_that_would_overdraw_is_refused_unless_debt_is_allowed(db: Database) -> None:
    _vid, sid, (hid, _) = _setup(db)
    award = _award(db, hid, 20)
    assert award.tx is not None
    with db.write_txn() as s:
        ledger.spend(s, ADMIN, household_id=hid, store_id=sid, points=15, memo="兑换")
    with pytest.raises(ledger.InsufficientPoints, match="不能冲正"), db.write_txn() as s:
        ledger.reverse(s, ADMIN, award.tx.id, reason="评比结果更正")
    assert _balance(db, hid) == 5
    with db.write_txn() as s:
        ledger.reverse(s, ADMIN, award.tx.id, reason="评比结果更正", allow_debt=True)
    assert _balance(db, hid) == -15
    _clean(db)


def test_adjustment_needs_a_reason_never_overdraws_and_is_audited(db: Database) -> None:
    _vid, _sid, (hid, _) = _setup(db)
    with pytest.raises(ValidationFailed, match="原因"), db.write_txn() as s:
        ledger.adjust(s, ADMIN, household_id=hid, amount=5, reason="")
    with pytest.raises(ledger.InsufficientPoints), db.write_txn() as s:
        ledger.adjust(s, ADMIN, household_id=hid, amount=-5, reason="多记了")
    with db.write_txn() as s:
        r = ledger.adjust(s, ADMIN, household_id=hid, amount=12, reason="9月漏记热心公益")
    assert r.tx is not None and r.tx.memo == "积分调整 +12：9月漏记热心公益" and _balance(db, hid) == 12
    with db.read_txn() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "ledger.adjust")).scalar_one()
    assert ev.summary["before"] == {"balance": 0} and ev.summary["after"]["balance"] == 12
    _clean(db)


def test_ledger_rows_cannot_be_updated_or_deleted(db: Database) -> None:
    _vid, _sid, (hid, _) = _setup(db)
    _award(db, hid, 5)
    for sql in ("UPDATE ledger_entries SET amount = 500", "DELETE FROM ledger_entries",
                "UPDATE ledger_transactions SET memo = 'x'", "DELETE FROM ledger_transactions"):
        with pytest.raises(Exception, match="append-only"), db.write_txn() as s:
            s.execute(text(sql))
    assert _balance(db, hid) == 5
    _clean(db)


# ---- expiry --------------------------------------------------------------------------------------------------------

def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 4, tzinfo=UTC)  # noon in Asia/Shanghai


def _award_at(db: Database, hid: int, vid: int, points: int, when: datetime) -> None:
    with db.write_txn() as s:
        ledger.post(s, ADMIN, ledger.award_posting(hid, vid, points, f"{when:%Y年%m月} 评比"), occurred_at=when)


def test_expiry_year_end_next_uses_oldest_points_first_and_is_idempotent(db: Database) -> None:
    vid, sid, (hid, _) = _setup(db)
    with db.write_txn() as s:
        ledger.set_policy(s, ADMIN, expiry_rule="year_end_next", expiry_months=None)
    _award_at(db, hid, vid, 30, _at(2025, 3, 5))  # expires 2026-12-31
    _award_at(db, hid, vid, 50, _at(2026, 2, 5))  # expires 2027-12-31
    with db.write_txn() as s:  # spending takes the 2025 points first: 20 of the 30 are gone
        ledger.post(s, ADMIN, ledger.Posting(ledger.TxKind.REDEMPTION, "兑换", (ledger.Leg(ledger.household_account(hid), -20),
                                                               ledger.Leg(ledger.redeemed_account(sid), 20))),
               occurred_at=_at(2026, 6, 1))
    with db.read_txn() as s:
        assert ledger.expiring(s, hid, as_of=date(2026, 7, 1)) == [(date(2026, 12, 31), 10), (date(2027, 12, 31), 50)]
    with db.write_txn() as s:
        assert ledger.expire(s, ADMIN, as_of=date(2026, 12, 31)).households == 0  # the last day still counts
    with db.write_txn() as s:
        run = ledger.expire(s, ADMIN, as_of=date(2027, 1, 1))
    assert (run.households, run.points) == (1, 10) and _balance(db, hid) == 50
    with db.read_txn() as s:
        line = ledger.statement(s, hid, limit=1).lines[0]
    assert line.kind == "expiry" and line.amount == -10 and "2026年12月31日前到期未用的 10 分" in line.memo
    with db.write_txn() as s:  # the same run again posts nothing
        assert ledger.expire(s, ADMIN, as_of=date(2027, 1, 1)).households == 0
    with db.read_txn() as s:
        assert ledger.account_balance(s, ledger.expired_account(vid)) == 10
    _clean(db)


def _month_start(back: int) -> date:
    """The first day of the month `back` months before this one (local time)."""
    today = datetime.now(UTC).date()
    m = today.year * 12 + today.month - 1 - back
    return date(m // 12, m % 12 + 1, 1)


def _last_day(first: date, months_on: int) -> date:
    m = first.year * 12 + first.month - 1 + months_on + 1
    return date(m // 12, m % 12 + 1, 1) - timedelta(days=1)


def test_expiry_n_months_and_a_reversed_award_shrinks_its_own_lot(db: Database) -> None:
    vid, _sid, (hid, _) = _setup(db)
    with db.write_txn() as s:
        ledger.set_policy(s, ADMIN, expiry_rule="months", expiry_months=3)
    first, second_month = _month_start(2), _month_start(1)  # still valid today: lots last 3 months
    _award_at(db, hid, vid, 10, _at(first.year, first.month, 10))
    _award_at(db, hid, vid, 20, _at(second_month.year, second_month.month, 10))
    with db.read_txn() as s:
        second = ledger.statement(s, hid).lines[0].transaction_id
    with db.write_txn() as s:  # the reversal takes back the later award, not the oldest points
        ledger.reverse(s, ADMIN, second, reason="评分录错")
    with db.read_txn() as s:
        assert ledger.expiring(s, hid, as_of=second_month) == [(_last_day(first, 3), 10)]
    with db.write_txn() as s:
        run = ledger.expire(s, ADMIN, as_of=_last_day(second_month, 4))
    assert run.points == 10 and _balance(db, hid) == 0
    _clean(db)


def test_an_award_past_its_last_day_cannot_be_reversed(db: Database) -> None:
    """Its points may already have been taken by an expiry run: a reversal would take them twice."""
    vid, _sid, (hid, _) = _setup(db)
    with db.write_txn() as s:
        ledger.set_policy(s, ADMIN, expiry_rule="year_end_next", expiry_months=None)
    _award_at(db, hid, vid, 100, _at(2024, 5, 1))
    with db.read_txn() as s:
        old = ledger.statement(s, hid).lines[0].transaction_id
    with db.write_txn() as s:
        ledger.expire(s, ADMIN, as_of=date(2026, 1, 1))
    _award(db, hid, 100)
    with pytest.raises(Conflict, match="过了有效期") as exc, db.write_txn() as s:
        ledger.reverse(s, ADMIN, old, reason="评错了")
    assert exc.value.code == "expired_lot" and _balance(db, hid) == 100


def test_no_expiry_by_default(db: Database) -> None:
    vid, _sid, (hid, _) = _setup(db)
    _award_at(db, hid, vid, 10, _at(2020, 1, 10))
    with db.write_txn() as s:
        assert ledger.get_policy(s).expiry_rule is ledger.ExpiryRule.NONE
        assert ledger.expire(s, ADMIN, as_of=date(2030, 1, 1)).households == 0
        assert ledger.expiring(s, hid) == []
    with pytest.raises(ValidationFailed, match="1–120"), db.write_txn() as s:
        ledger.set_policy(s, ADMIN, expiry_rule="months", expiry_months=0)


# ---- summaries -----------------------------------------------------------------------------------------------------

def test_village_summary_by_month_with_opening_and_closing(db: Database) -> None:
    vid, sid, (h1, h2) = _setup(db)
    _award_at(db, h1, vid, 30, _at(2025, 12, 5))
    _award_at(db, h1, vid, 10, _at(2026, 3, 5))
    _award_at(db, h2, vid, 20, _at(2026, 3, 6))
    with db.write_txn() as s:
        ledger.post(s, ADMIN, ledger.Posting(ledger.TxKind.REDEMPTION, "兑换", (ledger.Leg(ledger.household_account(h1), -25),
                                                               ledger.Leg(ledger.redeemed_account(sid), 25))),
               occurred_at=_at(2026, 4, 2))
    with db.read_txn() as s:
        months = ledger.village_summary(s, vid, 2026)
        totals = ledger.village_totals(s, [vid])[vid]
    assert months[0].opening == 30 and months[2].issued == 30 and months[3].redeemed == 25
    assert months[2].closing == 60 and months[-1].closing == 35 == totals.outstanding
    assert totals.households == 2


# ---- the JSON API --------------------------------------------------------------------------------------------------

def _demo_household(db: Database, village_name: str = "红旗村") -> tuple[int, int]:
    with db.read_txn() as s:
        v = s.execute(select(Village).where(Village.name == village_name)).scalar_one()
        h = s.execute(select(Household).where(Household.village_id == v.id).order_by(Household.id)).scalars().first()
        store = s.execute(select(Store).where(Store.village_id == v.id)).scalar_one()
    assert h is not None
    return h.id, store.id  # type: ignore[return-value]


def _bearer(client: TestClient, login_name: str) -> dict[str, str]:
    return {"X-CSRF-Token": login(client, login_name)}


def test_api_statement_pages_and_exports(client: TestClient, db: Database, demo: dict) -> None:
    hid, _sid = _demo_household(db)
    login(client, "household")
    first = client.get(f"/api/v1/households/{hid}/points/statement", params={"limit": 3}).json()
    assert first["total"] >= 4 and len(first["items"]) == 3
    second = client.get(f"/api/v1/households/{hid}/points/statement", params={"limit": 3, "offset": 3}).json()
    seqs = [i["seq"] for i in first["items"] + second["items"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    top = first["items"][0]
    assert top["balance_after"] == first["balance"]
    x = client.get(f"/api/v1/households/{hid}/points/statement.xlsx")
    assert x.status_code == 200 and "attachment" in x.headers["content-disposition"]
    ws = load_workbook(io.BytesIO(x.content)).active
    assert ws is not None
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0][:6] == ("序号", "时间", "类型", "摘要（原因）", "积分变动", "变动后余额")
    assert len(rows) == first["total"] + 2 and rows[-1][5] == first["balance"]
    tx = client.get(f"/api/v1/ledger/transactions/{top['transaction_id']}").json()
    assert sum(e["amount"] for e in tx["entries"]) == 0
    other, _ = _demo_household(db, "桃园村")
    assert client.get(f"/api/v1/households/{other}/points").status_code == 404


def test_api_adjust_and_reverse_are_for_the_county_admin(client: TestClient, db: Database, demo: dict) -> None:
    hid, _sid = _demo_household(db)
    headers = _bearer(client, "clerk")
    assert client.post(f"/api/v1/households/{hid}/points/adjustments", json={"amount": 5, "reason": "漏记"},
                       headers=headers).status_code == 404
    headers = _bearer(client, "admin")
    before = client.get(f"/api/v1/households/{hid}/points").json()["balance"]
    r = client.post(f"/api/v1/households/{hid}/points/adjustments", json={"amount": 5, "reason": "9月漏记"},
                    headers={**headers, "Idempotency-Key": "adj-1"})
    assert r.status_code == 201 and r.json()["balance"] == before + 5
    tx_id = r.json()["transaction"]["id"]
    rev = client.post(f"/api/v1/ledger/transactions/{tx_id}/reversal", json={"reason": "调整有误"}, headers=headers)
    assert rev.status_code == 201 and rev.json()["balance"] == before
    twice = client.post(f"/api/v1/ledger/transactions/{tx_id}/reversal", json={"reason": "调整有误"}, headers=headers)
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_reversed"
    assert client.get(f"/api/v1/ledger/transactions/{tx_id}").json()["reversed_by"] == rev.json()["transaction"]["id"]
    bad = client.post(f"/api/v1/households/{hid}/points/adjustments", json={"amount": 0, "reason": "x"},
                      headers=headers)
    assert bad.status_code == 422


def test_api_village_summary_and_policy(client: TestClient, db: Database, demo: dict) -> None:
    headers = _bearer(client, "admin")
    with db.read_txn() as s:
        vid = s.execute(select(Village.id).where(Village.name == "红旗村")).scalar_one()
        outstanding = ledger.village_totals(s, [vid])[vid].outstanding
    r = client.get(f"/api/v1/villages/{vid}/points/summary").json()
    assert r["outstanding"] == outstanding > 0 and len(r["months"]) == 12
    assert r["months"][-1]["closing"] == outstanding
    p = client.put("/api/v1/ledger/policy", json={"expiry_rule": "months", "expiry_months": 24}, headers=headers)
    assert p.status_code == 200 and p.json()["expiry_months"] == 24
    assert client.put("/api/v1/ledger/policy", json={"expiry_rule": "soon"}, headers=headers).status_code == 422
    assert client.get("/api/v1/ledger/policy").json()["expiry_rule"] == "months"


# ---- pages ---------------------------------------------------------------------------------------------------------

def test_household_sees_its_points_page(client: TestClient, db: Database, demo: dict) -> None:
    hid, _ = _demo_household(db)
    login(client, "household")
    r = client.get("/points", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/households/{hid}/points"
    page = client.get(f"/households/{hid}/points")
    assert page.status_code == 200 and 'data-testid="balance"' in page.text and "积分明细" in page.text
    assert "积分调整" not in page.text and "冲正这笔" not in page.text


def test_admin_adjusts_and_reverses_through_the_pages(client: TestClient, db: Database, demo: dict) -> None:
    hid, _ = _demo_household(db)
    csrf = login(client, "admin")
    before = _balance(db, hid)
    page = client.get(f"/households/{hid}/points")
    assert "积分调整" in page.text
    form = {"csrf_token": csrf, "amount": "+8", "reason": "10月漏记孝老爱亲", "form_key": "form-abc"}
    r = client.post(f"/households/{hid}/points/adjust", data=form, follow_redirects=True)
    assert r.status_code == 200 and "已调整" in r.text and _balance(db, hid) == before + 8
    r = client.post(f"/households/{hid}/points/adjust", data=form, follow_redirects=True)  # a double click
    assert "没有重复记账" in r.text and _balance(db, hid) == before + 8
    bad = client.post(f"/households/{hid}/points/adjust", data={**form, "amount": "八", "form_key": "f2"})
    assert bad.status_code == 422 and "须为整数" in bad.text and 'value="八"' in bad.text
    with db.read_txn() as s:
        tx_id = ledger.statement(s, hid, limit=1).lines[0].transaction_id
    r = client.post(f"/ledger/transactions/{tx_id}/reverse", data={"csrf_token": csrf, "reason": "调整有误"},
                    follow_redirects=True)
    assert r.status_code == 200 and f"已冲正第 {tx_id} 号交易" in r.text and _balance(db, hid) == before
    r = client.post(f"/ledger/transactions/{tx_id}/reverse", data={"csrf_token": csrf, "reason": "调整有误"})
    assert r.status_code == 409 and "只能冲正一次" in r.text
    _clean(db)


def test_village_summary_and_policy_pages(client: TestClient, db: Database, demo: dict) -> None:
    csrf = login(client, "admin")
    with db.read_txn() as s:
        vid = s.execute(select(Village.id).where(Village.name == "红旗村")).scalar_one()
        outstanding = ledger.village_totals(s, [vid])[vid].outstanding
    page = client.get(f"/villages/{vid}/points")
    assert page.status_code == 200 and f'data-testid="outstanding">{outstanding}<' in page.text
    index = client.get("/points")
    assert "各村未兑换积分" in index.text and "积分长期有效" in index.text
    r = client.post("/points/policy", data={"csrf_token": csrf, "expiry_rule": "year_end_next", "expiry_months": ""},
                    follow_redirects=True)
    assert "当年积分次年底清零" in r.text
    r = client.post("/points/policy", data={"csrf_token": csrf, "expiry_rule": "months", "expiry_months": "500"})
    assert r.status_code == 422 and "1–120" in r.text
    login(client, "clerk")
    assert "保存政策" not in client.get("/points").text


# ---- commands ------------------------------------------------------------------------------------------------------

def test_cli_ledger_verify_and_expire(db: Database, cli_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    vid, _sid, (hid, _) = _setup(db)
    with db.write_txn() as s:
        ledger.set_policy(s, ADMIN, expiry_rule="year_end_next", expiry_months=None)
    _award_at(db, hid, vid, 30, _at(2024, 5, 5))
    assert cli.main(["ledger", "verify"]) == 0
    assert "积分账本完好" in capsys.readouterr().out
    assert cli.main(["ledger", "expire", "--as-of", "2026-01-01"]) == 0
    assert "已为 1 户记入到期清零，共 30 分" in capsys.readouterr().out
    assert cli.main(["ledger", "expire", "--as-of", "2026-01-01"]) == 0
    assert "没有到期未用的积分" in capsys.readouterr().out
    assert cli.main(["ledger", "expire", "--as-of", "明天"]) == 2
    assert cli.main(["ledger", "expire", "--as-of", "2099-01-01"]) == 2  # a mistyped year wipes nothing
    assert "不能晚于明天" in capsys.readouterr().err
    assert _balance(db, hid) == 0
    if db.is_sqlite:  # a broken book makes verify fail and name the problem
        with db.write_txn() as s:
            s.execute(text("DROP TRIGGER ledger_entries_no_update"))
            s.execute(text("UPDATE ledger_entries SET amount = amount + 1 WHERE id = 1"))
        assert cli.main(["ledger", "verify"]) == 1
        assert "[unbalanced]" in capsys.readouterr().out


def test_reversals_posted_by_hand_must_match_what_they_reverse(db: Database) -> None:
    vid, sid, (hid, h2) = _setup(db)
    award = _award(db, hid, 20)
    assert award.tx is not None
    hh, issue = ledger.household_account(hid), ledger.issue_account(vid)
    cases: list[tuple[ledger.Posting, type[Exception], str]] = [
        (ledger.Posting(ledger.TxKind.REVERSAL, "冲正", (ledger.Leg(hh, -5), ledger.Leg(issue, 5)),
                        reverses_id=award.tx.id), ValidationFailed, "正好相反"),
        (ledger.Posting(ledger.TxKind.REVERSAL, "冲正", (ledger.Leg(hh, -20), ledger.Leg(issue, 20)),
                        reverses_id=999_999), NotFound, "不存在"),
        (ledger.Posting(ledger.TxKind.REVERSAL, "冲正", (ledger.Leg(hh, -20), ledger.Leg(issue, 20))),
         ValidationFailed, "注明冲正哪一笔"),
        (ledger.Posting(ledger.TxKind.ADJUSTMENT, "调整", (ledger.Leg(hh, -20), ledger.Leg(issue, 20)),
                        reverses_id=award.tx.id), ValidationFailed, "注明冲正哪一笔"),
        (ledger.Posting(ledger.TxKind.REDEMPTION, "兑换", (ledger.Leg(hh, -50), ledger.Leg(ledger.redeemed_account(sid), 50)),
                        allow_debt=True), ValidationFailed, "兑换不能透支"),
    ]
    for posting, error, message in cases:
        with pytest.raises(error, match=message), db.write_txn() as s:
            ledger.post(s, ADMIN, posting)
    with db.write_txn() as s:  # a penalty that took nothing has nothing to reverse
        nothing = ledger.penalize(s, ADMIN, household_id=h2, points=5, memo="乱倒垃圾 -5")
    assert nothing.tx is not None
    with pytest.raises(Conflict, match="没有可冲正的积分"), db.write_txn() as s:
        ledger.reverse(s, ADMIN, nothing.tx.id, reason="搞错了")
    with db.write_txn() as s:
        ledger.set_policy(s, ADMIN, expiry_rule="months", expiry_months=1)
    _award_at(db, h2, vid, 4, _at(2025, 1, 3))
    with db.write_txn() as s:
        run = ledger.expire(s, ADMIN, as_of=date(2025, 6, 1))
    with pytest.raises(Conflict, match="到期清零不能冲正"), db.write_txn() as s:
        ledger.reverse(s, ADMIN, run.transaction_ids[0], reason="清错了")
    assert (_balance(db, hid), _balance(db, h2)) == (20, 0)
    _clean(db)


def test_a_reversal_retried_with_its_key_is_answered_again_even_if_it_could_no_longer_be_made(db: Database) -> None:
    vid, _sid, (hid, _) = _setup(db)
    _award_at(db, hid, vid, 30, _at(2024, 3, 1))
    with db.read_txn() as s:
        award_id = ledger.statement(s, hid).lines[0].transaction_id
    with db.write_txn() as s:
        first = ledger.reverse(s, ADMIN, award_id, reason="评错了", idempotency_key="rev-1")
    with db.write_txn() as s:  # since then the county set an expiry policy under which that award has expired
        ledger.set_policy(s, ADMIN, expiry_rule="year_end_next", expiry_months=None)
    with db.write_txn() as s:
        again = ledger.reverse(s, ADMIN, award_id, reason="评错了", idempotency_key="rev-1")
    assert again.replayed and again.tx is not None and first.tx is not None and again.tx.id == first.tx.id
    with pytest.raises(Conflict) as exc, db.write_txn() as s:  # without the key: "already reversed" comes first
        ledger.reverse(s, ADMIN, award_id, reason="评错了")
    assert exc.value.code == "already_reversed" and _balance(db, hid) == 0
