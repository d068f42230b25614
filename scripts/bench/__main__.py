"""振风超市 benchmarks: every figure next to a baseline measured in the same run, on SQLite and PostgreSQL.

    uv run python -m scripts.bench                 # full size, both databases, writes docs/benchmarks.md
    uv run python -m scripts.bench --quick         # a tenth of the size, for a quick look
    uv run python -m scripts.bench --db sqlite     # one database only
    ZF_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/test  (default) names the server; the bench creates and
    drops its own database `zf_bench` there.

ledger_statement reads a ledger of 10 million entries (1 million with --quick), built set-based on first use and kept
for later runs: SQLite under var/bench/ (git-ignored), PostgreSQL as a database `zf_bench_ledger_*` on the same server.
A new schema revision or LEDGER_BUILD builds it afresh and drops the old copies.

The monthly evaluation (月度评比) has two, reported in their own section of docs/benchmarks.md (running only them
rewrites only that section; running only the others keeps it):

    uv run python -m scripts.bench eval_close eval_grid            # the same as --only eval_close eval_grid
    uv run python -m scripts.bench eval_close --villages 30 --households 10000 --db sqlite   # smaller, for a look

eval_close finalises one round in each of 300 villages (100,000 households), after two months finalised in the
setup, next to a bare write of the same rows; eval_grid renders and saves the rating grid of a 600-household village
through the app. The full-size eval_close spends most of its time in the setup (three months of rounds through the
services): about 3 minutes on SQLite and 6 to 8 on PostgreSQL on the machine of docs/benchmarks.md.

The store counter (振风超市兑换) has one, in a section of its own as well:

    uv run python -m scripts.bench store_redeem                    # about 3 to 3.5 minutes, both databases

store_redeem starts `zhenfeng serve` as a subprocess (one worker on SQLite, two on PostgreSQL) and sends 4,000
redemptions from 16 tills at once over loopback (closed loop: each till's next as soon as its last is answered), next
to as many through the service in-process in the same run; then, to the same server, 1,600 more from the same tills
offered open loop at half the closed loop's throughput (Poisson arrivals, latency from each one's due time); on
PostgreSQL also `pgbench -b tpcb-like` on the same server (pgbench: apt-get install postgresql-client).

The county dashboard (红黑榜与看板) has one, in a section of its own too:

    uv run python -m scripts.bench dashboard                       # about 7 minutes on SQLite, more on PostgreSQL

dashboard builds a year of the county-scale monthly close (300 villages, 100,000 households, twelve finalised rounds
each: results, list postings, a valid ledger, redemptions, objections), set-based after one round through the
services for the shapes, and times `GET /dashboard?year=` as a county admin, with each of the dashboard's readers
timed alone and EXPLAIN of the slowest.

Run it from the repository root (scripts/ is a package there). Each benchmark is a function (db_url, scale) ->
list[Row] in a module of this package (roster, search, ledger, evaluation, store, dashboard, notices); add new
ones to BENCHMARKS below.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scripts.bench.common import LOADS, NOTES, OPTIONS, REVISIONS, ROOT, RUN_NOTES, Row, fresh_db
from scripts.bench.dashboard import bench_dashboard
from scripts.bench.evaluation import bench_eval_close, bench_eval_grid
from scripts.bench.ledger import bench_ledger_bulk, bench_ledger_spend, bench_ledger_statement
from scripts.bench.notices import bench_notices
from scripts.bench.report import OWN_SECTION, report, revision
from scripts.bench.roster import bench_roster_import
from scripts.bench.search import bench_search
from scripts.bench.store import bench_store_redeem

BENCHMARKS: dict[str, Callable[[str, float], list[Row]]] = {
    "roster_import": bench_roster_import,
    "search": bench_search,
    "ledger_bulk": bench_ledger_bulk,
    "ledger_spend": bench_ledger_spend,
    "ledger_statement": bench_ledger_statement,
    "eval_close": bench_eval_close,
    "eval_grid": bench_eval_grid,
    "store_redeem": bench_store_redeem,
    "dashboard": bench_dashboard,
    "notices": bench_notices,
}


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benchmarks", nargs="*", metavar="BENCHMARK",
                    help=f"run only these (as --only): {', '.join(BENCHMARKS)}")
    ap.add_argument("--quick", action="store_true", help="a tenth of the full size")
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    ap.add_argument("--villages", type=int, help="eval_close: this many villages (default 300, 30 with --quick)")
    ap.add_argument("--households", type=int,
                    help="eval_close: this many households in all (default 100,000, 10,000 with --quick)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = ap.parse_args()
    unknown = [b for b in args.benchmarks if b not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    chosen = set(args.only or []) | set(args.benchmarks)
    OPTIONS.update(villages=args.villages, households=args.households)
    scale = 0.1 if args.quick else 1.0
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    seconds = dict.fromkeys(["base", *OWN_SECTION], 0.0)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in BENCHMARKS.items():
            if chosen and name not in chosen:
                continue
            for kind in kinds:
                print(f"==> {name} on {kind}", flush=True)
                t0, load = time.perf_counter(), os.getloadavg()[0]
                REVISIONS[name] = revision()
                url = fresh_db(kind, Path(tmp))
                for r in fn(url, scale):
                    r.bench = name
                    print(f"    {r.name}: {r.figure} vs {r.baseline}", flush=True)
                    rows.append(r)
                seconds[name if name in OWN_SECTION else "base"] += time.perf_counter() - t0
                LOADS.setdefault(name, []).append(f"{'SQLite' if kind == 'sqlite' else 'PostgreSQL'} "
                                                  f"{load:.1f} → {os.getloadavg()[0]:.1f}")
                NOTES.setdefault(name, []).extend(RUN_NOTES)
                RUN_NOTES.clear()
    out = Path(args.out)
    text_ = report(rows, scale, seconds, out.read_text() if out.exists() else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text_)
    print(text_)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
