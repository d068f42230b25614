"""Proof of the book: `verify` checks every invariant the write path keeps (balanced transactions, kept balances
and chains, no overdrawn spend, reversals once and exact, month totals that match the entries) and reports each
breach as a `Violation`. This module also holds the readers of ledger_month_totals (totals by kind, by month and by
household), its rebuild, and the store's list of redemption transactions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session, aliased

from app.ledger.models import TX_KIND_LABELS, AccountKind, LedgerEntry, LedgerTransaction, TxKind
from app.ledger.service.common import ACCOUNTS, ENTRIES, MONTHS, SLOTS, TXS


@dataclass(frozen=True)
class Violation:
    kind: str  # unbalanced | empty | balance_mismatch | chain_gap | chain_break | overdraft | reversed_twice |
    #            reversal_mismatch | summary_mismatch (ledger_month_totals)
    message: str
    transaction_id: int | None = None
    account_id: int | None = None


def verify(session: Session) -> list[Violation]:
    """Prove the book: every transaction sums to zero and has entries; every kept balance (and entry count) equals
    its entries; each kept account's chain runs 1, 2, 3 … with balance_after = previous + amount; no spend left a
    balance below zero; no transaction is reversed twice, and every reversal exactly negates what it reverses."""
    out: list[Violation] = []
    for tx_id, total in session.execute(
            select(ENTRIES.c.transaction_id, func.sum(ENTRIES.c.amount)).group_by(ENTRIES.c.transaction_id)
            .having(func.sum(ENTRIES.c.amount) != 0)):
        out.append(Violation("unbalanced", f"第 {tx_id} 号交易的分录合计为 {total}，不为零", tx_id))
    for (tx_id,) in session.execute(select(TXS.c.id).where(~select(ENTRIES.c.id).where(
            ENTRIES.c.transaction_id == TXS.c.id).exists())):
        out.append(Violation("empty", f"第 {tx_id} 号交易没有任何分录", tx_id))
    sums = (select(ENTRIES.c.account_id, func.sum(ENTRIES.c.amount).label("total"), func.count().label("n"))
            .group_by(ENTRIES.c.account_id).subquery())
    for r in session.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.code, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count,
                                    sums.c.total, sums.c.n)
                             .outerjoin(sums, sums.c.account_id == ACCOUNTS.c.id)
                             .where(ACCOUNTS.c.balance.is_not(None))):
        total, n = int(r.total or 0), int(r.n or 0)
        if int(r.balance) != total:
            out.append(Violation("balance_mismatch", f"账户 {r.code} 记载余额 {r.balance}，而分录合计为 {total}",
                                 account_id=r.id))
        if int(r.entry_count) != n:
            out.append(Violation("balance_mismatch", f"账户 {r.code} 记载 {r.entry_count} 条分录，实有 {n} 条",
                                 account_id=r.id))
    prev_seq = func.lag(ENTRIES.c.seq).over(partition_by=ENTRIES.c.account_id, order_by=ENTRIES.c.seq)
    prev_bal = func.lag(ENTRIES.c.balance_after).over(partition_by=ENTRIES.c.account_id, order_by=ENTRIES.c.seq)
    chain = (select(ENTRIES.c.id, ENTRIES.c.account_id, ENTRIES.c.transaction_id, ENTRIES.c.seq, ENTRIES.c.amount,
                    ENTRIES.c.balance_after, prev_seq.label("prev_seq"), prev_bal.label("prev_bal"))
             .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
             .where(ACCOUNTS.c.balance.is_not(None)).subquery())
    bad = select(chain).where(
        (func.coalesce(chain.c.prev_seq, 0) + 1 != chain.c.seq)
        | (func.coalesce(chain.c.prev_bal, 0) + chain.c.amount != chain.c.balance_after)
        | chain.c.seq.is_(None))
    for r in session.execute(bad):
        if r.seq is None:
            out.append(Violation("chain_gap", f"账户 {r.account_id} 的第 {r.id} 号分录缺少序号和结余",
                                 r.transaction_id, r.account_id))
        elif (r.prev_seq or 0) + 1 != r.seq:
            out.append(Violation("chain_gap", f"账户 {r.account_id} 的分录序号从 {r.prev_seq or 0} 跳到 {r.seq}"
                                              f"（第 {r.transaction_id} 号交易），中间有缺失", r.transaction_id,
                                 r.account_id))
        else:
            out.append(Violation("chain_break", f"账户 {r.account_id} 第 {r.seq} 条分录（第 {r.transaction_id} 号交易）"
                                                f"的结余 {r.balance_after} ≠ 上一条结余 {r.prev_bal or 0} + 本条 {r.amount}",
                                 r.transaction_id, r.account_id))
    for r in session.execute(select(ENTRIES.c.transaction_id, ENTRIES.c.account_id, ENTRIES.c.balance_after)
                             .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
                             .where(TXS.c.kind == TxKind.REDEMPTION.value, ENTRIES.c.amount < 0,
                                    ENTRIES.c.balance_after < 0)):
        out.append(Violation("overdraft", f"第 {r.transaction_id} 号兑换使账户 {r.account_id} 透支到 "
                                          f"{r.balance_after} 分", r.transaction_id, r.account_id))
    for orig_id, n in session.execute(select(TXS.c.reverses_id, func.count()).where(TXS.c.reverses_id.is_not(None))
                                      .group_by(TXS.c.reverses_id).having(func.count() > 1)):
        out.append(Violation("reversed_twice", f"第 {orig_id} 号交易被冲正了 {n} 次", orig_id))
    for tx_id, kind, rid in session.execute(select(TXS.c.id, TXS.c.kind, TXS.c.reverses_id).where(
            (TXS.c.kind == TxKind.REVERSAL.value) != TXS.c.reverses_id.is_not(None))):
        what = "冲正交易没有注明冲正哪一笔" if kind == TxKind.REVERSAL else f"非冲正交易（{kind}）却注明冲正第 {rid} 号交易"
        out.append(Violation("reversal_mismatch", f"第 {tx_id} 号交易：{what}", tx_id))
    target = aliased(LedgerTransaction)
    for tx_id, rid in session.execute(select(TXS.c.id, TXS.c.reverses_id).join(target, target.id == TXS.c.reverses_id)
                                      .where(target.kind == TxKind.REVERSAL.value)):
        out.append(Violation("reversal_mismatch", f"第 {tx_id} 号交易冲正的第 {rid} 号交易本身是冲正", tx_id))
    rev = aliased(LedgerTransaction)
    e_orig = aliased(LedgerEntry)
    e_rev = aliased(LedgerEntry)
    net = (select(rev.id.label("rev_id"), rev.reverses_id.label("orig_id")).where(rev.reverses_id.is_not(None))
           .subquery())
    mismatched = session.execute(
        select(net.c.rev_id, net.c.orig_id).where(
            select(func.count()).select_from(e_orig).where(e_orig.transaction_id == net.c.orig_id).scalar_subquery()
            != select(func.count()).select_from(e_rev).where(e_rev.transaction_id == net.c.rev_id).scalar_subquery())
        .union(select(net.c.rev_id, net.c.orig_id).join(e_rev, e_rev.transaction_id == net.c.rev_id).where(
            ~select(e_orig.id).where(e_orig.transaction_id == net.c.orig_id, e_orig.account_id == e_rev.account_id,
                                     e_orig.amount == -e_rev.amount).exists()))).all()
    for rev_id, orig_id in mismatched:
        out.append(Violation("reversal_mismatch", f"第 {rev_id} 号冲正与被冲正的第 {orig_id} 号交易不是正好相反",
                             rev_id))
    out.extend(_month_totals_drift(session))
    return out


def kind_totals(session: Session, village_ids: Sequence[int], from_month: int,
                to_month: int) -> dict[int, dict[str, int]]:
    """Per village and kind of transaction, the points moved on households' accounts in the months (signed: awards
    positive, redemptions negative), in one grouped statement."""
    out: dict[int, dict[str, int]] = {v: {} for v in village_ids}
    if not village_ids:
        return out
    for vid, kind, total in session.execute(
            select(MONTHS.c.village_id, MONTHS.c.kind, func.sum(MONTHS.c.points))
            .where(MONTHS.c.village_id.in_(list(village_ids)), MONTHS.c.month.between(from_month, to_month))
            .group_by(MONTHS.c.village_id, MONTHS.c.kind)):
        out[vid][kind] = int(total or 0)
    return out


def month_kind_totals(session: Session, village_ids: Sequence[int], from_month: int,
                      to_month: int) -> dict[int, dict[str, int]]:
    """Per month and kind, the points moved on the villages' household accounts (for trends over months)."""
    out: dict[int, dict[str, int]] = {}
    if not village_ids:
        return out
    for month, kind, total in session.execute(
            select(MONTHS.c.month, MONTHS.c.kind, func.sum(MONTHS.c.points))
            .where(MONTHS.c.village_id.in_(list(village_ids)), MONTHS.c.month.between(from_month, to_month))
            .group_by(MONTHS.c.month, MONTHS.c.kind)):
        out.setdefault(int(month), {})[kind] = int(total or 0)
    return out


