"""Reading the ledger: one transaction with its entries, whether and by what it was reversed, where it lives (for
authorization), household and account balances, and a household's statement (a page of its chain of entries,
newest first, or all of it oldest first for the export)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.scope import Scope
from app.errors import NotFound
from app.ledger.models import TX_KIND_LABELS, LedgerTransaction
from app.ledger.service.accounts import parse_code
from app.ledger.service.common import ACCOUNTS, ENTRIES, TXS, _member_of
from app.ledger.service.records import EntryView, TxView
from app.ledger.service.writing import _existing_reversals
from app.org.models import Village


def get_transaction(session: Session, transaction_id: int) -> TxView:
    t = session.get(LedgerTransaction, transaction_id)
    if t is None:
        raise NotFound("交易不存在")
    rows = session.execute(select(ENTRIES.c.account_id, ACCOUNTS.c.code, ENTRIES.c.amount, ENTRIES.c.seq,
                                  ENTRIES.c.balance_after)
                           .join(ACCOUNTS, ACCOUNTS.c.id == ENTRIES.c.account_id)
                           .where(ENTRIES.c.transaction_id == transaction_id).order_by(ENTRIES.c.id)).all()
    return TxView(t.id, t.kind, t.village_id, t.month, t.memo, t.reference, t.actor_name, t.occurred_at,
                  t.idempotency_key, t.reverses_id,
                  tuple(EntryView(r.account_id, r.code, int(r.amount), r.seq,
                                  None if r.balance_after is None else int(r.balance_after)) for r in rows))


def reversal_of(session: Session, transaction_id: int) -> int | None:
    return session.execute(select(TXS.c.id).where(TXS.c.reverses_id == transaction_id)).scalar_one_or_none()


def reversed_among(session: Session, transaction_ids: Sequence[int]) -> dict[int, int]:
    """Of these transactions, those already reversed: {original id: reversal id}."""
    return _existing_reversals(session, transaction_ids)


def scope_of_transaction(session: Session, transaction_id: int) -> Scope | None:
    """Where a transaction lives, for authorization: its village, and the household it moved points for."""
    t = session.execute(select(TXS.c.village_id, Village.township_id).join(Village, Village.id == TXS.c.village_id)
                        .where(TXS.c.id == transaction_id)).first()
    if t is None:
        return None
    hid = session.execute(select(ACCOUNTS.c.household_id).join(ENTRIES, ENTRIES.c.account_id == ACCOUNTS.c.id)
                          .where(ENTRIES.c.transaction_id == transaction_id, ACCOUNTS.c.household_id.is_not(None))
                          .order_by(ENTRIES.c.id).limit(1)).scalar_one_or_none()
    return Scope(township_id=t.township_id, village_id=t.village_id, household_id=hid)


def balance(session: Session, household_id: int) -> int:
    b = session.execute(select(ACCOUNTS.c.balance).where(ACCOUNTS.c.household_id == household_id)).scalar()
    return int(b or 0)


def balances(session: Session, household_ids: Sequence[int]) -> dict[int, int]:
    out = dict.fromkeys(household_ids, 0)
    for where in _member_of(session, ACCOUNTS.c.household_id, household_ids):
        for hid, b in session.execute(select(ACCOUNTS.c.household_id, ACCOUNTS.c.balance).where(where)):
            out[hid] = int(b)
    return out


def account_balance(session: Session, code: str) -> int:
    """A kept balance is read from its row; a source or sink account's balance is the sum of its entries."""
    row = session.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.balance).where(ACCOUNTS.c.code == code)).first()
    if row is None:
        parse_code(code)
        return 0
    if row.balance is not None:
        return int(row.balance)
    total = session.execute(select(func.coalesce(func.sum(ENTRIES.c.amount), 0))
                            .where(ENTRIES.c.account_id == row.id)).scalar_one()
    return int(total)


@dataclass(frozen=True)
class StatementLine:
    seq: int
    transaction_id: int
    kind: str
    memo: str
    reference: str | None
    actor_name: str
    occurred_at: datetime
    amount: int
    balance_after: int
    reverses_id: int | None

    @property
    def kind_label(self) -> str:
        return TX_KIND_LABELS.get(self.kind, self.kind)


@dataclass(frozen=True)
class Statement:
    household_id: int
    balance: int
    total: int  # lines in all
    offset: int
    limit: int
    lines: list[StatementLine]


def statement(session: Session, household_id: int, *, offset: int = 0, limit: int = 20) -> Statement:
    """A household's lines, newest first, with the balance after each. A page is an index range on the account's
    chain (seq), so page 1 of ten years of history costs the same as page 1 of one month."""
    acc = session.execute(select(ACCOUNTS.c.id, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count)
                          .where(ACCOUNTS.c.household_id == household_id)).first()
    if acc is None:
        return Statement(household_id, 0, 0, offset, limit, [])
    total = int(acc.entry_count)
    hi = total - offset
    lo = max(hi - limit + 1, 1)
    lines: list[StatementLine] = []
    if hi >= 1:
        rows = session.execute(
            select(ENTRIES.c.seq, ENTRIES.c.amount, ENTRIES.c.balance_after, TXS.c.id, TXS.c.kind, TXS.c.memo,
                   TXS.c.reference, TXS.c.actor_name, TXS.c.occurred_at, TXS.c.reverses_id)
            .join(TXS, TXS.c.id == ENTRIES.c.transaction_id)
            .where(ENTRIES.c.account_id == acc.id, ENTRIES.c.seq.between(lo, hi))
            .order_by(ENTRIES.c.seq.desc())).all()
        lines = [StatementLine(r.seq, r.id, r.kind, r.memo, r.reference, r.actor_name, r.occurred_at, int(r.amount),
                               int(r.balance_after), r.reverses_id) for r in rows]
    return Statement(household_id, int(acc.balance), total, offset, limit, lines)


def statement_all(session: Session, household_id: int) -> Statement:
    """Every line, oldest first (for the .xlsx export)."""
    st = statement(session, household_id, offset=0, limit=10**9)
    return Statement(st.household_id, st.balance, st.total, 0, st.total, list(reversed(st.lines)))
