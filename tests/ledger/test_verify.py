"""`verify` proves the book: each test forges one kind of damage behind the service's back, in a copy of a healthy
ledger, and `verify` must name exactly that damage and where it is. The append-only guards that make such forgery
hard are tested too: the database itself refuses UPDATE and DELETE on transactions and entries.

The forgery needs the guards out of the way: on SQLite the triggers are dropped in the copy (and for a second
reversal the table is rebuilt without its UNIQUE (reverses_id), which SQLite cannot drop); on PostgreSQL the copy is
made with CREATE DATABASE … TEMPLATE, triggers are skipped with session_replication_role = replica and the unique
constraint is dropped.
"""

from __future__ import annotations

import inspect
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError

from app.db import Database, build_engine
from app.ledger import service
from app.ledger.service import Violation
from tests.support.db import PG_URL
from tests.support.factories import SYSTEM, make_household, make_store, make_village

GUARD_TRIGGERS = ("ledger_entries_no_update", "ledger_entries_no_delete", "ledger_transactions_no_update",
                  "ledger_transactions_no_delete")


@dataclass(frozen=True)
class Book:
    """A small healthy ledger and the ids the tests point at."""

    village_id: int
    h1: int  # account ids of the two households
    h2: int
    store: int  # store:<id>:redeemed
    issue: int  # village:<id>:issue
    adjust: int
    award_h2: int  # h2's award of 80, never reversed
    spend_reversed: int  # h1's spend of 30 …
    reversal: int  # … and its reversal


def build_book(db: Database) -> Book:
    with db.write_txn() as s:
        v = make_village(s)
        store_id: int = make_store(s, v).id  # type: ignore[assignment]
        hid1: int = make_household(s, v).id  # type: ignore[assignment]
        hid2: int = make_household(s, v).id  # type: ignore[assignment]
    with db.write_txn() as s:
        service.award(s, SYSTEM, household_id=hid1, points=100, memo="打扫公共卫生")
        service.award(s, SYSTEM, household_id=hid1, points=50, memo="参加义务劳动")
        award_h2 = service.award(s, SYSTEM, household_id=hid2, points=80, memo="邻里互助").tx
    with db.write_txn() as s:
        spend = service.spend(s, SYSTEM, household_id=hid1, store_id=store_id, points=30, memo="兑换洗衣粉").tx
        service.spend(s, SYSTEM, household_id=hid1, store_id=store_id, points=20, memo="兑换食用油")
    assert spend is not None and award_h2 is not None
    with db.write_txn() as s:
        reversal = service.reverse(s, SYSTEM, spend.id, reason="收银员按错了", voiding_redemption=True).tx
        service.adjust(s, SYSTEM, household_id=hid2, amount=-10, reason="上月多记了 10 分")
        service.penalize(s, SYSTEM, household_id=hid2, points=5, memo="乱倒垃圾")
    assert reversal is not None
    with db.read_session() as s:
        assert service.balances(s, [hid1, hid2]) == {hid1: 130, hid2: 65}
        assert service.verify(s) == []
        ids: dict[str, int] = {code: id_ for code, id_ in s.execute(text("SELECT code, id FROM ledger_accounts"))}
    return Book(v.id, ids[service.household_account(hid1)], ids[service.household_account(hid2)],  # type: ignore[arg-type]
                ids[service.redeemed_account(store_id)], ids[service.issue_account(v.id)],  # type: ignore[arg-type]
                ids[service.adjust_account(v.id)], award_h2.id, spend.id, reversal.id)  # type: ignore[arg-type]


