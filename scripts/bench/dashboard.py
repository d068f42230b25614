"""The county dashboard (县看板): dashboard, `GET /dashboard?year=` over a year of a county's monthly closes, with
each of its readers timed alone and EXPLAIN of the slowest."""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

from app.core.scope import ScopeFilter
from app.db import Database
from scripts.bench.common import ACTOR, OPTIONS, RUN_NOTES, GcWatch, Row, ServerClock, analyze, percentile
from scripts.bench.county import EVAL_PASSWORD, fill_dashboard

DASH_VILLAGES = 300
DASH_HOUSEHOLDS = 100_000
DASH_REQUESTS = 20  # measured requests, after DASH_WARMUP
DASH_WARMUP = 2


class StatementClock:
    """Each SQL statement's text, parameters and seconds, while installed on an engine."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.seen: list[tuple[str, Any, float]] = []
        self._t = 0.0

    def _before(self, *_a: Any) -> None:
        self._t = time.perf_counter()

    def _after(self, _conn: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        self.seen.append((statement, parameters, time.perf_counter() - self._t))

    def __enter__(self) -> StatementClock:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def bench_dashboard(url: str, scale: float) -> list[Row]:
    from fastapi.testclient import TestClient

    from app.auth.service import accounts as auth
    from app.config import Settings
    from app.core.clock import to_local, utcnow
    from app.evaluation.service import objections, rounds
    from app.ledger import service as ledger
    from app.lists import service as lists
    from app.main import create_app
    from app.org import service as org
    from app.reports.pages import dashboard as dash_pages
    from app.reports.service import dashboard as reports
    from app.rulesets import service as rulesets
    from app.store.service import stores

    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    now = to_local(utcnow()) or utcnow()
    year = now.year - 1  # a whole year, every month due
    db = Database(url)
    built = fill_dashboard(db, year, OPTIONS.get("villages") or max(2, int(DASH_VILLAGES * scale)),
                           OPTIONS.get("households") or int(DASH_HOUSEHOLDS * scale))
    with db.write_txn() as s:
        admin = auth.create_user(s, ACTOR, login="bench-county", display_name="县管理员", password=EVAL_PASSWORD,
                                 must_change_password=False)
        auth.grant_role(s, ACTOR, admin.id, "county_admin")  # type: ignore[arg-type]
    analyze(db)
    counts = built["counts"]

    # the readers, one by one, in-process (each in its own read transaction), as reports.dashboard calls them
    this_month = now.year * 100 + now.month
    first, last = year * 100 + 1, year * 100 + 12
    with db.read_txn() as s:
        villages = org.list_villages(s, ScopeFilter(everything=True), include_inactive=False)
        ids = [v.id for v in villages]
        targets = rulesets.coverage_targets(s, ids, min(this_month, last))
    readers: list[tuple[str, Callable[[Any], Any]]] = [
        ("rounds.month_states", lambda s: rounds.month_states(s, ids, first, last)),
        ("ledger.kind_totals", lambda s: ledger.kind_totals(s, ids, first, last)),
        ("ledger.village_totals", lambda s: ledger.village_totals(s, ids)),
        ("rulesets.coverage_targets", lambda s: rulesets.coverage_targets(s, ids, min(this_month, last))),
        ("lists.coverage_many", lambda s: lists.coverage_many(s, targets, year, as_of_month=this_month)),
        ("objections.counts", lambda s: objections.counts(s, ids, first, last)),
        ("stores.village_activity", lambda s: stores.village_activity(s, ids, date(year, 1, 1), date(year, 12, 31))),
        ("ledger.month_kind_totals", lambda s: ledger.month_kind_totals(s, ids, first, last)),
        ("lists.month_counts", lambda s: lists.month_counts(s, ids, first, last)),
    ]
    split: dict[str, float] = {}
    sql_time: dict[str, float] = {}
    slowest: dict[str, tuple[str, Any, float]] = {}
    for name, fn in readers:
        times = []
        for k in range(DASH_WARMUP + DASH_REQUESTS):
            with db.read_txn() as s, StatementClock(db.engine) as clock:
                t0 = time.perf_counter()
                fn(s)
                took = time.perf_counter() - t0
            if k >= DASH_WARMUP:
                times.append(took)
        split[name] = statistics.median(times)
        sql_time[name] = sum(t for _, _, t in clock.seen)
        slowest[name] = max(clock.seen, key=lambda x: x[2])
    service_times = []
    for k in range(DASH_WARMUP + DASH_REQUESTS):
        with db.read_txn() as s:
            t0 = time.perf_counter()
            rows = reports.board(s, villages, first, last).rows
            if k >= DASH_WARMUP:
                service_times.append(time.perf_counter() - t0)
    assert len(rows) == len(built["villages"]), len(rows)
    lagging = sum(1 for r in rows if r.lagging)
    base_times = []
    for k in range(DASH_WARMUP + DASH_REQUESTS):
        with db.read_txn() as s:
            t0 = time.perf_counter()
            n_results = s.execute(text("SELECT count(*) FROM eval_results")).scalar_one()
            if k >= DASH_WARMUP:
                base_times.append(time.perf_counter() - t0)
    assert n_results == counts["eval_results"]

    # EXPLAIN of the slowest statement of the two slowest readers
    explained = []
    for name in sorted(split, key=lambda n: -split[n])[:2]:
        statement, params, took = slowest[name]
        with closing(db.engine.raw_connection()) as raw:
            cur = raw.cursor()
            if db.is_sqlite:
                cur.execute("EXPLAIN QUERY PLAN " + statement, params)
                plan = "\n".join(str(r[-1]) for r in cur.fetchall())
            else:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
            raw.rollback()
        short = " ".join(statement.split())
        short = re.sub(r"(%\(\w+_\d+\)s(::\w+)?|\?)(, (%\(\w+_\d+\)s(::\w+)?|\?)){5,}", rf"\1, … ({len(ids)} ids)",
                       short)
        plan = re.sub(r"'\{\d+(,\d+){5,}\}'", f"'{{… {len(ids)} ids}}'", plan)
        explained.append(f"`{name}`, its slowest statement ({took * 1000:.0f} ms in the last timed call):\n\n"
                         f"```sql\n{short}\n```\n\n```\n{plan}\n```")
    db.dispose()

    # measured: GET /dashboard?year= as the county admin, the real app under the TestClient, server time
    with tempfile.TemporaryDirectory() as var:
        settings = Settings(var_dir=Path(var), database_url=url, secret_key="bench-secret-" + "x" * 40,
                            log_level="WARNING")
        app = create_app(settings)
        clock = ServerClock(app)
        csrf_re = re.compile(r'name="csrf_token" value="([^"]+)"')
        with TestClient(clock, base_url="http://testserver") as client:
            token = csrf_re.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
            r = client.post("/login", data={"login": "bench-county", "password": EVAL_PASSWORD, "csrf_token": token},
                            follow_redirects=False)
            assert r.status_code == 303, r.text[:300]
            times, page = [], ""
            with GcWatch() as watch:
                for k in range(DASH_WARMUP + DASH_REQUESTS):
                    r = client.get(f"/dashboard?year={year}")
                    assert r.status_code == 200, r.text[:300]
                    if k >= DASH_WARMUP:
                        times.append(clock.last)
                    page = r.text
            shown = page.split('data-testid="villages"', 1)[1].split("</table>", 1)[0].count("<tr class=")
            assert shown == min(len(ids), dash_pages.PAGE_ROWS), shown  # the first page of the table
            assert f"另有 {lagging - dash_pages.LAGGING_SHOWN} 个村需要关注" in page or lagging <= dash_pages.LAGGING_SHOWN
    med, p95 = statistics.median(times) * 1000, percentile(times, 95) * 1000
    base = statistics.median(base_times) * 1000
    svc = statistics.median(service_times) * 1000
    total_split = sum(split.values()) * 1000
    top = max(split, key=lambda n: split[n])
    split_table = [f"| reader (one grouped read over the {len(ids)} villages) | median ms | execute ms (last call) "
                   "| share of the sum |",
                   "|---|---|---|---|"]
    for name, _ in readers:
        split_table.append(f"| `{name}` | {split[name] * 1000:.1f} | {sql_time[name] * 1000:.1f} | "
                           f"{split[name] * 1000 / total_split:.0%} |")
    split_table.append(f"| sum of the readers | {total_split:.1f} | {sum(sql_time.values()) * 1000:.1f} | 100% |")
    RUN_NOTES.append(
        f"**{kind}: the aim (< 300 ms) is {'met' if p95 < 300 else 'not met'}: p95 {p95:.0f} ms, median "
        f"{med:.0f} ms** for the page of {len(ids)} villages ({len(page) / 1024:,.0f} KB of HTML, {lagging} "
        f"villages listed as lagging). Requests (ms): {' '.join(f'{t * 1000:.0f}' for t in times)}; "
        f"{len(watch.full)} full garbage collections during the requests. `reports.board` alone (in-process, "
        f"{DASH_REQUESTS} calls): median {svc:.0f} ms, so the rest of a request (session, permissions, the village "
        f"list, the template) is about {med - svc:.0f} ms. Setup: {built['setup']:.0f} s ({built['services']:.0f} s "
        f"villages, households, stores and the template round through the services; {built['set_based']:.0f} s the "
        f"twelve months set-based; `ledger verify` clean in {built['verify']:.0f} s). Built: "
        f"{counts['households']:,} households, {counts['eval_rounds']:,} finalised rounds, "
        f"{counts['eval_results']:,} results, {counts['list_postings']:,} list postings ({counts['red']:,} red), "
        f"{counts['ledger_transactions']:,} ledger transactions with {counts['ledger_entries']:,} entries, "
        f"{counts['redemptions']:,} redemptions, {counts['eval_objections']:,} objections.\n\n"
        f"Where the time goes: each reader timed alone in-process, median of {DASH_REQUESTS} after "
        f"{DASH_WARMUP} warm-ups (execute ms: the statements' `cursor.execute` in the last call, so on SQLite "
        f"until the first row, on PostgreSQL until the whole result is on the client; fetching the rows into Python "
        f"objects and the reader's own Python work are the rest). The biggest is `{top}`.\n\n"
        + "\n".join(split_table) + "\n\n" + "\n\n".join(explained))
    return [Row(f"县看板 GET /dashboard?year={year}（第 1 页，{dash_pages.PAGE_ROWS} 个村一页），县管理员，"
                f"{len(ids)} 个村 × 12 个月（{counts['households']:,} "
                f"户，{counts['eval_results']:,} 条评比结果，{counts['ledger_entries']:,} 条分录），服务器端 "
                f"{DASH_REQUESTS} 次：中位数 {med:.0f} ms", kind, f"p95 {p95:.0f} ms",
                f"{base:.1f} ms（SELECT count(*) FROM eval_results，中位数）；{len(readers)} 个读取各自计时之和 "
                f"{total_split:.0f} ms",
                med / base, "< 300 ms", p95 < 300)]
