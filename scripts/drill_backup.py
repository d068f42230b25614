"""Backup and restore drill: back up while the service writes, restore into a fresh database, prove it, and compare it
with the source at the backup's moment.

    uv run python scripts/drill_backup.py                     # SQLite and PostgreSQL (127.0.0.1:5432), ~2 minutes
    uv run python scripts/drill_backup.py --db sqlite --seconds 30

For each database: a fresh database with the demo county (small: --households a village), then writers through the
services (awards and counter redemptions, in their own transactions) for --seconds; halfway, the backup as an
operator takes it while they run (SQLite: the online backup API, as `zhenfeng backup` does; PostgreSQL: `pg_dump
--format=custom`). Once the writers stop: the backup is restored into a fresh database (SQLite: the file itself;
PostgreSQL: `createdb` + `pg_restore`), `ledger verify`, `store verify` and `audit verify` run on it, and every
points account's balance in the copy is compared with the source's entries of exactly the transactions the copy
holds (the ledger is append-only, so that is the source at the backup's moment). The results go to
docs/drills.md (--out).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import migrate  # noqa: E402
from app.config import Settings  # noqa: E402
from app.core.context import Actor  # noqa: E402
from app.db import Database  # noqa: E402
from scripts import drill_report  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432"
ACTOR = Actor(user_id=None, name="备份演练", role="village_clerk")


def fresh(kind: str, work: Path, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{work / (name + '.db')}"
    admin = create_engine(make_url(f"{PG}/postgres").set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{PG}/{name}"


def load_demo(url: str, households: int) -> None:
    from app.demo import loader as demo
    from app.org import service as org

    migrate.upgrade(url)
    s = Settings(var_dir=Path(tempfile.gettempdir()) / "zf-drill", database_url=url, secret_key="drill-" + "x" * 40)
    db = Database(url)
    with db.write_txn() as session:
        org.ensure_county(session, Actor.system("备份演练"), code=s.county_code, name=s.county_name)
        demo.load(session, s, households_per_village=households, history_months=3)
    db.dispose()


class Writers:
    """Threads writing through the services until stopped: awards to random households and redemptions at the
    first store; counts what succeeded."""

    def __init__(self, url: str, threads: int = 2) -> None:
        self.db = Database(url)
        with self.db.read_txn() as s:
            self.store = s.execute(text("SELECT id, village_id FROM stores ORDER BY id LIMIT 1")).one()
            self.households = [r[0] for r in s.execute(text(
                "SELECT id FROM households WHERE village_id = :v AND status = 'active'"), {"v": self.store.village_id})]
            self.item = s.execute(text("SELECT id FROM store_items WHERE store_id = :s AND stock > 100 "
                                       "ORDER BY points LIMIT 1"), {"s": self.store.id}).scalar()
        self.stop = threading.Event()
        self.done: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(threads)]

    def run(self, k: int) -> None:
        from app.errors import AppError
        from app.ledger import service as ledger
        from app.store.service import counter

        rng = random.Random(k)
        while not self.stop.is_set():
            hid = rng.choice(self.households)
            try:
                with self.db.write_txn() as s:
                    if rng.random() < 0.5 or self.item is None:
                        ledger.award(s, ACTOR, household_id=hid, points=rng.randrange(1, 20), memo="备份演练：奖励")
                        self.done["award"] += 1
                    else:
                        counter.redeem(s, ACTOR, store_id=self.store.id, household_id=hid, identity_note="演练",
                                       lines=[counter.Line(self.item, 1)])
                        self.done["redemption"] += 1
            except AppError as e:  # not enough points, say: refused whole, nothing half-done
                self.done["refused"] += 1
                if e.status >= 500:
                    self.errors.append(e.message)

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()
        self.db.dispose()


def backup(kind: str, url: str, work: Path) -> tuple[Path, float]:
    t0 = time.perf_counter()
    if kind == "sqlite":
        dest = work / "backup.db"
        src, dst = sqlite3.connect(make_url(url).database or ""), sqlite3.connect(dest)
        try:
            with dst:
                src.backup(dst)  # as `zhenfeng backup` does: consistent while the service writes
        finally:
            dst.close()
            src.close()
        return dest, time.perf_counter() - t0
    dest = work / "backup.dump"
    subprocess.run(["pg_dump", "--format=custom", "--host=127.0.0.1", "--port=5432", "--username=postgres",
                    f"--file={dest}", make_url(url).database or ""], check=True)
    return dest, time.perf_counter() - t0


def restore(kind: str, dump: Path, work: Path) -> tuple[str, float]:
    t0 = time.perf_counter()
    if kind == "sqlite":
        return f"sqlite:///{dump}", time.perf_counter() - t0
    url = fresh(kind, work, "zf_drill_restored")
    subprocess.run(["pg_restore", "--host=127.0.0.1", "--port=5432", "--username=postgres", "--no-owner",
                    f"--dbname={make_url(url).database}", str(dump)], check=True)
    return url, time.perf_counter() - t0


def prove(url: str) -> dict[str, Any]:
    from app.audit import service as audit
    from app.ledger import service as ledger
    from app.store.service import stores as store

    db = Database(url)
    try:
        with db.read_txn() as s:
            ledger_problems = ledger.verify(s)
            store_problems, _counts = store.verify(s)
            audit_problems = audit.verify(s)
            txs = {int(r[0]) for r in s.execute(text("SELECT id FROM ledger_transactions"))}
            balances = {int(a): int(b) for a, b in s.execute(text(
                "SELECT id, balance FROM ledger_accounts WHERE balance IS NOT NULL"))}
    finally:
        db.dispose()
    return {"ledger": ledger_problems, "store": store_problems, "audit": audit_problems, "txs": txs,
            "balances": balances}


def compare(source_url: str, copy: dict[str, Any]) -> tuple[int, list[str]]:
    """Each kept account's balance in the copy against the source's entries of the transactions the copy holds."""
    db = Database(source_url)
    expected: dict[int, int] = defaultdict(int)
    try:
        with db.read_txn() as s:
            for tx, account, amount in s.execute(text(
                    "SELECT e.transaction_id, e.account_id, e.amount FROM ledger_entries e "
                    "JOIN ledger_accounts a ON a.id = e.account_id WHERE a.balance IS NOT NULL")):
                if int(tx) in copy["txs"]:
                    expected[int(account)] += int(amount)
            later = int(s.execute(text("SELECT count(*) FROM ledger_transactions")).scalar_one()) - len(copy["txs"])
    finally:
        db.dispose()
    wrong = [f"账户 {a}：副本 {copy['balances'].get(a, 0)}，源库同一时刻 {expected.get(a, 0)}"
             for a in sorted(set(expected) | set(copy["balances"])) if copy["balances"].get(a, 0) != expected.get(a, 0)]
    return later, wrong


def drill(kind: str, seconds: float, households: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = fresh(kind, work, "zf_drill_source")
        t0 = time.perf_counter()
        load_demo(url, households)
        setup = time.perf_counter() - t0
        with Writers(url) as w:
            time.sleep(seconds / 2)
            before = dict(w.done)
            dump, took = backup(kind, url, work)
            during = {k: w.done[k] - before.get(k, 0) for k in w.done}
            time.sleep(seconds / 2)
        restored, restore_took = restore(kind, dump, work)
        copy = prove(restored)
        later, wrong = compare(url, copy)
        size = dump.stat().st_size
    return {"kind": "SQLite" if kind == "sqlite" else "PostgreSQL", "setup": setup, "writes": dict(w.done),
            "during": during, "backup_s": took, "restore_s": restore_took, "size": size, "txs": len(copy["txs"]),
            "later": later, "accounts": len(copy["balances"]), "wrong": wrong, "errors": w.errors,
            "ledger": copy["ledger"], "store": copy["store"], "audit": copy["audit"]}


def report(results: list[dict[str, Any]], seconds: float) -> str:
    lines = ["## 备份与恢复演练", "", f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `scripts/drill_backup.py` "
             f"({seconds:.0f} s of writes per database).", "",
             "| database | writes during the run | backup taken while writing | restore | copy holds | "
             "verify (ledger / store / audit) | balances vs source at the backup's moment |", "|---|---|---|---|---|---|---|"]
    for r in results:
        clean = "clean" if not (r["ledger"] or r["store"] or r["audit"]) else \
            f"**{len(r['ledger'])} / {len(r['store'])} / {len(r['audit'])} problems**"
        lines.append(
            f"| {r['kind']} | {r['writes'].get('award', 0):,} awards, {r['writes'].get('redemption', 0):,} redemptions, "
            f"{r['writes'].get('refused', 0):,} refused whole, {len(r['errors'])} server errors | "
            f"{r['backup_s']:.2f} s, {r['size'] / 1024 / 1024:.1f} MB ({sum(r['during'].values()):,} writes landed "
            f"meanwhile) | {r['restore_s']:.2f} s | {r['txs']:,} transactions ({r['later']:,} came after it) | "
            f"{clean} | {r['accounts']:,} accounts, {len(r['wrong'])} differ |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long the writers run (the backup at half time)")
    ap.add_argument("--households", type=int, default=40, help="households a village in the demo county")
    ap.add_argument("--out", default=str(ROOT / "docs" / "drills.md"))
    args = ap.parse_args()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results = []
    for kind in kinds:
        print(f"==> {kind}", flush=True)
        r = drill(kind, args.seconds, args.households)
        print(f"    {r['writes']}, backup {r['backup_s']:.2f} s, copy {r['txs']} transactions, {len(r['wrong'])} "
              f"balances differ, verify: ledger {len(r['ledger'])}, store {len(r['store'])}, audit {len(r['audit'])}",
              flush=True)
        results.append(r)
    text_ = report(results, args.seconds)
    drill_report.write_section(Path(args.out), text_)
    print(text_)
    bad = any(r["wrong"] or r["ledger"] or r["store"] or r["audit"] or r["errors"] for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
