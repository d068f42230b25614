"""docs/benchmarks.md: the machine and the code measured, the tables, each section's method, and the writer that
rewrites what ran and keeps the rest."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from scripts.bench.common import LOADS, NOTES, OPTIONS, REVISIONS, ROOT, Row
from scripts.bench.store import STORE_REDEEM_METHOD

EVAL_BENCHMARKS = ("eval_close", "eval_grid")  # written to their own section of the report
EVAL_HEADING = "## 月度评比"
STORE_BENCHMARKS = ("store_redeem",)  # and these to theirs
STORE_HEADING = "## 振风超市兑换"
DASHBOARD_BENCHMARKS = ("dashboard", "notices")  # and these to theirs
DASHBOARD_HEADING = "## 红黑榜与看板"
SECTIONS = {EVAL_HEADING: EVAL_BENCHMARKS, STORE_HEADING: STORE_BENCHMARKS,
            DASHBOARD_HEADING: DASHBOARD_BENCHMARKS}  # in the order of the report
OWN_SECTION = EVAL_BENCHMARKS + STORE_BENCHMARKS + DASHBOARD_BENCHMARKS  # not in the first section


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1048576:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    pg = ""
    try:
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    import sqlite3

    return (f"{os.cpu_count()} cores ({cpu}){mem}; Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; "
            f"{pg or 'PostgreSQL ?'}")


def _table(rows: list[Row]) -> list[str]:
    lines = ["| benchmark | database | figure | baseline | ratio | aim | met |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else "—"
        met = "—" if r.ok is None else ("yes" if r.ok else "**no**")
        lines.append(f"| {r.name} | {r.db} | {r.figure} | {r.baseline} | {ratio} | {r.aim} | {met} |")
    return lines


EVAL_SECTIONS = {  # benchmark -> (heading, how it is measured), in the order of the report
    "eval_close": ("### 结算：全县的月度评比入账", """\
Setup (not timed): every village has its households registered long ago, a committee of five each linked to a
household, and the county default ruleset (six themes). Three months of rounds go through the services: opened with
the committee present, every consensus grade saved, two passed determinations (a 文明家庭 and a 不诚信户, inserted as
decided), submitted, approved, publicised. The first two months are finalised during the setup, so the measured month
reads two months of history (the 环保卫生 差 three-months rule posts about 1 % of households) and finds every account open.

Measured: `rounds.finalise` of every village's round of the third month, one write transaction per village, one after
another (one request each). The second row is the first month's finalisation (it opens every household's account and
has no history), timed during the setup, against the same baseline.

Baseline, in the same run and database: the rows the measured close wrote, read back afterwards and written again
village by village, one write transaction each, into empty copies of the tables (same keys, indexes, checks and
foreign keys; no triggers): ledger transactions and entries, `eval_results` with their JSON lines as text,
`list_postings`, the round event and the three audit events; plus the same updates of household balances and of the
round row, on copies holding those rows. SQLite: executemany; PostgreSQL: COPY, and executemany for the updates. No
rules, reads or checks.

The PostgreSQL server here runs with autovacuum off: the setup runs ANALYZE every 10 villages (not timed) and VACUUM
ANALYZE before the measured month, as autovacuum would. Without that, in a run earlier on 2026-11-22 (before commit
c6acad3), the first month's close took 515 s instead of 86 s: every foreign-key check of a new ledger entry read all
of `ledger_accounts`, planned when it was empty.
"""),
    "eval_grid": ("### 评分表：600 户的村", """\
One village of 600 households in 10 groups, a committee of five, a clerk logged in through the login form; the real
app (`create_app`) under starlette's TestClient. Server time is taken by an ASGI wrapper around the app, from the call
to the end of the response (no network, no client).

Saves: five pairs after a warm-up pair, each a first save of all 3,600 cells (inserts), then a save changing every
grade (updates); the grid is cleared between pairs (not measured). The save's JSON answer includes the round's
progress (the rules engine over the round). Renders: 20 of the full grid after three warm-ups. The render aim is
judged on p95, the save aim on the slowest save. Baselines: the same clerk's small account page (renders); a bare
executemany of the same 3,600 rating rows into an empty copy of `eval_ratings`, and of the 3,600 grade updates by id,
one write transaction each (saves).

