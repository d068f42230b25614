"""`alembic upgrade head` from an empty database builds exactly the models' schema, and every migration downgrades."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import app.models  # noqa: F401  (registers every table)
from app import migrate
from app.db import build_engine, metadata
from tests.support.db import empty_database, schema_diff


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    with empty_database(tmp_path, "zf_mig") as url:
        yield url


def _tables(url: str) -> set[str]:
    engine = build_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_head_from_empty_matches_models(empty_url: str) -> None:
    migrate.upgrade(empty_url)
    assert schema_diff(empty_url) == []
    assert _tables(empty_url) == set(metadata.tables)


def test_every_migration_downgrades_and_upgrades_again(empty_url: str) -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(empty_url))
    revisions = list(reversed(list(script.walk_revisions())))  # oldest first
    assert revisions, "no migrations found"
    for rev in revisions:
        migrate.upgrade(empty_url, rev.revision)
        migrate.downgrade(empty_url, rev.down_revision or "base")
        migrate.upgrade(empty_url, rev.revision)
    assert schema_diff(empty_url) == []
    migrate.downgrade(empty_url, "base")
    assert _tables(empty_url) == set()


def test_migration_file_names_are_dated_slugs() -> None:
    versions = Path(migrate.ROOT / "migrations" / "versions")
    names = sorted(p.name for p in versions.glob("*.py"))
    assert names
    for name in names:
        stem = name.removesuffix(".py")
        date, hhmm, *slug = stem.split("_")
        assert len(date) == 8 and date.isdigit() and len(hhmm) == 4 and hhmm.isdigit() and slug, name


def test_the_latest_migrations_upgrade_a_populated_database(db_url: str, demo: dict) -> None:
    """The demo county (a year of rounds, the ledger, the stores, rectifications, notices) taken back to 0008, where
    the dashboards' summaries, the retention columns and the notices did not exist, then upgraded again: the
    migrations fill the summaries from the rows already there, and every proof is clean."""
    from app.audit import service as audit
    from app.db import Database
    from app.ledger import service as ledger
    from app.store.service import stores as store

    migrate.downgrade(db_url, "0008")
    assert {"ledger_month_totals", "list_counts", "notices"}.isdisjoint(_tables(db_url))
    migrate.upgrade(db_url)
    assert schema_diff(db_url) == []
    database = Database(db_url)
    try:
        with database.read_session() as s:
            assert ledger.verify(s) == []  # includes ledger_month_totals against the entries
            assert store.verify(s)[0] == [] and audit.verify(s) == []
            months = s.execute(text("SELECT count(*) FROM ledger_month_totals")).scalar_one()
            counted = s.execute(text("SELECT count(*) FROM list_counts WHERE period % 100 = 0")).scalar_one()
            rounds_filled = s.execute(text("SELECT count(*) FROM eval_rounds WHERE status = 'finalised' AND "
                                           "(households_rated IS NULL OR roster_size IS NULL)")).scalar_one()
            unplaced = s.execute(text("SELECT count(*) FROM redemptions WHERE village_id IS NULL")).scalar_one()
    finally:
        database.dispose()
    assert months > 0 and counted > 0 and rounds_filled == 0 and unplaced == 0
