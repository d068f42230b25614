"""The database discipline of DESIGN §4: SQLite pragmas, write transactions, one transaction per request."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, text

from app.db import Database
from app.org.models import Township
from tests.support.db import PG_URL
from tests.support.web import login

sqlite_only = pytest.mark.skipif(bool(PG_URL), reason="SQLite engine settings; the PostgreSQL run covers psycopg")


@sqlite_only
def test_sqlite_pragmas(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


@sqlite_only
def test_sqlite_write_transactions_take_the_write_lock_at_begin(db: Database) -> None:
    """BEGIN IMMEDIATE: a write session holds the database's write lock before its first statement, so a
    transaction never has to upgrade from read to write (the cause of SQLITE_BUSY under load)."""
    import sqlite3

    path = db.engine.url.database
    with db.write_session() as session:
        session.execute(text("SELECT 1"))
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
        session.rollback()


def test_write_sessions_are_serialised_in_process(db: Database) -> None:
    """Two threads adding townships at once both succeed (no 'database is locked'), one after the other."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                with db.write_txn() as s:
                    s.add(Township(county_id=1, code=f"341000{n}{i:02d}", name=f"镇{n}{i}"))
                    s.flush()
                    time.sleep(0.002)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in (3, 4, 5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(Township)).scalar_one() == 20


def test_write_is_committed_before_the_response_is_sent(client, demo, db: Database) -> None:
    """The 201 arrives only after the commit: another connection sees the row the moment the response is read."""
    csrf = login(client, "admin")
    r = client.post("/api/v1/townships", json={"code": "341000199", "name": "测试镇"},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 201, r.text
    other = Database(db.url)
    try:
        with other.read_txn() as s:
            assert s.execute(select(Township).where(Township.code == "341000199")).scalar_one().name == "测试镇"
    finally:
        other.dispose()


def test_a_failing_request_rolls_back_everything(client, demo, db: Database) -> None:
    """A service error after a flush leaves no trace: the whole request is one transaction."""
    csrf = login(client, "admin")
    with db.read_txn() as s:
        before = s.execute(select(func.count()).select_from(Township)).scalar_one()
    r = client.put("/api/v1/townships/1/active", json={"active": False}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 409  # it still has active villages
    assert "请先停用" in r.json()["error"]["message"]
    with db.read_txn() as s:
        assert s.execute(select(func.count()).select_from(Township)).scalar_one() == before
        assert s.get(Township, 1).active is True  # type: ignore[union-attr]


@pytest.mark.skipif(not PG_URL, reason="PostgreSQL engine")
def test_postgres_uses_psycopg3(db: Database) -> None:
    assert db.engine.dialect.driver == "psycopg"