The p95 of 20 renders is set by the process's full garbage collections: one strikes every four or five renders of
this page, and their length varies from run to run (about 185 to 325 ms in the runs of 2026-11-22, when p95 came out
between 247 and 405 ms), so the render aim is met or missed by that margin alone; see the renders without one below.
"""),
}
STORE_SECTIONS = {  # benchmark -> (heading, how it is measured)
    "store_redeem": ("### 兑换：16 个收银台同时兑换", STORE_REDEEM_METHOD),
}
DASHBOARD_METHOD = """\
Setup (not timed), one database per run, nothing cached between runs: 300 villages of one township, 100,000
households registered long before the year (99,900: 333 a village), a store per village with four items in stock, and
the county default ruleset; the year is the last whole calendar year (every month due). One village's January round
goes through the services (opened with a committee of five present, every consensus grade saved, two passed
determinations, submitted, approved, publicised, `rounds.finalise`), is read back and rolled back: it gives the
shapes the set-based months copy (roster entries, the results' `lines`, `postings` and `grades` JSON, the list
postings' reason and rule). Then the twelve months of all 300 villages are written set-based (INSERT … SELECT, one
statement per month and table over every household at once; not through the services): 3,600 `eval_rounds` rows,
finalised with `finalised_at` (the 8th of the next month at 10:00; every 15th village three months late, on the 28th);
`eval_results`, one per household and round, household h taking the template's result h mod 333, with its award's
transaction id; `list_postings`, a pseudo-random fifth of the households on the red list and one in fifty on the black
list each month (shown two months; the last two months effective, older ones expired); the ledger: an account per
household, issue account per village and redeemed account per store, an award transaction per household and month (the
template's total, at the round's finalisation, kind `award`, reference `round:<id>`, the finalise's idempotency key)
and a redemption in two months of the year per household (on the 20th of the following month, at most that month's
award, with its `redemptions` row; no redemption lines), each household's chain 1, 2, 3 … with `balance_after` built
with window functions, and the account rows holding the final balances; the summaries the posting and the
finalisation keep (`ledger_month_totals`, `list_counts`, the rounds' counts, the redemptions' village) rebuilt from
those rows; `ledger verify` (which also checks `ledger_month_totals`) must be clean. Three
objections a village in the year (every 20th village four upheld, the others one upheld and two rejected). Penalties
and determinations other than the template's, rectification plans and credit files are not built. Then VACUUM
ANALYZE on PostgreSQL (a WAL checkpoint on SQLite), and a county admin (role `county_admin`, every village in scope).

Measured: `GET /dashboard?year=<year>` (the first page of the village table, 50 villages; every village is still read,
ranked and checked for the attention list) as that county admin, logged in through the login form, on the real app
(`create_app`, started under starlette's TestClient, so its start-up ran: the worker freezes its import-time heap);
server time by the same ASGI wrapper as the rating grid (from the call to the end of the response: the session,
permissions, the village list, `reports.board` and the template). 20 requests after 2 warm-ups; the aim is judged on
p95.

Baseline, in the same run and database: `SELECT count(*) FROM eval_results` (1.2 million rows), median of 20 in a read
transaction each: what one scan of the biggest table the dashboard used to touch costs. And the split: each batched
reader `reports.board` calls, timed alone in-process with the same arguments (one read transaction each, median of 20
after 2 warm-ups), with the time of its statements' `cursor.execute`; and `EXPLAIN QUERY PLAN` (SQLite) or
`EXPLAIN (ANALYZE, BUFFERS)` (PostgreSQL) of the slowest statement of the two slowest readers.

Every village is listed as lagging in this run, all for the same reason: the year measured is last year, so each
village's last redemption (December's, on the 20th of January) is more than 90 days before today and the "no
redemption" criterion holds. By construction, 20 villages (every 15th) are also three months late and 15 (every
20th) have four upheld objections. It does not change the work the page does.

