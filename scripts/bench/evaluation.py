"""The monthly evaluation (月度评比): eval_close (a county's rounds finalised, profiled, next to a bare write of the same
rows) and eval_grid (a 600-household rating grid rendered and saved through the app)."""

from __future__ import annotations

import gc
import random
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from sqlalchemy import text

from app.db import Database
from scripts.bench.common import (
    ACTOR,
    OPTIONS,
    ROOT,
    RUN_NOTES,
    GcWatch,
    Row,
    ServerClock,
    analyze,
    copy_table,
    percentile,
    settle,
)
from scripts.bench.county import (
    EVAL_CLERK,
    EVAL_GRADES,
    EVAL_PASSWORD,
    Grader,
    add_committees,
    eval_days,
    publicised_round,
    register_households,
    setup_village,
    setup_villages,
)

EVAL_HISTORY = 2  # finalised months before the measured one: the worst-grade rule (环保卫生 差 three months) reads them
PROFILED = 5  # villages whose finalisation is profiled (rolled back), for the mean


# the tables a round's finalisation writes: (table, column that says whose village the row is, how to find it)
CLOSE_TABLES = ("eval_round_events", "audit_events", "ledger_transactions", "ledger_entries", "eval_results",
                "list_postings")


def _columns(db: Database, table: str) -> list[tuple[str, bool]]:
    """(name, is JSON) of a table's columns, in order."""
    from sqlalchemy import JSON as SA_JSON
    from sqlalchemy import inspect as sa_inspect

    return [(c["name"], isinstance(c["type"], SA_JSON) or str(c["type"]).upper() in ("JSON", "JSONB"))
            for c in sa_inspect(db.engine).get_columns(table)]