def rebuild_month_totals(session: Session) -> int:
    """Rewrite ledger_month_totals from the entries (after a load that wrote the book directly, or to repair what
    `verify` reports as summary_mismatch). Returns the rows written."""
    slot = (ACCOUNTS.c.id % SLOTS).label("slot")
    grouped = (select(TXS.c.village_id, TXS.c.month, TXS.c.kind, slot, func.sum(ENTRIES.c.amount))
               .join(ENTRIES, ENTRIES.c.transaction_id == TXS.c.id).join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
               .where(ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value)
               .group_by(TXS.c.village_id, TXS.c.month, TXS.c.kind, slot))
    session.execute(MONTHS.delete())
    done = session.execute(insert(MONTHS).from_select(["village_id", "month", "kind", "slot", "points"], grouped))
    return int(done.rowcount or 0)


def _month_totals_drift(session: Session) -> list[Violation]:
    """ledger_month_totals against the entries it summarises: every village, month and kind must agree."""
    book = {(int(v), int(m), k): int(t) for v, m, k, t in session.execute(
        select(TXS.c.village_id, TXS.c.month, TXS.c.kind, func.sum(ENTRIES.c.amount))
        .join(ENTRIES, ENTRIES.c.transaction_id == TXS.c.id).join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
        .where(ACCOUNTS.c.kind == AccountKind.HOUSEHOLD.value).group_by(TXS.c.village_id, TXS.c.month, TXS.c.kind))}
    kept = {(int(v), int(m), k): int(t) for v, m, k, t in session.execute(
        select(MONTHS.c.village_id, MONTHS.c.month, MONTHS.c.kind, func.sum(MONTHS.c.points))
        .group_by(MONTHS.c.village_id, MONTHS.c.month, MONTHS.c.kind))}
    out = []
    for key in sorted(set(book) | set(kept)):
        if book.get(key, 0) != kept.get(key, 0):
            v, m, k = key
            out.append(Violation("summary_mismatch", f"村 {v} 在 {m // 100} 年 {m % 100} 月的{TX_KIND_LABELS.get(k, k)}"
                                                     f"：汇总表记 {kept.get(key, 0)} 分，分录合计 {book.get(key, 0)} 分"))
    return out


