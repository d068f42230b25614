"""Databases for tests: which server the suite runs on (PG_URL), emptying a PostgreSQL database, copying a SQLite
one, an empty database of a test's own, and the difference between a database's schema and the models'."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url

import app.models  # noqa: F401  (every table in the metadata, for schema_diff)
from app.db import build_engine, metadata

PG_URL = os.environ.get("ZF_TEST_DATABASE_URL")


def truncate_all(url: str) -> None:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        tables = [r[0] for r in conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"))]
        if tables:
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


def copy_sqlite(src: str | Path, dst: str | Path) -> None:
    """A consistent copy of a SQLite database (the online backup API), over whatever `dst` held."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


@contextmanager
def empty_database(tmp_path: Path, prefix: str) -> Iterator[str]:
    """An empty database of its own (no tables): a SQLite file under tmp_path, or on PostgreSQL (ZF_TEST_DATABASE_URL)
    a database `<prefix>_<pid>` created for the test and dropped after it."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / (prefix + '.db')}"
        return
    base = make_url(PG_URL).set(drivername="postgresql+psycopg")
    name = f"{prefix}_{os.getpid()}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def schema_diff(url: str) -> list[object]:
    """What Alembic's autogenerate finds between the database at `url` and the models (empty: the same schema)."""
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
            return list(compare_metadata(ctx, metadata))
    finally:
        engine.dispose()


GUARD_TRIGGERS_SQLITE = ("audit_events_no_update", "audit_events_no_delete", "notices_no_update", "notices_no_delete")


@contextmanager
def attacker_copy(url: str, tmp_path: Path) -> Iterator[str]:
    """What someone holding the database file works on: on SQLite a copy of the file with the append-only triggers
    of the audit log and the notices dropped; on PostgreSQL the test's own database (the next test starts from
    TRUNCATE), tampered through `tampering` with the triggers skipped."""
    if not url.startswith("sqlite"):
        yield url
        return
    target = tmp_path / "stolen.db"
    copy_sqlite(make_url(url).database or "", target)
    plain = create_engine(f"sqlite:///{target}")
    try:
        with plain.begin() as conn:
            for trigger in GUARD_TRIGGERS_SQLITE:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    finally:
        plain.dispose()
    yield f"sqlite:///{target}"


@contextmanager
def tampering(url: str) -> Iterator[Connection]:
    """A connection to an attacker's copy on which nothing stops an UPDATE or DELETE (PostgreSQL: the triggers are
    skipped for this transaction, as a superuser can)."""
    engine = create_engine(url) if url.startswith("sqlite") else build_engine(url)
    try:
        with engine.begin() as conn:
            if not url.startswith("sqlite"):
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            yield conn
    finally:
        engine.dispose()