def _max_ids(db: Database) -> dict[str, int]:
    with db.read_txn() as s:
        return {t: int(s.execute(text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one()) for t in CLOSE_TABLES}


def written_rows(db: Database, before: dict[str, int], round_village: dict[int, int]
                 ) -> tuple[dict[str, list[str]], list[dict[str, list[tuple[Any, ...]]]], list[list[tuple[Any, ...]]],
                            list[tuple[Any, ...]]]:
    """What the measured close wrote, read back as the driver gives it (JSON as its text, SQLite timestamps as their
    text), per village in the order the villages were closed: (columns per table, per village {table: rows},
    per village the account rows (balance, entry_count, id) it updated, the rounds' rows (status, updated_at,
    finalised_at, id))."""
    order = list(dict.fromkeys(round_village.values()))
    index = {vid: i for i, vid in enumerate(order)}
    per: list[dict[str, list[tuple[Any, ...]]]] = [{t: [] for t in CLOSE_TABLES} for _ in order]
    columns: dict[str, list[str]] = {}
    with closing(db.engine.raw_connection()) as raw:
        cur = raw.cursor()
        for table in CLOSE_TABLES:
            cols = _columns(db, table)
            columns[table] = [c for c, _ in cols]
            select_list = ", ".join(f"CAST({c} AS text)" if is_json and not db.is_sqlite else c for c, is_json in cols)
            cur.execute(f"SELECT {select_list} FROM {table} WHERE id > {before[table]} ORDER BY id")
            rows = cur.fetchall()
            names = columns[table]
            if table == "audit_events":  # three per village, in the order they were closed
                assert len(rows) == 3 * len(order), (len(rows), len(order))
                for i, r in enumerate(rows):
                    per[i // 3][table].append(tuple(r))
                continue
            if table == "ledger_entries":
                cur.execute(f"SELECT id, village_id FROM ledger_transactions WHERE id > {before['ledger_transactions']}")
                tx_village = dict(cur.fetchall())
                key = names.index("transaction_id")
                for r in rows:
                    per[index[tx_village[r[key]]]][table].append(tuple(r))
                continue
            if "village_id" in names:
                key = names.index("village_id")
                for r in rows:
                    per[index[r[key]]][table].append(tuple(r))
            else:
                key = names.index("round_id")
                for r in rows:
                    per[index[round_village[r[key]]]][table].append(tuple(r))
        accounts: list[list[tuple[Any, ...]]] = [[] for _ in order]
        cur.execute("SELECT balance, entry_count, id, village_id FROM ledger_accounts WHERE kind = 'household' "
                    "ORDER BY id")
        account, seq = columns["ledger_entries"].index("account_id"), columns["ledger_entries"].index("seq")
        touched = {r[account] for p in per for r in p["ledger_entries"] if r[seq] is not None}  # kept balances
        for balance, count, aid, vid in cur.fetchall():
            if aid in touched:
                accounts[index[vid]].append((balance, count, aid))
        ids = ", ".join(str(r) for r in round_village)
        cur.execute(f"SELECT status, updated_at, finalised_at, id FROM eval_rounds WHERE id IN ({ids})")
        by_round = {r[3]: tuple(r) for r in cur.fetchall()}
        rounds_rows = [by_round[rid] for rid in round_village]
    return columns, per, accounts, rounds_rows


def bare_close(db: Database, columns: dict[str, list[str]], per: list[dict[str, list[tuple[Any, ...]]]],
               accounts: list[list[tuple[Any, ...]]], round_rows: list[tuple[Any, ...]]) -> float:
    """The baseline: the same rows written again, village by village, one write transaction each (as the close),
    into empty copies of the tables (the same keys, indexes, checks and foreign keys; no triggers), plus the same
    updates of account balances and round rows on copies holding those rows: no rules, no reads, no checks. SQLite:
    executemany; PostgreSQL: COPY, and executemany for the updates. Returns the seconds."""
    for table in (*CLOSE_TABLES, "ledger_accounts", "eval_rounds"):
        copy_table(db, table, f"bench_{table}")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO bench_ledger_accounts SELECT * FROM ledger_accounts"))
        conn.execute(text("INSERT INTO bench_eval_rounds SELECT * FROM eval_rounds"))
    pg = not db.is_sqlite
    mark = "%s" if pg else "?"
    account_sql = f"UPDATE bench_ledger_accounts SET balance = {mark}, entry_count = {mark} WHERE id = {mark}"
    round_sql = (f"UPDATE bench_eval_rounds SET status = {mark}, updated_at = {mark}, finalised_at = {mark} "
                 f"WHERE id = {mark}")
    inserts = {t: f"INSERT INTO bench_{t} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
               for t, cols in columns.items()}
    t0 = time.perf_counter()
    for village, acc, rnd in zip(per, accounts, round_rows, strict=True):
        with db.write_txn() as s:
            raw: Any = s.connection().connection.dbapi_connection
            cur = raw.cursor()
            cur.execute(round_sql, rnd)
            for table in CLOSE_TABLES:
                rows = village[table]
                if not rows:
                    continue
                if pg:
                    with cur.copy(f"COPY bench_{table} ({', '.join(columns[table])}) FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row(r)
                else:
                    cur.executemany(inserts[table], rows)
            cur.executemany(account_sql, acc)
    return time.perf_counter() - t0


def profile_text(prof: Any, total: float, runs: int, top: int = 15) -> tuple[str, dict[str, float]]:
    """The profile of `runs` finalisations, per run: the main steps (cumulative) and the functions that cost most in
    themselves; and each step's share of the time."""
    import pstats

    st = pstats.Stats(prof)
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = st.stats  # type: ignore[attr-defined]

    def where(key: tuple[str, int, str]) -> str:
        file, line, name = key
        if file == "~":
            return name
        parts = Path(file).parts
        if "site-packages" in parts:
            short = "/".join(parts[parts.index("site-packages") + 1:])
        elif file.startswith(str(ROOT)):
            short = str(Path(file).relative_to(ROOT))
        else:  # the standard library
            short = "/".join(parts[-2:])
        return f"{short}:{line} {name}"

    steps = [(f"app/evaluation/service/{m}.py", n, f"rounds.{n}")
             for m, n in (("transitions", "finalise"), ("transitions", "_move"), ("compute", "compute"),
                          ("compute", "build_input"), ("roster", "roster"), ("compute", "corrections"),
                          ("compute", "_history"))]
    steps += [("app/committee/service.py", "eligibility", "committee.eligibility"),
              ("app/rules/engine.py", "evaluate", "rules.evaluate (the engine)")]
    ledger_steps = {"post_many": "posting", "_resolve_and_lock": "writing", "_existing_keys": "writing",
                    "_insert_transactions": "inserts", "_insert_rows": "inserts", "_write_balances": "inserts"}
    steps += [(f"app/ledger/service/{module}.py", n, f"ledger.{n}") for n, module in ledger_steps.items()]
    steps += [("app/evaluation/service/results.py", "_line_dict", "rounds._line_dict (results' lines as dicts)"),
              ("json/__init__.py", "dumps", "json.dumps (results, postings, audit)"),
              ("json/__init__.py", "loads", "json.loads (the history's results)"),
              ("app/audit/service.py", "record", "audit.record")]
    lines = ["| step (cumulative) | calls | seconds | share |", "|---|---|---|---|"]
    shares: dict[str, float] = {}
    for file, name, label in steps:
        hits = [v for k, v in stats.items() if k[0].endswith(file) and k[2] == name]
        if not hits:
            continue
        calls, cum = sum(v[1] for v in hits), sum(v[3] for v in hits)
        shares[label] = cum / total
        lines.append(f"| `{label}` | {calls / runs:,.0f} | {cum / runs:.3f} | {cum / total:.0%} |")
    lines += ["", "| function (own time) | calls | own s | cumulative s |", "|---|---|---|---|"]
    for key, v in sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]:
        lines.append(f"| `{where(key)}` | {v[1] / runs:,.0f} | {v[2] / runs:.3f} | {v[3] / runs:.3f} |")
    return "\n".join(lines), shares


# steps of the profile that do not contain one another: what the summary names as the biggest
PROFILE_LEAVES = ("rounds._history", "rounds.roster", "committee.eligibility", "rules.evaluate (the engine)",
                  "ledger._resolve_and_lock", "ledger._existing_keys", "ledger._insert_transactions",
                  "ledger._insert_rows", "ledger._write_balances", "rounds._line_dict (results' lines as dicts)",
                  "json.dumps (results, postings, audit)", "audit.record")


def bench_eval_close(url: str, scale: float) -> list[Row]:
    import cProfile

    from app.evaluation.service import rounds

    villages = OPTIONS.get("villages") or max(2, int(300 * scale))
    households = OPTIONS.get("households") or int(100_000 * scale)
    db = Database(url)
    t_setup = time.perf_counter()
    village_ids = setup_villages(db, villages)
    homes = register_households(db, village_ids, households)
    n = sum(len(h) for h in homes.values())
    committees = add_committees(db, homes)
    grader = Grader(homes)
    last = rounds.prev_month(rounds.current_month())
    months = [rounds.add_months(last, -k) for k in range(EVAL_HISTORY, -1, -1)]
    kind = "SQLite" if db.is_sqlite else "PostgreSQL"
    history: list[float] = []
    round_village: dict[int, int] = {}
    for month in months:
        for i, vid in enumerate(village_ids):
            if i % ANALYZE_EVERY == 0:
                analyze(db)
            with db.write_txn() as s:
                round_village[publicised_round(s, vid, month, committees[vid], homes[vid], grader)] = vid
        if month == last:
            break
        _, on, at = eval_days(month)
        spent = 0.0
        for i, rid in enumerate(list(round_village)):
            if i % ANALYZE_EVERY == 0:
                analyze(db)  # not timed
            t0 = time.perf_counter()
            with db.write_txn() as s:
                rounds.finalise(s, EVAL_CLERK, rid, on=on, at=at)
            spent += time.perf_counter() - t0
        history.append(spent)
        round_village.clear()
        print(f"    {month}: {len(village_ids)} rounds finalised in {history[-1]:.1f} s (setup), "
              f"{time.perf_counter() - t_setup:.0f} s so far", flush=True)
    settle(db)
    print(f"    setup: {len(village_ids)} villages, {n:,} households, {len(months)} months, "
          f"{time.perf_counter() - t_setup:.0f} s", flush=True)

    # the profile of a village's finalisation: PROFILED villages, each rolled back, before the measured run (it warms
    # nothing the run would not warm with its first villages)
    _, on, _at = eval_days(last)
    profiled = list(round_village)[:PROFILED]
    prof, t_prof, prof_gc = cProfile.Profile(), 0.0, GcWatch()
    for rid in profiled:
        with db.write_session() as s:
            t0 = time.perf_counter()
            with prof_gc:
                prof.enable()
                rounds.finalise(s, EVAL_CLERK, rid, on=on)
                prof.disable()
            t_prof += time.perf_counter() - t0
            s.rollback()

    # measured: every village's round finalised, each in its own write transaction (one request each)
    before = _max_ids(db)
    took: list[float] = []
    cpu = time.process_time()
    t0 = time.perf_counter()
    with GcWatch() as close_gc:
        for rid in round_village:
            t1 = time.perf_counter()
            with db.write_txn() as s:
                done = rounds.finalise(s, EVAL_CLERK, rid, on=on)
            took.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    cpu = time.process_time() - cpu
    assert done.households == len(homes[round_village[rid]]), done

    columns, per, accounts, round_rows = written_rows(db, before, round_village)
    counts = {t: sum(len(p[t]) for p in per) for t in CLOSE_TABLES}
    updates = sum(len(a) for a in accounts)
    settle(db)
    base_cpu = time.process_time()
    baseline = bare_close(db, columns, per, accounts, round_rows)
    base_cpu = time.process_time() - base_cpu
    with db.read_txn() as s:
        from app.ledger import service as ledger

        problems = ledger.verify(s)
    assert not problems, problems[:3]
    db.dispose()
    ratio = total / baseline
    rows_written = sum(counts.values()) + updates + len(round_rows)
    print(f"    rows: {counts}, {updates:,} balances updated; profiled village: {t_prof:.2f} s", flush=True)
    table, shares = profile_text(prof, t_prof, len(profiled))
    table += (f"\n\nGarbage collection while profiling, per village: {prof_gc.all / len(profiled):.3f} s "
              f"({prof_gc.all / t_prof:.0%}; {len(prof_gc.full)} full collections in the {len(profiled)} villages), "
              "counted by cProfile in whatever function was running when it struck.")
    biggest = sorted((x for x in shares.items() if x[0] in PROFILE_LEAVES), key=lambda x: -x[1])[:4]
    RUN_NOTES.append(
        f"**{kind}: the aim (≤ 2× the bare write) is {'met' if ratio <= 2 else 'not met'}: {ratio:.2f}×.** "
        f"{cpu / total:.0%} of the close is CPU time in the Python process. The biggest steps of a village's "
        f"finalise (share of the profiled time): " + ", ".join(f"`{k}` {v:.0%}" for k, v in biggest) + ".\n\n"
        f"What the measured close wrote: {counts['ledger_transactions']:,} ledger transactions, "
        f"{counts['ledger_entries']:,} entries, {updates:,} account balances updated, {counts['eval_results']:,} "
        f"results (JSON lines), {counts['list_postings']:,} list postings, {counts['eval_round_events']:,} round "
        f"events, {counts['audit_events']:,} audit events, {len(round_rows):,} rounds updated. One village's "
        f"finalise: median {statistics.median(took) * 1000:.0f} ms, slowest {max(took) * 1000:.0f} ms. CPU time of "
        f"this Python process: {cpu:.1f} s of the close's {total:.1f} s, {base_cpu:.1f} s of the baseline's "
        f"{baseline:.1f} s{' (the rest: waiting for the server)' if kind == 'PostgreSQL' else ''}. Garbage "
        f"collection during the close: {close_gc.all:.1f} s, of which {len(close_gc.full)} full collections "
        f"{sum(close_gc.full):.1f} s ({len(gc.get_objects()):,} objects tracked after it).\n\n"
        f"Profile (cProfile) of `finalise`, per village: the mean of {len(profiled)} villages of "
        f"{len(homes[round_village[profiled[0]]])} households, each rolled back ({t_prof / len(profiled):.2f} s "
        f"under the profiler, {statistics.median(took):.2f} s without):\n\n" + table)
    return [
        Row(f"月度评比结算：{len(village_ids)} 个村、{n:,} 户、6 个项目、委员会合议评分（规则计算 + post_many 批量记账 + "
            f"红黑榜），每村一个事务；第 {EVAL_HISTORY + 1} 个月（读往月记录）", kind,
            f"{total:.2f} s（{n / total:,.0f} 户/s）",
            f"{baseline:.2f} s（{n / baseline:,.0f} 户/s；逐村一个事务，"
            f"{'COPY' if kind == 'PostgreSQL' else 'executemany'} 写入同样的 {rows_written:,} 行）",
            ratio, "≤ 2×", ratio <= 2),
        Row("同上，首月（同时为每户开户，无往月记录）", kind, f"{history[0]:.2f} s（{n / history[0]:,.0f} 户/s）",
            f"{baseline:.2f} s", history[0] / baseline, "—", None),
    ]


ANALYZE_EVERY = 10  # villages: PostgreSQL's statistics brought up to date this often during the setup


def bench_eval_grid(url: str, scale: float) -> list[Row]:
    import re

    from fastapi.testclient import TestClient

    from app.auth.service import accounts as auth
    from app.config import Settings
    from app.evaluation import pages as round_pages
    from app.evaluation.service import rounds
    from app.main import create_app

    size, renders, saves = 600, 20, 5
    grid_ctx, ctx_took, data_times = round_pages._grid_ctx, [], []

    def timed_ctx(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return grid_ctx(*args, **kw)
        finally:
            ctx_took.append(time.perf_counter() - t0)

    db = Database(url)
    vid = setup_village(db)
    homes = register_households(db, [vid], size)
    members = add_committees(db, homes)[vid]
    with db.write_txn() as s:
        clerk = auth.create_user(s, ACTOR, login="bench-clerk", display_name="王文书", password=EVAL_PASSWORD,
                                 must_change_password=False)
        auth.grant_role(s, ACTOR, clerk.id, "village_clerk", village_id=vid)  # type: ignore[arg-type]
        rnd = rounds.open_round(s, EVAL_CLERK, village_id=vid, month=rounds.prev_month(rounds.current_month()),
                                mode="consensus", present=members)
        rid, themes = rnd.id, [t.code for t in rounds.ruleset_of(s, rnd).themes]
    settle(db)
    db.dispose()
    hids = homes[vid]
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    csrf_re = re.compile(r'name="csrf_token" value="([^"]+)"')
    with tempfile.TemporaryDirectory() as var:
        settings = Settings(var_dir=Path(var), database_url=url, secret_key="bench-secret-" + "x" * 40,
                            log_level="WARNING")
        app = create_app(settings)
        clock = ServerClock(app)
        with TestClient(clock, base_url="http://testserver") as client:
            token = csrf_re.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
            r = client.post("/login", data={"login": "bench-clerk", "password": EVAL_PASSWORD, "csrf_token": token},
                            follow_redirects=False)
            assert r.status_code == 303, r.text[:300]
            csrf = csrf_re.search(client.get("/account").text).group(1)  # type: ignore[union-attr]
            headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
            rng = random.Random(23)

            def save(cells: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
                r = client.post(f"/rounds/{rid}/grid", json={"cells": cells}, headers=headers)
                assert r.status_code == 200, r.text[:300]
                return clock.last, r.json()

            inserts, updates = [], []
            for k in range(saves + 1):  # the first pair warms up
                grades = {(h, t): rng.choice(EVAL_GRADES) for h in hids for t in themes}
                took, body = save([{"h": h, "t": t, "g": g} for (h, t), g in grades.items()])
                assert body["saved"] == size * len(themes) and body["missing"] == 0, body
                if k:
                    inserts.append(took)
                changed = [{"h": h, "t": t, "g": EVAL_GRADES[(EVAL_GRADES.index(g) + 1 + rng.randrange(3)) % 4]}
                           for (h, t), g in grades.items()]
                took, body = save(changed)
                assert body["saved"] == size * len(themes), body
                if k:
                    updates.append(took)
                if k < saves:  # cleared for the next first save (not measured)
                    save([{"h": h, "t": t, "g": ""} for h in hids for t in themes])
            times, base_times, page, collected = [], [], "", []
            watch = GcWatch().__enter__()  # which renders ran a full garbage collection
            round_pages._grid_ctx = timed_ctx  # how much of a render is the page's data (the rest: the template)
            try:
                for k in range(renders + 3):  # three to warm up
                    before = len(watch.full)
                    r = client.get(f"/rounds/{rid}/grid")
                    assert r.status_code == 200, r.text[:300]
                    if k >= 3:
                        times.append(clock.last)
                        collected.append(sum(watch.full[before:]))
                        data_times.append(ctx_took[-1])
                    page = r.text
                    # baseline: a small page of the same app for the same clerk (session, permissions, layout)
                    assert client.get("/account").status_code == 200
                    if k >= 3:
                        base_times.append(clock.last)
            finally:
                watch.__exit__()
                round_pages._grid_ctx = grid_ctx
            assert page.count('class="cell"') == size * len(themes), page.count('class="cell"')
            # for reference: the same renders with what the process held before them frozen (gc.freeze(), as a
            # server could after starting), out of the full collections' reach
            tracked = len(gc.get_objects())
            gc.collect()
            gc.freeze()
            try:
                frozen = []
                for _ in range(renders):
                    assert client.get(f"/rounds/{rid}/grid").status_code == 200
                    frozen.append(clock.last)
            finally:
                gc.unfreeze()
    cells = size * len(themes)
    plain = [(t, d) for t, c, d in zip(times, collected, data_times, strict=True) if not c]
    pauses = [c for c in collected if c]
    p95_ = percentile(times, 95) * 1000
    RUN_NOTES.append(
        f"**{kind}: the render aim (p95 < 300 ms) is {'met' if p95_ < 300 else 'not met'}: p95 {p95_:.0f} ms, "
        f"median {statistics.median(times) * 1000:.0f} ms; the save aim (< 1 s) is "
        f"{'met' if max(inserts + updates) < 1 else 'not met'}: {max(inserts + updates) * 1000:.0f} ms at most.** "
        f"Renders (ms): {' '.join(f'{t * 1000:.0f}' for t in times)}. {len(pauses)} of the {renders} "
        f"ran a full (generation 2) garbage collection of the process ({tracked:,} objects tracked)"
        + (f", {statistics.median(pauses) * 1000:.0f} ms each (median)" if pauses else "")
        + (f"; the others took {statistics.median(t for t, _ in plain) * 1000:.0f} ms (median), "
           f"{max(t for t, _ in plain) * 1000:.0f} ms at most, of which the page's data (`_grid_ctx`: round, roster, "
           f"grades) {statistics.median(d for _, d in plain) * 1000:.0f} ms, the rest mostly the template (HTML of "
           f"{len(page) / 1024:,.0f} KB)" if plain else "")
        + f". With gc.freeze() first: median {statistics.median(frozen) * 1000:.0f} ms, p95 "
        f"{percentile(frozen, 95) * 1000:.0f} ms. Saves (ms), first: {' '.join(f'{t * 1000:.0f}' for t in inserts)}; "
        f"second: {' '.join(f'{t * 1000:.0f}' for t in updates)}.")

    # baseline of the saves: the same 3,600 rating rows written bare, in one write transaction each: executemany
    # inserting them into an empty copy of eval_ratings, then executemany updating every grade by id
    db = Database(url)
    copy_table(db, "eval_ratings", "bench_eval_ratings")
    cols = [c for c, _ in _columns(db, "eval_ratings")]
    with closing(db.engine.raw_connection()) as raw:
        cur = raw.cursor()
        cur.execute(f"SELECT {', '.join(cols)} FROM eval_ratings WHERE round_id = {rid} ORDER BY id")
        rating_rows = [tuple(r) for r in cur.fetchall()]
    assert len(rating_rows) == cells, len(rating_rows)
    mark = "?" if db.is_sqlite else "%s"
    grade = cols.index("grade")
    regraded = [(EVAL_GRADES[(EVAL_GRADES.index(r[grade]) + 1) % 4], r[cols.index("id")]) for r in rating_rows]
    bare_ins, bare_upd = [], []
    for _ in range(saves):
        t0 = time.perf_counter()
        with db.write_txn() as s:
            s.connection().connection.dbapi_connection.cursor().executemany(  # type: ignore[union-attr]
                f"INSERT INTO bench_eval_ratings ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})",
                rating_rows)
        bare_ins.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with db.write_txn() as s:
            s.connection().connection.dbapi_connection.cursor().executemany(  # type: ignore[union-attr]
                f"UPDATE bench_eval_ratings SET grade = {mark} WHERE id = {mark}", regraded)
        bare_upd.append(time.perf_counter() - t0)
        with db.write_txn() as s:
            s.execute(text("DELETE FROM bench_eval_ratings"))
    db.dispose()
    med, p95 = statistics.median(times) * 1000, percentile(times, 95) * 1000
    base_med = statistics.median(base_times) * 1000
    ins_med, ins_max, b_ins = statistics.median(inserts), max(inserts), statistics.median(bare_ins)
    upd_med, upd_max, b_upd = statistics.median(updates), max(updates), statistics.median(bare_upd)
    return [
        Row(f"评分表页面 GET /rounds/{{id}}/grid，{size} 户 × {len(themes)} 项 = {cells:,} 格（{len(page) / 1024:,.0f} KB），"
            f"服务器端 {renders} 次：中位数 {med:.0f} ms", kind, f"p95 {p95:.0f} ms",
            f"{base_med:.1f} ms（同一文书打开“我的账号”小页面，中位数）", med / base_med, "< 300 ms", p95 < 300),
        Row(f"保存整张评分表 POST /rounds/{{id}}/grid（JSON，{cells:,} 格，首次保存 = 插入），服务器端 {saves} 次：中位数 "
            f"{ins_med * 1000:.0f} ms", kind, f"最慢 {ins_max * 1000:.0f} ms",
            f"{b_ins * 1000:.0f} ms（executemany 插入同样的 {cells:,} 行，一个事务）", ins_med / b_ins, "< 1 s",
            ins_max < 1),
        Row(f"再次保存，每格等级都改（{cells:,} 格更新），服务器端 {saves} 次：中位数 {upd_med * 1000:.0f} ms", kind,
            f"最慢 {upd_max * 1000:.0f} ms", f"{b_upd * 1000:.0f} ms（executemany 按 id 更新 {cells:,} 行，一个事务）",
            upd_med / b_upd, "< 1 s", upd_max < 1),
    ]