@pytest.fixture
def copy_db(db: Database, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Copies of the test's database, to be damaged while the original stays as it was."""
    made: list[str] = []

    def copy() -> str:
        n = len(made) + 1
        if db.is_sqlite:
            target = tmp_path / f"copy{n}.db"
            src, dst = sqlite3.connect(str(db.engine.url.database)), sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            made.append(str(target))
            return f"sqlite:///{target}"
        assert PG_URL
        db.dispose()  # a template database must have no other connections
        source = make_url(db.url).database
        name = f"{source}_copy{n}"
        admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": source})
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
        finally:
            admin.dispose()
        made.append(name)
        return make_url(db.url).set(database=name).render_as_string(hide_password=False)

    yield copy
    if PG_URL and made:
        admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for name in made:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def _rebuild_sqlite_transactions_without_unique_reversal(conn: Connection) -> None:
    """SQLite cannot drop the index behind a UNIQUE constraint: rebuild the table without it (the documented
    create-copy-drop-rename procedure; foreign keys are off on this plain connection)."""
    sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ledger_transactions'")
                       ).scalar_one()
    new_sql, n = re.subn(r",\s*CONSTRAINT uq_ledger_transactions_reverses_id UNIQUE \(reverses_id\)", "", sql)
    assert n == 1, sql
    conn.exec_driver_sql(new_sql.replace("CREATE TABLE ledger_transactions", "CREATE TABLE ledger_transactions_new", 1))
    conn.exec_driver_sql("INSERT INTO ledger_transactions_new SELECT * FROM ledger_transactions")
    conn.exec_driver_sql("DROP TABLE ledger_transactions")
    conn.exec_driver_sql("ALTER TABLE ledger_transactions_new RENAME TO ledger_transactions")


@contextmanager
def tampering(url: str, *, allow_second_reversal: bool = False) -> Iterator[Connection]:
    """A raw connection to a copy, with the append-only guards (and, if asked, the one-reversal rule) out of the way."""
    sqlite = url.startswith("sqlite")
    engine = create_engine(url) if sqlite else build_engine(url)  # plain SQLite: no foreign keys, no pragmas
    try:
        with engine.begin() as conn:
            if sqlite:
                for trigger in GUARD_TRIGGERS:
                    conn.exec_driver_sql(f"DROP TRIGGER {trigger}")
                if allow_second_reversal:
                    _rebuild_sqlite_transactions_without_unique_reversal(conn)
            else:
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no triggers fire
                if allow_second_reversal:
                    conn.exec_driver_sql("ALTER TABLE ledger_transactions DROP CONSTRAINT uq_ledger_transactions_reverses_id")
            yield conn
    finally:
        engine.dispose()


def forge(conn: Connection, kind: str, legs: dict[int, int] | list[tuple[int, int]], *, like: int,
          reverses: int | None = None) -> int:
    """Write a transaction as the service would (each kept account's chain, balance and count carried on), only
    without any of its checks. `like` lends its village, month, actor and time."""
    tx_id: int = conn.execute(text(
        "INSERT INTO ledger_transactions (kind, village_id, month, memo, actor_name, occurred_at, reverses_id) "
        "SELECT :kind, village_id, month, '手工改账', actor_name, occurred_at, :rev FROM ledger_transactions "
        "WHERE id = :like RETURNING id"), {"kind": kind, "rev": reverses, "like": like}).scalar_one()
    for account_id, amount in legs.items() if isinstance(legs, dict) else legs:
        balance, count = conn.execute(text("SELECT balance, entry_count FROM ledger_accounts WHERE id = :id"),
                                      {"id": account_id}).one()
        seq = after = None
        if balance is not None:
            seq, after = count + 1, balance + amount
            conn.execute(text("UPDATE ledger_accounts SET balance = :b, entry_count = :n WHERE id = :id"),
                         {"b": after, "n": seq, "id": account_id})
        conn.execute(text("INSERT INTO ledger_entries (transaction_id, account_id, amount, seq, balance_after) "
                          "VALUES (:t, :a, :amount, :seq, :after)"),
                     {"t": tx_id, "a": account_id, "amount": amount, "seq": seq, "after": after})
        if balance is not None:  # a household's leg also goes into the month's totals
            conn.execute(text(
                "INSERT INTO ledger_month_totals (village_id, month, kind, slot, points) "
                "SELECT village_id, month, kind, :slot, :amount FROM ledger_transactions WHERE id = :t "
                "ON CONFLICT (village_id, month, kind, slot) DO UPDATE SET points = ledger_month_totals.points + "
                "excluded.points"), {"slot": account_id % service.SLOTS, "amount": amount, "t": tx_id})
    return tx_id


def last_entry(conn: Connection, account_id: int) -> tuple[int, int]:
    """(entry id, transaction id) of the newest entry on a kept account."""
    row = conn.execute(text("SELECT id, transaction_id FROM ledger_entries WHERE account_id = :a "
                            "ORDER BY seq DESC LIMIT 1"), {"a": account_id}).one()
    return row[0], row[1]


# ---- each damage: what it does to the copy, and (kind, transaction_id, account_id) of the one violation expected ----

Expected = tuple[str, int | None, int | None]


