"""Engine, sessions and the one-transaction-per-request rule (DESIGN §4).

SQLite: WAL, synchronous=FULL, busy_timeout, foreign keys; write transactions start with BEGIN IMMEDIATE and
are serialised by one lock in the process; read transactions are deferred and run beside them (WAL).
PostgreSQL: psycopg 3 with a connection pool.

Services never commit: they `flush()`. Whoever opened the transaction (the request's session dependency, a CLI
command, a test) commits it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session
from sqlmodel import SQLModel, create_engine

metadata: MetaData = SQLModel.metadata

WRITE_OPTION = "zf_write"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to us: BEGIN is emitted in the "begin" event below.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_refuse_nul(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                       executemany: bool) -> None:
    """PostgreSQL refuses a NUL in any text; SQLite would store it. Refused the same way here (a DataError naming
    0x00, which the web layer answers as a 422), whatever path the text came by: forms and JSON are checked on the
    way in (app.web.errors.refuse_bad_characters), this is the one place that holds for everything else."""
    # one row (a tuple or dict), or many (a list of them; "insertmanyvalues" batches pass one flat tuple)
    for row in (parameters if isinstance(parameters, list | tuple) else (parameters,)):
        values = row.values() if isinstance(row, dict) else row if isinstance(row, list | tuple) else (row,)
        for value in values:
            if type(value) is str and "\x00" in value:
                raise sqlite3.DataError("invalid byte sequence: 0x00 (text may not hold NUL)")


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


POOL_SIZE = 10  # connections a process keeps open
POOL_CAPACITY = 20  # the most it opens at once (the app admits at most this many requests at a time)


def build_engine(url: str, *, pool_size: int = POOL_SIZE) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 15},
                               pool_size=POOL_SIZE, max_overflow=POOL_CAPACITY - POOL_SIZE)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "before_cursor_execute", _sqlite_refuse_nul)
        return engine
    if u.get_backend_name() == "postgresql" and u.drivername in ("postgresql", "postgres"):
        url = u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # A statement waits at most LOCK_TIMEOUT_MS for a lock, and a transaction left idle is ended after IDLE_TXN_MS:
    # whatever goes wrong (a request stuck while holding locks, a lost client), the others are refused after a
    # bounded wait (503, "try again") instead of queueing behind it for ever.
    options = f"-c lock_timeout={LOCK_TIMEOUT_MS} -c idle_in_transaction_session_timeout={IDLE_TXN_MS}"
    return create_engine(url, pool_size=pool_size, max_overflow=POOL_CAPACITY - pool_size, pool_pre_ping=True,
                         connect_args={"options": options})


LOCK_TIMEOUT_MS = 15_000
IDLE_TXN_MS = 300_000


class FairLock:
    """A lock handed to waiters in the order they came (first come, first served). threading.Lock lets a thread that
    just released it take it again before the others wake, so under load some writers wait far longer than the
    rest; with one SQLite writer that shows as a long tail of slow requests."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locked = False
        self._waiters: deque[threading.Event] = deque()

    def acquire(self) -> None:
        with self._mutex:
            if not self._locked:
                self._locked = True
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # the holder hands the lock over directly: it stays locked in between

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._locked = False


class Database:
    """The engine plus the write discipline. One per application (or CLI command)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = build_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_engine = self.engine.execution_options(**{WRITE_OPTION: True})
        # SQLite has one writer; waiting here is cheaper and fairer than spinning on SQLITE_BUSY.
        self._write_lock = FairLock() if self.is_sqlite else None

    def read_session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session whose transaction is a write transaction (BEGIN IMMEDIATE, one writer, on SQLite).

        The caller commits; leaving the block closes the session, rolling back anything uncommitted.
        """
        if self._write_lock is not None:
            self._write_lock.acquire()
        try:
            with Session(self._write_engine, expire_on_commit=False) as session:
                yield session
        finally:
            if self._write_lock is not None:
                self._write_lock.release()

    @contextmanager
    def write_txn(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends normally, rolled back on an exception."""
        with self.write_session() as session:
            yield session
            session.commit()

    @contextmanager
    def read_txn(self) -> Iterator[Session]:
        with self.read_session() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
