"""The set-based writes under the ledger's write path: transaction rows with their ids taken up front (or
INSERT … RETURNING for one), any rows of one shape straight to the driver (COPY or a multi-row INSERT on PostgreSQL,
executemany on SQLite), the upsert of ledger_month_totals and the one UPDATE of the kept balances. `_KeyRace` is
raised here when another transaction committed one of the batch's idempotency keys first."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.ledger.service.common import MONTHS, SLOTS, TXS, _is_pg


class _KeyRace(Exception):
    """PostgreSQL: another transaction committed a posting with one of this batch's idempotency keys after this one
    looked for them. The unique index made this insert wait for that transaction, so planning the batch again (the
    rows it locked are still ours) now sees the key, and answers with the first posting or a 409."""


COPY_FROM = 1_000  # PostgreSQL: from this many rows on, COPY instead of a multi-row INSERT


def _insert_transactions(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert transaction rows, returning their ids in order. One row: INSERT … RETURNING. Many: the ids are taken
    first (PostgreSQL: from the sequence; SQLite: after max(id), safe because the write transaction is the only
    writer), so the rows go in as one executemany or COPY instead of one INSERT … RETURNING per row."""
    keyed = any(r["idempotency_key"] for r in rows)
    if not _is_pg(session) or not keyed:  # SQLite: the only writer, a key found absent stays absent
        if len(rows) == 1:
            return [int(session.execute(insert(TXS).returning(TXS.c.id), rows[0]).scalar_one())]
        return _insert_numbered(session, rows)
    if len(rows) == 1:  # a key committed meanwhile by another transaction: nothing written, plan again
        tx_id = session.execute(_INSERT_UNLESS_KEY_TAKEN, rows[0]).scalar_one_or_none()
        if tx_id is None:
            raise _KeyRace()
        return [int(tx_id)]
    try:  # a savepoint per batch: a key another transaction committed meanwhile undoes only this insert
        with session.begin_nested():
            return _insert_numbered(session, rows)
    except (IntegrityError, psycopg.errors.UniqueViolation) as e:
        orig = getattr(e, "orig", e)
        if getattr(getattr(orig, "diag", None), "constraint_name", None) != _KEY_CONSTRAINT:
            raise
        raise _KeyRace() from None


_KEY_CONSTRAINT = "uq_ledger_transactions_idempotency_key"
_INSERT_UNLESS_KEY_TAKEN = (pg_insert(TXS).on_conflict_do_nothing(index_elements=[TXS.c.idempotency_key])
                            .returning(TXS.c.id))


def _insert_numbered(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    if _is_pg(session):
        ids = sorted(int(i) for i in session.execute(
            text("SELECT nextval(pg_get_serial_sequence('ledger_transactions', 'id')) FROM generate_series(1, :n)"),
            {"n": len(rows)}).scalars())
    else:
        start = int(session.execute(select(func.coalesce(func.max(TXS.c.id), 0))).scalar_one())
        ids = list(range(start + 1, start + 1 + len(rows)))
    for row, tx_id in zip(rows, ids, strict=True):
        row["id"] = tx_id
    _insert_rows(session, TXS, rows)
    return ids


def _insert_rows(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Many rows of one shape, straight to the driver: COPY on PostgreSQL when there are many, a multi-row INSERT
    when few; executemany on SQLite (timestamps written as SQLAlchemy writes them: UTC, `YYYY-MM-DD HH:MM:SS.ffffff`)."""
    if not rows:
        return
    columns = list(rows[0])
    if _is_pg(session):
        if len(rows) < COPY_FROM:
            session.execute(insert(table), rows)
            return
        raw: Any = session.connection().connection.dbapi_connection  # psycopg 3, in this transaction
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        return
    stamps = {c for c in columns if isinstance(rows[0][c], datetime)}
    for c in stamps:
        text_of = {v: v.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f") for v in {r[c] for r in rows}}
        rows = [{**r, c: text_of[r[c]]} for r in rows]
    sql = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    session.connection().exec_driver_sql(sql, list(map(itemgetter(*columns), rows)))


def _add_month_totals(session: Session, month: int, legs: list[tuple[int, str, int, int]]) -> None:
    """Add the household legs (village, kind, account, amount) to ledger_month_totals, in the posting's transaction:
    one upsert per village, kind and slot."""
    sums: dict[tuple[int, str, int], int] = defaultdict(int)
    for village_id, kind, account_id, amount in legs:
        sums[(village_id, kind, account_id % SLOTS)] += amount
    if not sums:
        return
    rows = [{"village_id": v, "month": month, "kind": k, "slot": slot, "points": pts}
            for (v, k, slot), pts in sorted(sums.items())]  # in key order: two batches lock rows in the same order
    session.execute(_MONTH_UPSERT["postgresql" if _is_pg(session) else "sqlite"], rows)


def _month_upsert(insert_: Any) -> Any:
    stmt = insert_(MONTHS)
    return stmt.on_conflict_do_update(index_elements=["village_id", "month", "kind", "slot"],
                                      set_={"points": MONTHS.c.points + stmt.excluded.points})


_MONTH_UPSERT = {"postgresql": _month_upsert(pg_insert), "sqlite": _month_upsert(sqlite_insert)}  # built once


def _write_balances(session: Session, state: dict[int, list[int]]) -> None:
    if not state:
        return
    if _is_pg(session):
        items = sorted(state.items())
        session.execute(
            text("UPDATE ledger_accounts AS a SET balance = v.balance, entry_count = v.entry_count "
                 "FROM unnest(CAST(:ids AS integer[]), CAST(:balances AS bigint[]), CAST(:counts AS integer[])) "
                 "AS v(id, balance, entry_count) WHERE a.id = v.id"),
            {"ids": [k for k, _ in items], "balances": [v[0] for _, v in items], "counts": [v[1] for _, v in items]})
        return
    session.connection().exec_driver_sql("UPDATE ledger_accounts SET balance = ?, entry_count = ? WHERE id = ?",
                                         [(v[0], v[1], k) for k, v in state.items()])