def unbalanced(conn: Connection, b: Book) -> Expected:
    """One leg of an award changed: 80 went in, 79 came out."""
    conn.execute(text("UPDATE ledger_entries SET amount = amount + 1 WHERE transaction_id = :t AND account_id = :a"),
                 {"t": b.award_h2, "a": b.issue})
    return "unbalanced", b.award_h2, None


def empty(conn: Connection, b: Book) -> Expected:
    """A transaction row with no entries at all."""
    tx_id = conn.execute(text(
        "INSERT INTO ledger_transactions (kind, village_id, month, memo, actor_name, occurred_at) "
        "SELECT 'award', village_id, month, '凭空一笔', actor_name, occurred_at FROM ledger_transactions "
        "WHERE id = :like RETURNING id"), {"like": b.award_h2}).scalar_one()
    return "empty", tx_id, None


def balance_raised(conn: Connection, b: Book) -> Expected:
    """The kept balance edited (ledger_accounts is not append-only: it is what verify is for)."""
    conn.execute(text("UPDATE ledger_accounts SET balance = balance + 500 WHERE id = :a"), {"a": b.h2})
    return "balance_mismatch", None, b.h2


def entry_count_changed(conn: Connection, b: Book) -> Expected:
    conn.execute(text("UPDATE ledger_accounts SET entry_count = entry_count - 1 WHERE id = :a"), {"a": b.h1})
    return "balance_mismatch", None, b.h1


def seq_skipped(conn: Connection, b: Book) -> Expected:
    """The newest entry of a chain renumbered: 1, 2, 4."""
    entry_id, tx_id = last_entry(conn, b.h2)
    conn.execute(text("UPDATE ledger_entries SET seq = seq + 1 WHERE id = :e"), {"e": entry_id})
    return "chain_gap", tx_id, b.h2


def seq_removed(conn: Connection, b: Book) -> Expected:
    """An entry on a kept account taken out of its chain (seq and balance_after both NULL pass the CHECK)."""
    entry_id, tx_id = last_entry(conn, b.h1)
    conn.execute(text("UPDATE ledger_entries SET seq = NULL, balance_after = NULL WHERE id = :e"), {"e": entry_id})
    return "chain_gap", tx_id, b.h1


def balance_after_edited(conn: Connection, b: Book) -> Expected:
    """The balance after an entry no longer follows from the one before it."""
    entry_id, tx_id = last_entry(conn, b.h2)
    conn.execute(text("UPDATE ledger_entries SET balance_after = balance_after + 7 WHERE id = :e"), {"e": entry_id})
    return "chain_break", tx_id, b.h2


def overdrawn(conn: Connection, b: Book) -> Expected:
    """A redemption of 75 from a household that has 65, otherwise written exactly as the service writes."""
    tx_id = forge(conn, "redemption", {b.h2: -75, b.store: 75}, like=b.award_h2)
    return "overdraft", tx_id, b.h2


def reversed_again(conn: Connection, b: Book) -> Expected:
    """A second, otherwise perfect, reversal of the already reversed spend."""
    forge(conn, "reversal", {b.h1: 30, b.store: -30}, like=b.spend_reversed, reverses=b.spend_reversed)
    return "reversed_twice", b.spend_reversed, None


def reversal_short(conn: Connection, b: Book) -> Expected:
    """A reversal of the award of 80 that takes back only 50."""
    tx_id = forge(conn, "reversal", {b.h2: -50, b.issue: 50}, like=b.award_h2, reverses=b.award_h2)
    return "reversal_mismatch", tx_id, None


def reversal_extra_leg(conn: Connection, b: Book) -> Expected:
    """A balanced reversal of the award with one leg too many (80 back, but 1 of it to the adjust account)."""
    tx_id = forge(conn, "reversal", {b.h2: -60, b.issue: 59, b.adjust: 1}, like=b.award_h2, reverses=b.award_h2)
    return "reversal_mismatch", tx_id, None


def reversal_doubled(conn: Connection, b: Book) -> Expected:
    """A reversal of the award that carries its two legs twice: every leg matches one of the original, yet it
    takes back 160 points."""
    tx_id = forge(conn, "reversal", [(b.h2, -80), (b.issue, 80), (b.h2, -80), (b.issue, 80)], like=b.award_h2,
                  reverses=b.award_h2)
    return "reversal_mismatch", tx_id, None


