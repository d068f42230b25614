"""The ledger service's shared ground: the size limits and the tables as SQLAlchemy Core objects (ACCOUNTS, TXS,
ENTRIES, MONTHS), the two errors a posting raises about households (UnknownHousehold, InsufficientPoints), and the
small helpers every other part of the service uses: the accounting month of a moment, cutting a list into pieces,
`column IN values` that scales on either database, and clipping a memo to its limit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.core.clock import to_local
from app.errors import AppError, NotFound
from app.ledger.models import LedgerAccount, LedgerEntry, LedgerMonthTotal, LedgerTransaction

MEMO_MAX = 300
NOT_SERVED = "该户不在本超市服务的村（请核对户号），不能在这里使用积分"
CHUNK = 500  # rows per statement where a list is cut into pieces
ACCOUNTS = LedgerAccount.__table__
TXS = LedgerTransaction.__table__
ENTRIES = LedgerEntry.__table__
MONTHS = LedgerMonthTotal.__table__
SLOTS = 8  # rows per village, month and kind in ledger_month_totals (by household account id)


class UnknownHousehold(NotFound):
    pass


class InsufficientPoints(AppError):
    status = 409
    code = "insufficient_points"


def month_of(ts: datetime) -> int:
    local = to_local(ts)
    assert local is not None
    return local.year * 100 + local.month


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i: i + size]


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _member_of(session: Session, column: Any, values: Sequence[Any]) -> Iterable[Any]:
    """`column IN values`, chunked: on PostgreSQL one array parameter per 20,000 values (`= ANY(:array)`: one
    prepared plan that uses the index whatever the table held when it was first prepared); on SQLite IN lists."""
    items = list(values)
    if _is_pg(session):
        kind = String() if items and isinstance(items[0], str) else BigInteger()
        for part in _chunks(items, 20_000):
            yield column == any_(bindparam("members", list(part), type_=ARRAY(kind)))
    else:
        for part in _chunks(items, 900):
            yield column.in_(list(part))


def _clip_memo(memo: str) -> str:
    return memo if len(memo) <= MEMO_MAX else memo[: MEMO_MAX - 1] + "…"