How the dashboard got here (2026-11-22). The first version read the rows it summarised: 3.6 s (SQLite) and 3.8 s
(PostgreSQL) median for this page. Now every figure comes from a summary written in the same transaction as what it
summarises, or from a covering index: `ledger_month_totals` (points per village, month and kind, spread over 8 slots
by household account so two counters of a village rarely wait on one row; `ledger verify` checks it against the
entries), `list_counts` (households on each list per village and month and per year, rewritten for the village's
year when a round is finalised or an objection changes its postings), the round's `roster_size` and
`households_rated`, the village on each redemption, and indexes that cover what the readers select
(`ix_eval_rounds_states`, `ix_households_roll`, `ix_redemptions_village_status_day`). The page shows 50 villages at a
time, the attention list 30, and the per-village charts the 30 villages with the lowest coverage when there are more
(the .xlsx holds every village). The rest of the spread was the collector: a full collection walked some 450,000
objects of imported code, about 170 ms, every few requests; the worker now moves them to the permanent generation
after start-up (`gc.freeze()` in the app's lifespan).
"""
NOTICES_METHOD = """\
Setup: 30 villages of 600 households (3 with --quick), each with a month's round through the services (grades,
two determinations, submitted, approved, publicised, finalised). Measured in-process, server side: drafting the
results notice of the first village (reading the stored results, masking names) and rendering its PDF with
WeasyPrint, 5 times after one warm-up (fonts loaded once, as in a running server). Baseline in the same run: the same
notice with 10 households (one page), so the ratio is what the 600 rows cost over the fixed cost of a page. Then a
township batch (`app.notices.service.batch`, one PDF of every village's monthly notices, registering the ones missing) in a
process of its own, its time and its peak resident memory (`ru_maxrss` from `wait4`).
"""
DASHBOARD_SECTIONS = {  # benchmark -> (heading, how it is measured)
    "dashboard": ("### 县看板：300 个村、12 个月", DASHBOARD_METHOD),
    "notices": ("### 公示 PDF：600 户的结果公示、30 个村的批量打印", NOTICES_METHOD),
}
SUBSECTIONS = {**EVAL_SECTIONS, **STORE_SECTIONS, **DASHBOARD_SECTIONS}


def revision() -> str:
    """The code measured: the commit, and whether app/ had uncommitted changes (read-only git commands)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"commit {head or '?'}" + (" with uncommitted changes in app/" if dirty else "")


def _command() -> str:
    argv = sys.argv[1:]
    while "--out" in argv:  # where it was written says nothing about the figures
        i = argv.index("--out")
        del argv[i:i + 2]
    return " ".join(["python -m scripts.bench", *(a for a in argv if not a.startswith("--out="))])


def _old_sections(old: str) -> tuple[str, dict[str, str]]:
    """The report as it was: the first section, and each later section (heading -> its text, heading included)."""
    heads = sorted((m.start(), h) for h in SECTIONS for m in [re.search(f"^{re.escape(h)}$", old, re.M)] if m)
    top = old[:heads[0][0]] if heads else old
    return top, {h: old[at:heads[k + 1][0] if k + 1 < len(heads) else len(old)] for k, (at, h) in enumerate(heads)}


def _old_parts(old_section: str, names: tuple[str, ...]) -> dict[str, str]:
    """The subsections of a section as they were: benchmark -> its text (heading included)."""
    out: dict[str, str] = {}
    heads = sorted((old_section.find(h + "\n"), name) for name, (h, _) in SUBSECTIONS.items()
                   if name in names and h + "\n" in old_section)
    for k, (at, name) in enumerate(heads):
        end = heads[k + 1][0] if k + 1 < len(heads) else len(old_section)
        out[name] = old_section[at:end].rstrip() + "\n"
    return out


def report(rows: list[Row], scale: float, seconds: dict[str, float], old: str) -> str:
    """The whole file. The first section (roster, search, ledger) is written afresh when one of its benchmarks ran;
    in the later sections (月度评比, 振风超市兑换), each benchmark's subsection when it ran; the rest is kept as it was
    in `old`."""
    old_top, old_sections = _old_sections(old)
    base = [r for r in rows if r.bench not in OWN_SECTION]
    if base:
        lines = [
            "# 振风超市 benchmarks",
            "",
            f"Run {datetime.now():%Y-%m-%d %H:%M} with `python -m scripts.bench{' --quick' if scale < 1 else ''}` "
            f"(scale {scale}, {seconds['base']:.0f} s). Machine: {machine()}.",
            "",
            "Every figure is measured next to its baseline in the same run, on the same database.",
            "",
            *_table(base),
        ]
        top = "\n".join(lines) + "\n"
    else:
        top = old_top.rstrip() + "\n" if old_top.strip() else "# 振风超市 benchmarks\n"
    sizes = ", ".join(f"{k} {v:,}" for k, v in OPTIONS.items() if v)
    out = top
    for section, names in SECTIONS.items():
        body = _section(section, names, rows, scale, seconds, old_sections.get(section, ""), sizes)
        if body:
            out += "\n" + body
    return out


def _section(section: str, names: tuple[str, ...], rows: list[Row], scale: float, seconds: dict[str, float],
             old: str, sizes: str) -> str:
    """One later section: each benchmark's subsection written afresh when it ran, else kept from `old` ("": none)."""
    parts = _old_parts(old, names)
    for name in names:
        heading, method = SUBSECTIONS[name]
        ran = [r for r in rows if r.bench == name]
        if not ran:
            continue
        lines = [
            heading,
            "",
            f"Run {datetime.now():%Y-%m-%d %H:%M} with `{_command()}` (scale {scale}"
            f"{', ' + sizes if sizes and name == 'eval_close' else ''}; {seconds[name]:.0f} s with the setup) on "
            f"{REVISIONS.get(name, '?')}. Machine: {machine()}. Load average (1 min) at the start and end, showing "
            f"what else ran on the machine: {'; '.join(LOADS.get(name, []))}.",
            "",
            *_table(ran),
            "",
            method,
        ]
        for note in NOTES.get(name, []):
            lines += [note, ""]
        parts[name] = "\n".join(lines).rstrip() + "\n"
    if not parts:
        return ""
    body = [section, "", "Every figure is measured next to its baseline in the same run, on the same database."]
    body += ["\n" + parts[name].rstrip() for name in names if name in parts]
    return "\n".join(body) + "\n"