def reversal_unlinked(conn: Connection, b: Book) -> Expected:
    """A reversal that no longer says what it reverses."""
    tx_id = conn.execute(text("SELECT id FROM ledger_transactions WHERE reverses_id = :r"),
                         {"r": b.spend_reversed}).scalar_one()
    conn.execute(text("UPDATE ledger_transactions SET reverses_id = NULL WHERE id = :t"), {"t": tx_id})
    return "reversal_mismatch", tx_id, None


def reversal_of_a_reversal(conn: Connection, b: Book) -> Expected:
    """A perfect negation of a reversal, posted as its reversal (the service refuses to reverse a reversal)."""
    rev_id = conn.execute(text("SELECT id FROM ledger_transactions WHERE reverses_id = :r"),
                          {"r": b.spend_reversed}).scalar_one()
    tx_id = forge(conn, "reversal", {b.h1: -30, b.store: 30}, like=b.spend_reversed, reverses=rev_id)
    return "reversal_mismatch", tx_id, None


def summary_edited(conn: Connection, b: Book) -> Expected:
    """The month's totals no longer agree with the entries: the dashboards would show points nobody was given."""
    conn.execute(text("UPDATE ledger_month_totals SET points = points + 5 WHERE kind = 'award' AND slot = "
                      "(SELECT min(slot) FROM ledger_month_totals WHERE kind = 'award')"))
    return "summary_mismatch", None, None


KINDS: dict[Callable[[Connection, Book], Expected], str] = {
    unbalanced: "unbalanced", empty: "empty", balance_raised: "balance_mismatch", entry_count_changed: "balance_mismatch",
    seq_skipped: "chain_gap", seq_removed: "chain_gap", balance_after_edited: "chain_break", overdrawn: "overdraft",
    reversed_again: "reversed_twice", reversal_short: "reversal_mismatch", reversal_extra_leg: "reversal_mismatch",
    reversal_doubled: "reversal_mismatch", reversal_unlinked: "reversal_mismatch",
    reversal_of_a_reversal: "reversal_mismatch", summary_edited: "summary_mismatch",
}
DAMAGE = list(KINDS)


@pytest.mark.parametrize("damage", DAMAGE, ids=[d.__name__ for d in DAMAGE])
def test_verify_names_each_kind_of_damage(db: Database, copy_db: Callable[[], str],
                                          damage: Callable[[Connection, Book], Expected]) -> None:
    book = build_book(db)
    url = copy_db()
    with tampering(url, allow_second_reversal=damage is reversed_again) as conn:
        expected = damage(conn, book)
    assert expected[0] == KINDS[damage]
    copy = Database(url)
    try:
        with copy.read_session() as s:
            found: list[Violation] = service.verify(s)
    finally:
        copy.dispose()
    assert [(v.kind, v.transaction_id, v.account_id) for v in found] == [expected], found
    assert all(v.message for v in found)
    with db.read_session() as s:  # the original is untouched
        assert service.verify(s) == []


def test_every_kind_of_violation_verify_can_report_is_forged_above() -> None:
    source = inspect.getsource(service.verify) + inspect.getsource(service._month_totals_drift)
    reported = set(re.findall(r'Violation\("([a-z_]+)"', source))
    assert reported == set(KINDS.values())


# ---- the guards themselves ------------------------------------------------------------------------------------------

GUARDED = {
    ("ledger_transactions", "update"): "UPDATE ledger_transactions SET memo = '改了' WHERE id = :t",
    ("ledger_transactions", "delete"): "DELETE FROM ledger_transactions WHERE id = :t",
    ("ledger_entries", "update"): "UPDATE ledger_entries SET amount = amount * 2 WHERE transaction_id = :t",
    ("ledger_entries", "delete"): "DELETE FROM ledger_entries WHERE transaction_id = :t",
}


@pytest.mark.parametrize(("table", "verb"), list(GUARDED), ids=[f"{t}-{v}" for t, v in GUARDED])
def test_transactions_and_entries_are_append_only(db: Database, table: str, verb: str) -> None:
    book = build_book(db)
    with db.read_session() as s:
        before = s.execute(text(f"SELECT * FROM {table} ORDER BY id")).all()
    with pytest.raises(DBAPIError, match=f"{table} is append-only"), db.write_txn() as s:
        s.execute(text(GUARDED[table, verb]), {"t": book.award_h2})
    with db.read_session() as s:
        assert s.execute(text(f"SELECT * FROM {table} ORDER BY id")).all() == before
        assert service.verify(s) == []
