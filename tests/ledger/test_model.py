"""The ledger against a model: a Hypothesis state machine drives the real service on a real database (SQLite, or
PostgreSQL when ZF_TEST_DATABASE_URL is set) and compares every step with a few dictionaries.

Each operation runs in its own write transaction, as a request would. After every step: each balance (households
and the village's and store's source/sink accounts), the number of transactions, `verify` clean, nobody below zero
unless a debt-allowing operation put them there, no transaction reversed twice. Every refused operation must leave
the database exactly as it was.
"""

from __future__ import annotations

import calendar
import itertools
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.core.clock import utcnow
from app.db import Database
from app.errors import AppError, Conflict
from app.ledger import service
from app.ledger.models import PenaltyPolicy
from app.ledger.service import InsufficientPoints, Posted, Posting, TxView
from app.org import service as org
from tests.support.db import PG_URL, truncate_all
from tests.support.factories import SYSTEM, make_household, make_store, make_village

SHANGHAI = ZoneInfo("Asia/Shanghai")
T = TypeVar("T")

# Posting times (None: now). Two of them sit on either side of a local (Asia/Shanghai) midnight that is not a UTC one.
WHEN = st.sampled_from([
    None,
    datetime(2024, 3, 1, 4, 0, tzinfo=UTC),
    datetime(2024, 12, 31, 15, 59, tzinfo=UTC),  # 2024-12-31 23:59 in Shanghai
    datetime(2024, 12, 31, 16, 0, tzinfo=UTC),  # 2025-01-01 00:00 in Shanghai
    datetime(2025, 6, 30, 4, 0, tzinfo=UTC),
    datetime(2026, 2, 28, 4, 0, tzinfo=UTC),
])
# Expiry dates: some are a lot's last day itself (that day the points can still be spent), some the day after.
AS_OF = st.sampled_from([date(2025, 1, 1), date(2025, 7, 31), date(2025, 12, 31), date(2026, 1, 1), date(2026, 3, 31),
                         date(2026, 7, 1), date(2026, 12, 31), date(2027, 1, 1), date(2027, 5, 31), date(2027, 12, 31),
                         date(2028, 1, 1), date(2030, 1, 1)])
POLICIES = st.sampled_from([("none", None), ("year_end_next", None), ("months", 1), ("months", 6), ("months", 12)])
PICK = st.integers(0, 10**6)
MEMO = "打扫公共卫生"
REASON = "录入错误"

# The databases come from conftest's session fixtures (a migrated SQLite template, or this worker's PostgreSQL
# database); a state machine cannot take fixtures, so this module-wide autouse fixture hands them over.
_SOURCES: dict[str, str] = {}


@pytest.fixture(autouse=True, scope="module")
def _database_sources(request: pytest.FixtureRequest) -> Iterator[None]:
    if PG_URL:
        _SOURCES["pg"] = request.getfixturevalue("_pg_worker_url")
    else:
        _SOURCES["template"] = str(request.getfixturevalue("_sqlite_template"))
    yield
    _SOURCES.clear()


def local_day(ts: datetime) -> date:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(SHANGHAI).date()


def last_day(earned: date, rule: str, months: int | None) -> date:
    """The last day a point earned on `earned` can be spent (DESIGN: 次年底, or the end of the N-th month after)."""
    if rule == "year_end_next":
        return date(earned.year + 1, 12, 31)
    assert rule == "months" and months
    y, m = divmod(earned.month - 1 + months, 12)
    year, month = earned.year + y, m + 1
    return date(year, month, calendar.monthrange(year, month)[1])


@dataclass
class Tx:
    id: int
    kind: str
    legs: dict[str, int]  # account code -> amount
    earned: date  # local day it happened; a reversal's is its original's (its points belong to that lot)
    reverses: int | None = None
    reversed_by: int | None = None


@dataclass
class Keyed:
    call: Callable[[Session], Posted]  # the very same request again
    tx_id: int


