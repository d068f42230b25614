"""search: pinyin initials search over a county's households, a village clerk's and a county admin's."""

from __future__ import annotations

import random
import statistics
import time

from sqlalchemy import text

from app.core.scope import ScopeFilter
from app.db import Database
from scripts.bench.common import Row, percentile
from scripts.bench.county import fill_households, setup_villages


def bench_search(url: str, scale: float) -> list[Row]:
    from app.households.service import households as hh

    households = int(100_000 * scale)
    db = Database(url)
    villages = setup_villages(db, 10)
    first = villages[0]
    fill_households(db, villages, households)
    rng = random.Random(3)
    queries = ["".join(rng.choice("wlzlcyhzwzxsmzhglhgl") + rng.choice("jgzwmjhpydwhlycfqrzc")) for _ in range(200)]
    own = ScopeFilter(village_ids=frozenset({first}))
    county = ScopeFilter(everything=True)
    rows: list[Row] = []
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    for label, flt, vid in (("本村（村文书）", own, first), ("全县（县管理员）", county, None)):
        for q in queries[:20]:  # warm the connection pool and the caches: the figure is the steady state
            with db.read_txn() as s:
                hh.search(s, flt, q=q, village_id=vid, limit=50)
        times = []
        for q in queries:
            t0 = time.perf_counter()
            with db.read_txn() as s:
                hh.search(s, flt, q=q, village_id=vid, limit=50)
            times.append((time.perf_counter() - t0) * 1000)
        med, p99 = statistics.median(times), percentile(times, 99)
        # baseline: the same number of round trips doing a trivial indexed lookup
        base = []
        for _q in queries:
            t0 = time.perf_counter()
            with db.read_txn() as s:
                s.execute(text("SELECT id FROM households WHERE id = :i"), {"i": 1}).all()
            base.append((time.perf_counter() - t0) * 1000)
        rows.append(Row(f"拼音首字母查找，{households:,} 户中{label}：中位数 {med:.1f} ms", kind, f"p99 {p99:.1f} ms",
                        f"{statistics.median(base):.2f} ms（按主键取一行）", None, "p99 < 50 ms", p99 < 50))
    db.dispose()
    return rows
