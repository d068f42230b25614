"""Expiry of points under the county's policy: a household's lots (credits by expiry date, spent oldest first),
what will expire and when (`expiring`), and the expiry run (`expire`), which posts every lot past its last day as
ledger transactions, idempotently."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from app.core.clock import to_local, utcnow
from app.core.context import Actor
from app.ledger.models import AccountKind, ExpiryRule, LedgerTransaction, TxKind
from app.ledger.service.accounts import expired_account, household_account
from app.ledger.service.common import ACCOUNTS, ENTRIES, TXS, _member_of
from app.ledger.service.policy import Policy, get_policy
from app.ledger.service.posting import post_many
from app.ledger.service.records import Leg, Posting
from app.ledger.service.writing import _lock_kept


def _lots_query(where: Any) -> Any:
    orig = aliased(LedgerTransaction)
    return (select(ENTRIES.c.account_id, ENTRIES.c.amount, TXS.c.kind, TXS.c.occurred_at,
                   orig.occurred_at.label("orig_at"))
            .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
            .outerjoin(orig, orig.id == TXS.c.reverses_id)
            .where(where))


@dataclass
class _Lots:
    credits: dict[date | None, int] = field(default_factory=lambda: defaultdict(int))  # by expiry date
    debits: int = 0

    def add(self, policy: Policy, amount: int, kind: str, at: datetime, orig_at: datetime | None) -> None:
        # A reversal belongs to what it reverses: undoing an award shrinks that award's lot; undoing a spend
        # gives back points as if they had never been spent.
        is_reversal = kind == TxKind.REVERSAL
        credit = (amount > 0) != is_reversal
        if credit:
            earned = to_local(orig_at if is_reversal and orig_at else at)
            assert earned is not None
            self.credits[policy.lot_expiry(earned.date())] += amount
        else:
            self.debits -= amount

    def schedule(self) -> list[tuple[date, int]]:
        """(expiry date, points still unspent that expire then), oldest first. Spending takes the oldest first
        (FIFO), and lots expire in the order they were earned, so what is left of the lots up to a date is
        max(0, credits up to that date - everything ever taken out)."""
        out: list[tuple[date, int]] = []
        cumulative = 0
        left_before = 0
        for d in sorted(k for k in self.credits if k is not None):
            cumulative += self.credits[d]
            left = max(0, cumulative - self.debits)
            if left > left_before:
                out.append((d, left - left_before))
            left_before = max(left, left_before)
        return out

    def due(self, as_of: date) -> int:
        """Points of lots whose last day is before `as_of`, still unspent."""
        return sum(n for d, n in self.schedule() if d < as_of)


def expiring(session: Session, household_id: int, *, as_of: date | None = None) -> list[tuple[date, int]]:
    """What will expire and when ("30 分将于 2027-12-31 到期"), from `as_of` (default today) on."""
    policy = get_policy(session)
    if policy.expiry_rule is ExpiryRule.NONE:
        return []
    acc_id = session.execute(select(ACCOUNTS.c.id).where(ACCOUNTS.c.household_id == household_id)).scalar()
    if acc_id is None:
        return []
    lots = _Lots()
    for r in session.execute(_lots_query(ENTRIES.c.account_id == acc_id)):
        lots.add(policy, int(r.amount), r.kind, r.occurred_at, r.orig_at)
    today = as_of or (to_local(utcnow()) or utcnow()).date()
    return [(d, n) for d, n in lots.schedule() if d >= today]


@dataclass(frozen=True)
class ExpiryRun:
    as_of: date
    households: int
    points: int
    transaction_ids: list[int]


def expire(session: Session, actor: Actor, *, as_of: date, village_ids: Sequence[int] | None = None) -> ExpiryRun:
    """Post the expiry of every lot whose last day is before `as_of`, as ledger transactions (never silently).
    Idempotent by construction: expiry is itself a debit, so a second run with the same date finds nothing due."""
    policy = get_policy(session)
    if policy.expiry_rule is ExpiryRule.NONE:
        return ExpiryRun(as_of, 0, 0, [])
    stmt = select(ACCOUNTS.c.id, ACCOUNTS.c.household_id, ACCOUNTS.c.village_id).where(
        ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value, ACCOUNTS.c.balance > 0)
    if village_ids is not None:
        stmt = stmt.where(ACCOUNTS.c.village_id.in_(list(village_ids)))
    candidates = {r.id: (r.household_id, r.village_id) for r in session.execute(stmt)}
    _lock_kept(session, list(candidates))  # nothing is spent between the computation and the posting
    lots: dict[int, _Lots] = defaultdict(_Lots)
    ids = sorted(candidates)
    for where in _member_of(session, ENTRIES.c.account_id, ids):
        for r in session.execute(_lots_query(where)):
            lots[r.account_id].add(policy, int(r.amount), r.kind, r.occurred_at, r.orig_at)
    postings: list[Posting] = []
    last_day = as_of - timedelta(days=1)
    for acc_id in ids:
        due = lots[acc_id].due(as_of)
        if due <= 0:
            continue
        hid, vid = candidates[acc_id]
        postings.append(Posting(TxKind.EXPIRY, f"积分到期清零：{last_day:%Y年%m月%d日}前到期未用的 {due} 分",
                                (Leg(household_account(hid), -due), Leg(expired_account(vid), due)),
                                reference=f"expiry:{as_of.isoformat()}"))
    if not postings:
        return ExpiryRun(as_of, 0, 0, [])
    result = post_many(session, actor, postings, note=f"积分到期清零，截至 {as_of.isoformat()}")
    total = sum(-p.legs[0].amount for p in postings)
    return ExpiryRun(as_of, len(postings), total, [i for i in result.transaction_ids if i])