def snapshot(db: Database) -> tuple[Any, ...]:
    """Everything a posting can touch."""
    with db.read_session() as s:
        return (
            tuple(tuple(r) for r in s.execute(text(
                "SELECT id, code, kind, balance, entry_count FROM ledger_accounts ORDER BY id"))),
            tuple(s.execute(text("SELECT count(*), max(id) FROM ledger_transactions")).one()),
            tuple(s.execute(text("SELECT count(*), max(id), coalesce(sum(amount), 0) FROM ledger_entries")).one()),
            s.execute(text("SELECT count(*) FROM audit_events")).scalar_one(),
            tuple(tuple(r) for r in s.execute(text("SELECT expiry_rule, expiry_months FROM ledger_policies"))),
        )


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp: Path | None = None
        if PG_URL:
            url = _SOURCES["pg"]
            truncate_all(url)
        else:
            self.tmp = Path(tempfile.mkdtemp(prefix="zf-ledger-model-"))
            shutil.copyfile(_SOURCES["template"], self.tmp / "ledger.db")
            url = f"sqlite:///{self.tmp / 'ledger.db'}"
        self.db = Database(url)
        self.hids: list[int] = []
        self.vid = self.store_id = 0
        self.balances: dict[str, int] = defaultdict(int)  # every account code the model knows
        self.counts: dict[str, int] = defaultdict(int)  # entries on each household account
        self.txs: dict[int, Tx] = {}
        self.keys: dict[str, Keyed] = {}
        self.debt_ok: set[str] = set()  # households a debt-allowing operation left below zero
        self.policy: tuple[str, int | None] = ("none", None)
        self.key_seq = itertools.count(1)

    def teardown(self) -> None:
        self.db.dispose()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @initialize(n=st.sampled_from([2, 3]), policy=POLICIES,
                opening=st.lists(st.tuples(st.integers(0, 300), WHEN), min_size=3, max_size=3))
    def setup_village(self, n: int, policy: tuple[str, int | None], opening: list[tuple[int, datetime | None]]) -> None:
        """One village with its store and two or three households, an expiry policy and (mostly) opening awards."""
        with self.db.write_txn() as s:
            org.ensure_county(s, SYSTEM, code="341000", name="振风县")
            v = make_village(s)
            self.vid, self.store_id = v.id, make_store(s, v).id  # type: ignore[assignment]
            self.hids = [make_household(s, v).id for _ in range(n)]  # type: ignore[misc]
        self.set_policy(policy)
        for i, (points, when) in enumerate(opening[:n]):
            if points:
                self.award(i, points, when, False)

    # ---- helpers --------------------------------------------------------------------------------------------------

    def hh(self, pick: int) -> tuple[int, str]:
        hid = self.hids[pick % len(self.hids)]
        return hid, service.household_account(hid)

    @property
    def issue(self) -> str:
        return service.issue_account(self.vid)

    @property
    def adjust_acc(self) -> str:
        return service.adjust_account(self.vid)

    @property
    def redeemed(self) -> str:
        return service.redeemed_account(self.store_id)

    @property
    def expired(self) -> str:
        return service.expired_account(self.vid)

    def new_key(self, keyed: bool) -> str | None:
        return f"key-{next(self.key_seq)}" if keyed else None

    def ok(self, call: Callable[[Session], T]) -> T:
        with self.db.write_txn() as s:
            return call(s)

    def refused(self, exc: type[AppError], call: Callable[[Session], object], code: str | None = None) -> None:
        """The operation raises `exc` (with `code`) and leaves the database exactly as it was."""
        event(f"refused: {exc.__name__} {code or ''}")
        before = snapshot(self.db)
        with pytest.raises(exc) as info, self.db.write_txn() as s:
            call(s)
        if code is not None:
            assert info.value.code == code, info.value
        assert snapshot(self.db) == before, f"{exc.__name__} left changes behind"

    def record(self, tx: TxView | None, kind: str, legs: dict[str, int], *, earned: date | None = None,
               reverses: int | None = None, key: str | None = None,
               call: Callable[[Session], Posted] | None = None, debt: bool = False) -> Tx:
        """Check a new transaction against what the model expects, then apply it to the model."""
        assert tx is not None
        assert tx.id not in self.txs
        assert tx.kind == kind and tx.reverses_id == reverses and tx.idempotency_key == key
        assert {e.account: e.amount for e in tx.entries} == legs
        for e in tx.entries:
            if e.account.startswith("household:"):
                assert (e.seq, e.balance_after) == (self.counts[e.account] + 1, self.balances[e.account] + e.amount)
            else:
                assert (e.seq, e.balance_after) == (None, None)
        event(f"posted: {kind}")
        t = Tx(tx.id, kind, legs, earned or local_day(tx.occurred_at), reverses)
        self.txs[tx.id] = t
        for code, amount in legs.items():
            self.balances[code] += amount
            if code.startswith("household:"):
                self.counts[code] += 1
                if self.balances[code] >= 0:
                    self.debt_ok.discard(code)
                elif debt and amount < 0:
                    self.debt_ok.add(code)
        if key is not None:
            assert call is not None
            self.keys[key] = Keyed(call, tx.id)
        return t

    def lots(self, hid: int) -> list[tuple[date, int]]:
        """What is left of a household's points, by last day, oldest first, under the current policy: points are
        spent oldest lot first (FIFO), so the debits (spends, deductions, expiries, less the reversed ones) eat the
        lots in the order they expire. An undone earning shrinks its own lot."""
        rule, months = self.policy
        if rule == "none":
            return []
        code = service.household_account(hid)
        lots: dict[date, int] = defaultdict(int)
        debits = 0
        for t in self.txs.values():
            amount = t.legs.get(code, 0)
            if amount == 0:
                continue
            if (amount > 0) != (t.reverses is not None):  # earned, or an earning undone
                lots[last_day(t.earned, rule, months)] += amount
            else:  # taken out, or a taking-out undone
                debits -= amount
        assert debits >= 0 and all(n >= 0 for n in lots.values())
        left: list[tuple[date, int]] = []
        for d in sorted(lots):
            taken = min(lots[d], debits)
            debits -= taken
            if lots[d] > taken:
                left.append((d, lots[d] - taken))
        return left

    def due(self, as_of: date) -> dict[int, int]:
        """What expiry on `as_of` takes: what is left of the lots whose last day is before it."""
        out = {hid: sum(n for d, n in self.lots(hid) if d < as_of) for hid in self.hids}
        return {hid: n for hid, n in out.items() if n}

    # ---- rules ----------------------------------------------------------------------------------------------------

    @rule(pick=PICK, points=st.integers(1, 300), when=WHEN, keyed=st.booleans())
    def award(self, pick: int, points: int, when: datetime | None, keyed: bool) -> None:
        hid, code = self.hh(pick)
        key = self.new_key(keyed)

        def call(s: Session) -> Posted:
            if when is None:
                return service.award(s, SYSTEM, household_id=hid, points=points, memo=MEMO, idempotency_key=key)
            return service.post(s, SYSTEM, service.award_posting(hid, self.vid, points, MEMO, idempotency_key=key),
                                occurred_at=when)

        posted = self.ok(call)
        assert not posted.replayed
        self.record(posted.tx, "award", {code: points, self.issue: -points},
                    earned=local_day(when) if when else None, key=key, call=call)

    @rule(points=st.lists(st.integers(1, 100), min_size=1, max_size=5), when=WHEN, keyed=st.booleans(),
          repeat=st.booleans())
    def award_many(self, points: list[int], when: datetime | None, keyed: bool, repeat: bool) -> None:
        """The monthly close: one post_many; with keys, the first posting sent twice in the batch lands once."""
        postings = [service.award_posting(self.hids[i % len(self.hids)], self.vid, p, MEMO,
                                          idempotency_key=self.new_key(keyed)) for i, p in enumerate(points)]
        sent = [*postings, postings[0]] if keyed and repeat else postings
        result = self.ok(lambda s: service.post_many(s, SYSTEM, sent, occurred_at=when))
        assert (result.posted, result.replayed, result.points) == (len(postings), len(sent) - len(postings), sum(points))
        assert len(result.transaction_ids) == len(sent) and None not in result.transaction_ids
        if len(sent) > len(postings):
            assert result.transaction_ids[-1] == result.transaction_ids[0]
        with self.db.read_session() as s:
            views = [service.get_transaction(s, i) for i in result.transaction_ids[:len(postings)]]  # type: ignore[arg-type]
        for posting, view in zip(postings, views, strict=True):
            legs = {leg.account: leg.amount for leg in posting.legs}

            def call(s: Session, posting: Posting = posting) -> Posted:
                return service.post(s, SYSTEM, posting)

            self.record(view, "award", legs, earned=local_day(when) if when else None, key=posting.idempotency_key,
                        call=call)

    @rule(pick=PICK, points=st.integers(1, 300), debt=st.booleans(), keyed=st.booleans())
    def penalty(self, pick: int, points: int, debt: bool, keyed: bool) -> None:
        hid, code = self.hh(pick)
        key = self.new_key(keyed)
        policy = PenaltyPolicy.ALLOW_DEBT if debt else PenaltyPolicy.FLOOR_AT_ZERO
        applied = points if debt else min(points, max(self.balances[code], 0))

        def call(s: Session) -> Posted:
            return service.penalize(s, SYSTEM, household_id=hid, points=points, memo="乱倒垃圾", policy=policy,
                                    idempotency_key=key)

        posted = self.ok(call)
        assert not posted.replayed
        if not debt:
            assert (posted.requested, posted.applied) == (points, applied)
        # floor_at_zero on an empty balance takes nothing, and says so with a record of 0 points (which keeps the key)
        self.record(posted.tx, "penalty", {code: -applied, self.adjust_acc: applied}, key=key, call=call, debt=debt)

    @rule(pick=PICK, points=st.integers(1, 400), keyed=st.booleans())
    def spend(self, pick: int, points: int, keyed: bool) -> None:
        hid, code = self.hh(pick)
        key = self.new_key(keyed)

        def call(s: Session) -> Posted:
            return service.spend(s, SYSTEM, household_id=hid, store_id=self.store_id, points=points, memo="兑换洗衣粉",
                                 idempotency_key=key)

        if self.balances[code] < points:
            self.refused(InsufficientPoints, call)
            return
        posted = self.ok(call)
        assert not posted.replayed
        self.record(posted.tx, "redemption", {code: -points, self.redeemed: points}, key=key, call=call)

    @precondition(lambda self: self.txs)
    @rule(pick=PICK, debt=st.booleans(), keyed=st.booleans())
    def reverse(self, pick: int, debt: bool, keyed: bool) -> None:
        original = list(self.txs.values())[pick % len(self.txs)]
        key = self.new_key(keyed)

        def call(s: Session) -> Posted:
            return service.reverse(s, SYSTEM, original.id, reason=REASON, idempotency_key=key, allow_debt=debt,
                                   voiding_redemption=True)  # the model covers the book; the store voids its spends

        if original.reverses is not None:
            self.refused(Conflict, call)  # a reversal is never reversed
            return
        if original.reversed_by is not None:
            self.refused(Conflict, call, "already_reversed")
            return
        if original.kind == "expiry":  # expired points would go back into expired lots: refused, adjust instead
            self.refused(Conflict, call)
            return
        if not any(original.legs.values()):  # a penalty that took nothing: there is nothing to undo
            self.refused(Conflict, call, "nothing_to_reverse")
            return
        rule, months = self.policy
        credit = any(code.startswith("household:") and amount > 0 for code, amount in original.legs.items())
        if credit and rule != "none" and last_day(original.earned, rule, months) < local_day(utcnow()):
            self.refused(Conflict, call, "expired_lot")  # its points may already have been expired: not twice
            return
        legs = {code: -amount for code, amount in original.legs.items()}
        short = any(code.startswith("household:") and amount < 0 and self.balances[code] + amount < 0
                    for code, amount in legs.items())
        if short and not debt:
            self.refused(InsufficientPoints, call)
            return
        posted = self.ok(call)
        assert not posted.replayed
        t = self.record(posted.tx, "reversal", legs, earned=original.earned, reverses=original.id, key=key, call=call,
                        debt=debt)
        original.reversed_by = t.id

    @rule(pick=PICK, amount=st.integers(-300, 300).filter(bool), debt=st.booleans(), keyed=st.booleans())
    def adjust(self, pick: int, amount: int, debt: bool, keyed: bool) -> None:
        hid, code = self.hh(pick)
        key = self.new_key(keyed)

        def call(s: Session) -> Posted:
            return service.adjust(s, SYSTEM, household_id=hid, amount=amount, reason="补录上月积分",
                                  idempotency_key=key, allow_debt=debt)

        if amount < 0 and self.balances[code] + amount < 0 and not debt:
            self.refused(InsufficientPoints, call)
            return
        posted = self.ok(call)
        assert not posted.replayed
        self.record(posted.tx, "adjustment", {code: amount, self.adjust_acc: -amount}, key=key, call=call, debt=debt)

    @precondition(lambda self: self.keys)
    @rule(pick=PICK)
    def retry_same_request(self, pick: int) -> None:
        """A retry of a request that was posted: the first transaction comes back and nothing new is written."""
        key = sorted(self.keys)[pick % len(self.keys)]
        keyed = self.keys[key]
        before = snapshot(self.db)
        event("replayed")
        posted = self.ok(keyed.call)
        assert posted.replayed and posted.tx is not None and posted.tx.id == keyed.tx_id
        assert snapshot(self.db) == before

    @precondition(lambda self: self.keys)
    @rule(pick=PICK, who=PICK, points=st.integers(1, 50), as_spend=st.booleans())
    def retry_other_request(self, pick: int, who: int, points: int, as_spend: bool) -> None:
        """The same key with a different request is refused, whatever the new request would do."""
        key = sorted(self.keys)[pick % len(self.keys)]
        hid, code = self.hh(who)
        first = self.txs[self.keys[key].tx_id]
        if as_spend and first.kind == "redemption" and first.legs.get(code) == -points:
            points += 1
        if as_spend and self.balances[code] >= points:  # a spend that would go through but for its key
            self.refused(Conflict, lambda s: service.spend(s, SYSTEM, household_id=hid, store_id=self.store_id,
                                                           points=points, memo="兑换洗衣粉", idempotency_key=key),
                         "idempotency_conflict")
            return
        if first.kind == "award" and first.legs.get(code) == points:
            points += 1
        self.refused(Conflict, lambda s: service.award(s, SYSTEM, household_id=hid, points=points, memo=MEMO,
                                                       idempotency_key=key), "idempotency_conflict")

    @rule(policy=POLICIES)
    def set_policy(self, policy: tuple[str, int | None]) -> None:
        self.ok(lambda s: service.set_policy(s, SYSTEM, expiry_rule=policy[0], expiry_months=policy[1]))
        self.policy = policy

    @rule(as_of=AS_OF)
    def expire(self, as_of: date) -> None:
        self.run_expiry(as_of)

    @precondition(lambda self: self.policy[0] != "none")
    @rule(pick=PICK, day_after=st.booleans())
    def expire_at_a_lot_end(self, pick: int, day_after: bool) -> None:
        """Expiry on the last day of a lot that is still there (nothing of it goes) or on the day after (all of it)."""
        ends = sorted({d for h in self.hids for d, _ in self.lots(h)})
        if ends:
            self.run_expiry(ends[pick % len(ends)] + timedelta(days=int(day_after)))

    def run_expiry(self, as_of: date) -> None:
        with self.db.read_session() as s:  # first what households are told will expire
            for hid in self.hids:
                assert service.expiring(s, hid, as_of=as_of) == [(d, n) for d, n in self.lots(hid) if d >= as_of]
        due = self.due(as_of)
        run = self.ok(lambda s: service.expire(s, SYSTEM, as_of=as_of))
        assert (run.households, run.points, len(run.transaction_ids)) == (len(due), sum(due.values()), len(due))
        with self.db.read_session() as s:
            views = [service.get_transaction(s, i) for i in run.transaction_ids]
        by_household = {next(e.account for e in v.entries if e.account.startswith("household:")): v for v in views}
        assert set(by_household) == {service.household_account(h) for h in due}
        for hid, points in due.items():
            code = service.household_account(hid)
            self.record(by_household[code], "expiry", {code: -points, self.expired: points})
        # Expiry is a debit itself: a second run for the same day finds nothing left to expire.
        before = snapshot(self.db)
        again = self.ok(lambda s: service.expire(s, SYSTEM, as_of=as_of))
        assert (again.households, again.points, again.transaction_ids) == (0, 0, [])
        assert snapshot(self.db) == before

    # ---- after every step -----------------------------------------------------------------------------------------

    @invariant()
    def ledger_matches_model(self) -> None:
        with self.db.read_session() as s:
            found = service.balances(s, self.hids)
            accounts = s.execute(text(
                "SELECT a.code, a.balance, a.entry_count, coalesce(sum(e.amount), 0), count(e.id) FROM ledger_accounts a "
                "LEFT JOIN ledger_entries e ON e.account_id = a.id GROUP BY a.id, a.code, a.balance, a.entry_count")).all()
            assert service.transaction_count(s) == len(self.txs)
            assert service.verify(s) == []
            reversals: dict[int, int] = dict(s.execute(text(
                "SELECT reverses_id, count(*) FROM ledger_transactions WHERE reverses_id IS NOT NULL "
                "GROUP BY reverses_id")).all())
        assert found == {h: self.balances[service.household_account(h)] for h in self.hids}
        # every account, sources and sinks included: its entries sum to what the model says (kept ones: also the row)
        totals = {code: int(total) for code, _, _, total, _ in accounts}
        assert totals == {code: self.balances.get(code, 0) for code in totals}
        assert not {code for code, b in self.balances.items() if b} - set(totals)
        for code, balance, entry_count, _, n in accounts:
            if code.startswith("household:"):
                assert (balance, entry_count, n) == (self.balances[code], self.counts[code], self.counts[code]), code
        assert all(n == 1 for n in reversals.values())
        assert set(reversals) == {t.id for t in self.txs.values() if t.reversed_by is not None}
        for h, b in found.items():
            assert b >= 0 or service.household_account(h) in self.debt_ok, f"household {h} is at {b} without debt"


LedgerMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30, deadline=None,
                                           suppress_health_check=[HealthCheck.too_slow])
TestLedgerModel = LedgerMachine.TestCase


def test_a_retried_penalty_that_first_moved_nothing_still_moves_nothing(db: Database) -> None:
    """A keyed floor_at_zero penalty on an empty balance, retried after the household earned points: the retry is
    the same request and must take nothing now either."""
    with db.write_txn() as s:
        v = make_village(s)
        hid: int = make_household(s, v).id  # type: ignore[assignment]

    def penalty(s: Session) -> Posted:
        return service.penalize(s, SYSTEM, household_id=hid, points=5, memo="乱倒垃圾", idempotency_key="pen-1")

    with db.write_txn() as s:
        first = penalty(s)
    assert first.applied == 0
    with db.write_txn() as s:
        service.award(s, SYSTEM, household_id=hid, points=10, memo=MEMO)
    with db.write_txn() as s:
        retry = penalty(s)  # the same request, sent again (a lost response): it must not deduct now
    assert retry.replayed
    with db.read_session() as s:
        assert service.balance(s, hid) == 10, (retry, "the retry deducted points the first request did not")
