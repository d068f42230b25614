"""Alembic environment: the URL is ZF_DATABASE_URL (or a connection handed in by app.migrate)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import context

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for migrations.helpers

import app.models  # noqa: F401  (registers every table)
from app.config import get_settings
from app.db import build_engine, metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = build_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:  # a column change rebuilds the table (copy, drop, rename): other tables' references must not fire
        connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # outside the transaction
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      compare_type=True)
    try:
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:  # the references are checked once, before the upgrade commits
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"升级后有 {len(broken)} 处外键引用不存在的行（例如 {broken[0]}），已回滚")
    finally:
        if sqlite:
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    raise SystemExit("离线模式不受支持：请直接对数据库运行 `zhenfeng migrate`")
run_migrations_online()