def household_kind_totals(session: Session, village_id: int, from_month: int,
                          to_month: int) -> dict[int, dict[str, int]]:
    """Per household of the village and kind of transaction, the points moved on its account in the months."""
    out: dict[int, dict[str, int]] = {}
    for hid, kind, total in session.execute(
            select(ACCOUNTS.c.household_id, TXS.c.kind, func.sum(ENTRIES.c.amount))
            .join(ENTRIES, ENTRIES.c.account_id == ACCOUNTS.c.id)
            .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
            .where(ACCOUNTS.c.kind == "household", ACCOUNTS.c.village_id == village_id,
                   TXS.c.month.between(from_month, to_month))
            .group_by(ACCOUNTS.c.household_id, TXS.c.kind)):
        out.setdefault(int(hid), {})[kind] = int(total or 0)
    return out


def redemption_transactions(session: Session) -> dict[int, tuple[int, int, int | None]]:
    """Every redemption transaction: its store, the points it took and the household it took them from (for the
    store's proof of its books)."""
    rows = session.execute(select(TXS.c.id, ACCOUNTS.c.kind, ACCOUNTS.c.store_id, ACCOUNTS.c.household_id,
                                  ENTRIES.c.amount)
                           .join(ENTRIES, ENTRIES.c.transaction_id == TXS.c.id)
                           .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
                           .where(TXS.c.kind == TxKind.REDEMPTION.value))
    store: dict[int, tuple[int, int]] = {}
    household: dict[int, int] = {}
    for r in rows:
        if r.kind == "redeemed":
            store[r.id] = (int(r.store_id), int(r.amount))
        elif r.household_id is not None:
            household[r.id] = int(r.household_id)
    return {tx: (sid, points, household.get(tx)) for tx, (sid, points) in store.items()}


def transaction_count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(TXS)).scalar_one())
