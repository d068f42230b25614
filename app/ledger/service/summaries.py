"""Summaries of the ledger by village: a year's months (points issued, deducted, redeemed, expired, adjusted and
reversed, with the opening and closing outstanding balance) and the current totals of the villages' households
(accounts, points outstanding, households in debt)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.ledger.models import AccountKind
from app.ledger.service.common import ACCOUNTS, ENTRIES, TXS, _member_of

SUMMARY_KINDS = ("award", "penalty", "redemption", "expiry", "adjustment", "reversal")


@dataclass
class MonthSummary:
    village_id: int
    month: int
    by_kind: dict[str, int]  # net points into households, by transaction kind
    opening: int
    closing: int

    @property
    def issued(self) -> int:
        return self.by_kind.get("award", 0)

    @property
    def redeemed(self) -> int:
        return -self.by_kind.get("redemption", 0)

    @property
    def expired(self) -> int:
        return -self.by_kind.get("expiry", 0)

    @property
    def net(self) -> int:
        return sum(self.by_kind.values())


def village_summary(session: Session, village_id: int, year: int) -> list[MonthSummary]:
    """Per month of `year`: points issued, deducted, redeemed, expired, adjusted and reversed for the village's
    households, with the outstanding balance at the start and end of each month."""
    hh = ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value
    first, last = year * 100 + 1, year * 100 + 12
    opening = session.execute(
        select(func.coalesce(func.sum(ENTRIES.c.amount), 0))
        .select_from(ENTRIES.join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
                     .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id))
        .where(TXS.c.village_id == village_id, TXS.c.month < first, hh)).scalar_one()
    rows = session.execute(
        select(TXS.c.month, TXS.c.kind, func.sum(ENTRIES.c.amount).label("net"))
        .select_from(ENTRIES.join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
                     .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id))
        .where(TXS.c.village_id == village_id, TXS.c.month.between(first, last), hh)
        .group_by(TXS.c.month, TXS.c.kind)).all()
    by_month: dict[int, dict[str, int]] = defaultdict(dict)
    for r in rows:
        by_month[r.month][r.kind] = int(r.net)
    out: list[MonthSummary] = []
    running = int(opening)
    for m in range(first, last + 1):
        kinds = by_month.get(m, {})
        s = MonthSummary(village_id, m, dict(kinds), running, running + sum(kinds.values()))
        running = s.closing
        out.append(s)
    return out


@dataclass(frozen=True)
class VillageTotals:
    village_id: int
    households: int  # with an account
    outstanding: int  # sum of household balances: points the store still owes
    in_debt: int  # households below zero (allow_debt)


def village_totals(session: Session, village_ids: Sequence[int]) -> dict[int, VillageTotals]:
    out = {v: VillageTotals(v, 0, 0, 0) for v in village_ids}
    for where in _member_of(session, ACCOUNTS.c.village_id, village_ids):
        rows = session.execute(
            select(ACCOUNTS.c.village_id, func.count(), func.coalesce(func.sum(ACCOUNTS.c.balance), 0),
                   func.sum(case((ACCOUNTS.c.balance < 0, 1), else_=0)))
            .where(ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value, where)
            .group_by(ACCOUNTS.c.village_id)).all()
        for v, n, total, debt in rows:
            out[v] = VillageTotals(v, int(n), int(total), int(debt or 0))
    return out
