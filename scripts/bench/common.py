"""What every benchmark shares: the result row, the options and notes of a run, a fresh database, percentiles,
settling the database before measuring, and clocks (garbage collections, server time, CPU of processes and of the
machine)."""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app import migrate
from app.core.context import Actor
from app.db import Database

ROOT = Path(__file__).resolve().parents[2]  # the repository
ACTOR = Actor.system("基准测试")


@dataclass
class Row:
    name: str
    db: str
    figure: str
    baseline: str
    ratio: float | None
    aim: str
    ok: bool | None
    bench: str = ""  # the benchmark that measured it (set by main)


OPTIONS: dict[str, Any] = {}  # from the command line: villages, households (eval_close)
LOADS: dict[str, list[str]] = {}  # benchmark -> the load average around it per database (others share the machine)
NOTES: dict[str, list[str]] = {}  # benchmark -> markdown it adds below its table (the profile; set by main)
RUN_NOTES: list[str] = []  # where a benchmark adds it while it runs
REVISIONS: dict[str, str] = {}  # benchmark -> the code it measured (others may be changing app/ meanwhile)


REDEEM_SECRET = "bench-store-secret-" + "s" * 40  # the server's ZF_SECRET_KEY: the card payloads are signed with it


def fresh_db(kind: str, workdir: Path) -> str:
    if kind == "sqlite":
        path = workdir / f"bench-{time.time_ns()}.db"
        url = f"sqlite:///{path}"
    else:
        base = make_url(os.environ.get("ZF_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"))
        admin = create_engine(base.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text('DROP DATABASE IF EXISTS "zf_bench" WITH (FORCE)'))
            conn.execute(text('CREATE DATABASE "zf_bench"'))
        admin.dispose()
        url = base.set(database="zf_bench").render_as_string(hide_password=False)
    migrate.upgrade(url)
    return url


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def copy_table(db: Database, table: str, copy: str) -> None:
    """An empty copy of `table`: the same columns, keys, indexes, checks and foreign keys (not its triggers)."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            for (sql,) in conn.execute(text("SELECT sql FROM sqlite_master WHERE tbl_name = :t AND type IN "
                                            "('table', 'index') AND sql IS NOT NULL ORDER BY type = 'index'"),
                                       {"t": table}):
                conn.exec_driver_sql(sql.replace(table, copy))
            return
        conn.execute(text(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)"))
        for (fk,) in conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                       "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f'"), {"t": table}):
            conn.execute(text(f"ALTER TABLE {copy} ADD {fk}"))


def analyze(db: Database) -> None:
    """PostgreSQL: ANALYZE, as autovacuum would while tables grow (the server the figures were taken on runs with
    autovacuum off: without it the planner keeps thinking ledger_accounts is empty, and every foreign-key check
    against it reads the whole table)."""
    if not db.is_sqlite:
        with db.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def settle(db: Database) -> None:
    """Let what the setup wrote reach the disk and the planner's statistics before measuring."""
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
    os.sync()


class GcWatch:
    """The process's garbage collections while it is installed: seconds of each full (generation 2) collection, and
    the seconds spent in all of them."""

    def __init__(self) -> None:
        self.full: list[float] = []
        self.all = 0.0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.all += took
        if info["generation"] == 2:
            self.full.append(took)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


class ServerClock:
    """ASGI wrapper timing each HTTP request in the server: from the call to the end of the response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.last = time.perf_counter() - t0


def process_cpu(pids: list[int]) -> float:
    """Seconds of CPU (user + system) the processes used so far."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def machine_cpu() -> float:
    """Seconds of CPU the whole machine has been busy (all cores, not idle or waiting for the disk)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
