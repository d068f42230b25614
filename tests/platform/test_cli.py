"""The operations commands, run as a user would: `python -m app ...` in a subprocess, honouring ZF_DATABASE_URL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.db import PG_URL


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=120, cwd=Path(__file__).parents[2])


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZF_")}
    env.update({"ZF_VAR_DIR": str(tmp_path / "var"), "ZF_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
                "ZF_LOG_JSON": "false"})
    return env


def test_migrate_demo_verify_backup(cli_env: dict[str, str], tmp_path: Path) -> None:
    r = run(["migrate"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "振风县" in r.stdout
    r = run(["demo", "--households", "6", "--months", "3"], cli_env)
    assert r.returncode == 0, r.stderr
    for login in ("admin", "reviewer", "clerk", "member", "storekeeper", "household"):
        assert login in r.stdout
    assert "只显示这一次" in r.stdout
    # a second demo into a non-empty database changes nothing
    again = run(["demo"], cli_env)
    assert again.returncode == 2 and "已有账号" in again.stdout
    assert run(["demo", "--if-empty"], cli_env).returncode == 0
    r = run(["audit", "verify"], cli_env)
    assert r.returncode == 0 and "审计链完好" in r.stdout, r.stdout + r.stderr
    r = run(["store", "verify"], cli_env)
    assert r.returncode == 0 and "超市账目完好" in r.stdout, r.stdout + r.stderr
    r = run(["lists", "expire"], cli_env)
    assert r.returncode == 0 and "红黑榜" in r.stdout, r.stdout + r.stderr
    assert "没有到期" in run(["lists", "expire"], cli_env).stdout  # idempotent
    with sqlite3.connect(Path(cli_env["ZF_DATABASE_URL"].removeprefix("sqlite:///"))) as conn:
        assert conn.execute("SELECT count(*) FROM redemptions").fetchone()[0] > 0  # the demo's year at the counter
        conn.execute("UPDATE store_items SET stock = stock + 1 WHERE id = 1")  # a shelf counted behind the books
    r = run(["store", "verify"], cli_env)
    assert r.returncode == 1 and "[stock_mismatch] 商品 1" in r.stdout, r.stdout + r.stderr
    with sqlite3.connect(Path(cli_env["ZF_DATABASE_URL"].removeprefix("sqlite:///"))) as conn:
        conn.execute("UPDATE store_items SET stock = stock - 1 WHERE id = 1")
    with sqlite3.connect(Path(cli_env["ZF_DATABASE_URL"].removeprefix("sqlite:///"))) as conn:
        conn.execute("UPDATE ledger_month_totals SET points = points + 7 WHERE rowid = 1")  # a summary off the book
    r = run(["ledger", "verify"], cli_env)
    assert r.returncode == 1 and "[summary_mismatch]" in r.stdout, r.stdout + r.stderr
    r = run(["ledger", "rebuild-summaries"], cli_env)
    assert r.returncode == 0 and "已按账本重建汇总" in r.stdout, r.stdout + r.stderr
    assert run(["ledger", "verify"], cli_env).returncode == 0
    r = run(["backup", "--out", str(tmp_path / "bk")], cli_env)
    assert r.returncode == 0, r.stderr
    backups = list((tmp_path / "bk").glob("zhenfeng-*.db"))
    assert len(backups) == 1
    with sqlite3.connect(backups[0]) as conn:
        # the six demo accounts, and four more committee members in each of the six villages besides "member"
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 6 + 6 * 5 - 1
        assert conn.execute("SELECT count(*) FROM eval_rounds WHERE status = 'finalised'").fetchone()[0] > 0
    # the secret key was generated once, private, and reused
    secret = Path(cli_env["ZF_VAR_DIR"]) / "secret_key"
    assert secret.stat().st_mode & 0o777 == 0o600
    before = secret.read_text()
    run(["audit", "verify"], cli_env)
    assert secret.read_text() == before


def test_create_admin_and_set_password(cli_env: dict[str, str]) -> None:
    assert run(["migrate"], cli_env).returncode == 0
    r = run(["create-admin", "boss", "--name", "县长办", "--password", "Strong-pass-1"], cli_env)
    assert r.returncode == 0 and "boss" in r.stdout, r.stderr
    r = run(["create-admin", "boss", "--password", "Strong-pass-1"], cli_env)
    assert r.returncode == 2 and "已被使用" in r.stderr
    r = run(["create-admin", "weak", "--password", "123"], cli_env)
    assert r.returncode == 2 and "至少需要 8 个字符" in r.stderr
    r = run(["set-password", "boss"], cli_env)
    assert r.returncode == 0 and "临时密码" in r.stdout
    assert run(["set-password", "nobody"], cli_env).returncode == 2


def test_backup_on_postgres_prints_pg_dump(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "ZF_DATABASE_URL": PG_URL or "postgresql://postgres@127.0.0.1:5432/test"}
    r = run(["backup"], env)
    assert r.returncode == 0 and "pg_dump --format=custom" in r.stdout


def test_serve_refuses_sqlite_with_several_workers(cli_env: dict[str, str]) -> None:
    r = run(["serve", "--workers", "2"], cli_env)
    assert r.returncode == 2 and "SQLite" in r.stderr


def test_production_mode_refuses_unsafe_settings(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "ZF_PRODUCTION": "true", "ZF_SECRET_KEY": "short"}
    r = run(["serve"], env)
    assert r.returncode == 2
    assert "ZF_SECRET_KEY" in r.stderr and "ZF_COOKIE_SECURE" in r.stderr


def test_bad_settings_are_explained(cli_env: dict[str, str]) -> None:
    r = run(["migrate"], {**cli_env, "ZF_COUNTY_CODE": "12AB"})
    assert r.returncode == 2 and "6 位数字" in r.stderr
