"""Test fixtures: every test gets its own clean database built by Alembic.

SQLite (default): the schema is migrated once per worker into a template file, copied for each test.
PostgreSQL (ZF_TEST_DATABASE_URL set): one database per xdist worker, migrated once; each test starts from
TRUNCATE of every table (the append-only triggers refuse DELETE, not TRUNCATE).

Only fixtures live here; what tests import (logging in, the demo passwords, databases, factories …) is in
tests/support/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

import app.models
from app import migrate
from app.auth import security
from app.config import Settings
from app.db import Database, build_engine, metadata
from app.main import create_app
from tests.support.db import PG_URL, copy_sqlite, truncate_all
from tests.support.web import DEMO_PASSWORDS, TEST_SECRET

# Cheap Argon2 for the suite (stored hashes carry their parameters; production keeps OWASP's minimum).
security.set_hash_cost(memory_kib=1024, time_cost=1)


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


@pytest.fixture(scope="session")
def _pg_worker_url() -> Iterator[str | None]:
    if not PG_URL:
        yield None
        return
    base = make_url(PG_URL)
    # One database per run and worker, so that two runs against the same server never drop each other's.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8] or f"p{os.getpid()}"
    name = f"zf_test_{run}_{_worker()}"
    admin = create_engine(base.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = base.set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    yield url
    admin = create_engine(base.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if "demo" in request.fixturenames:  # the demo county, loaded once per worker and copied (see below)
        return str(request.getfixturevalue("demo_db_url"))
    if PG_URL:
        url: str = request.getfixturevalue("_pg_worker_url")
        truncate_all(url)
        return url
    template: Path = request.getfixturevalue("_sqlite_template")
    target = tmp_path / "zhenfeng.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


# ---- the demo county, loaded once per worker: opt in by overriding `db_url` and `demo` with the two fixtures below --
# (loading it takes longer than most tests; SQLite copies a template file, PostgreSQL truncates and puts rows back)

def _load_demo(url: str) -> list[Any]:
    s = Settings(var_dir=Path("var-unused"), database_url=url, secret_key=TEST_SECRET)
    database = Database(url)
    try:
        with database.write_txn() as session:
            from app.core.context import Actor
            from app.demo import loader as demo_data
            from app.org import service as org

            org.ensure_county(session, Actor.system("测试"), code=s.county_code, name=s.county_name)
            return demo_data.load(session, s, passwords=DEMO_PASSWORDS, households_per_village=4,
                                  history_months=5)
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def _demo_template(_sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    path = tmp_path_factory.mktemp("demo-template") / "demo.db"
    shutil.copyfile(_sqlite_template, path)
    return path, _load_demo(f"sqlite:///{path}")


_PG_DEMO: dict[str, Any] = {}


def _pg_demo(url: str) -> None:
    """Truncate, then the demo rows: loaded the first time in this worker, put back from memory afterwards."""
    truncate_all(url)
    engine = build_engine(url)
    try:
        if not _PG_DEMO:
            accounts = _load_demo(url)
            with engine.connect() as conn:
                rows = {t.name: [dict(r) for r in conn.execute(select(t)).mappings()] for t in metadata.sorted_tables}
            _PG_DEMO.update(accounts=accounts, rows=rows)
            return
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # foreign keys form cycles: no checks
            for t in metadata.sorted_tables:
                if _PG_DEMO["rows"][t.name]:
                    conn.execute(t.insert(), _PG_DEMO["rows"][t.name])
                if "id" in t.c and t.c.id.primary_key:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), "
                                      f"(SELECT COALESCE(max(id), 0) + 1 FROM {t.name}), false)"))
    finally:
        engine.dispose()


@pytest.fixture
def demo_db_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh database that already holds the demo county."""
    if PG_URL:
        url: str = request.getfixturevalue("_pg_worker_url")
        _pg_demo(url)
        return url
    template, _ = request.getfixturevalue("_demo_template")
    target = tmp_path / "zhenfeng.db"
    copy_sqlite(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def demo_accounts(demo_db_url: str, request: pytest.FixtureRequest) -> dict[str, object]:
    """The demo accounts of `demo_db_url`'s database."""
    accounts = _PG_DEMO["accounts"] if PG_URL else request.getfixturevalue("_demo_template")[1]
    return {a.login: a for a in accounts}


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(var_dir=tmp_path / "var", database_url=db_url, secret_key=TEST_SECRET, log_json=True,
                    log_level="WARNING")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    with database.write_txn() as session:
        from app.core.context import Actor
        from app.org import service as org

        org.ensure_county(session, Actor.system("测试"), code=settings.county_code, name=settings.county_name)
    yield database
    database.dispose()


@pytest.fixture
def demo(db: Database, demo_accounts: dict[str, object]) -> dict[str, object]:
    """The demo county in this test's database (a copy of the worker's, see `db_url`): its accounts by login."""
    return demo_accounts


@pytest.fixture
def app(settings: Settings, db: Database):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    yield application
    application.state.db.dispose()


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`app.cli.main` pointed at this test's database (its settings are cached per process: cleared around)."""
    from app.config import get_settings

    monkeypatch.setenv("ZF_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ZF_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("ZF_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
