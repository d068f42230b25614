"""notices (公示): a 600-household results notice as PDF, and a township's batch of notices in a process of its own."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from sqlalchemy import text

from app.db import Database
from scripts.bench.common import ROOT, RUN_NOTES, Row
from scripts.bench.county import (
    EVAL_CLERK,
    Grader,
    add_committees,
    eval_days,
    publicised_round,
    register_households,
    setup_villages,
)

NOTICE_HOUSEHOLDS = 600  # the biggest village's results notice
NOTICE_VILLAGES = 30  # a township's batch
NOTICE_RUNS = 5

BATCH_CHILD = """
import sys, time
from app.core.context import Actor
from app.db import Database
from app.notices.service import batch, notices
db = Database(sys.argv[1])
t = time.perf_counter()
batch._build(db, Actor(user_id=None, name="乡镇审核员", role="township_reviewer"), int(sys.argv[2]), "https://zf.example.gov.cn",
              key=notices.notice_key(sys.argv[3] if len(sys.argv) > 3 else "bench-secret-" + "x" * 40))
print(time.perf_counter() - t)
"""


def bench_notices(url: str, scale: float) -> list[Row]:
    """The monthly results notice of a 600-household village as PDF (in-process, server side), next to WeasyPrint
    laying out a one-page notice in the same run; and a township's batch of 30 villages' notices (one PDF), its time
    and the peak memory of the process that builds it."""
    from app.evaluation.service import rounds
    from app.notices.service import batch, notices, render

    n_villages = max(2, int(NOTICE_VILLAGES * scale))
    households = NOTICE_HOUSEHOLDS * n_villages
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    db = Database(url)
    t0 = time.perf_counter()
    village_ids = setup_villages(db, n_villages)
    homes = register_households(db, village_ids, households)
    members = add_committees(db, homes)
    grader = Grader(homes)
    month = rounds.prev_month(rounds.current_month())
    for vid in village_ids:  # every village's round through the services, publicised and finalised
        _, on, at = eval_days(month)
        with db.write_txn() as s:
            rid = publicised_round(s, vid, month, members[vid], homes[vid], grader)
            rounds.finalise(s, EVAL_CLERK, rid, on=on, at=at)
    with db.write_txn() as s:
        township_id = int(s.execute(text("SELECT township_id FROM villages WHERE id = :v"),
                                    {"v": village_ids[0]}).scalar_one())
    setup = time.perf_counter() - t0
    first = village_ids[0]
    # warm: fonts found and loaded once per process, as a running server has them
    with db.read_txn() as s:
        d = notices.draft(s, EVAL_CLERK, "results", first, month, verify_base="https://zf.example.gov.cn")
    pdf = notices.render_pdf(d)
    one_page = dict(d.content, rows=d.content["rows"][:10])
    times, draft_times, base_times = [], [], []
    for _ in range(NOTICE_RUNS):
        t = time.perf_counter()
        with db.read_txn() as s:
            d = notices.draft(s, EVAL_CLERK, "results", first, month, verify_base="https://zf.example.gov.cn")
        t_draft = time.perf_counter()
        pdf = notices.render_pdf(d)
        times.append(time.perf_counter() - t)
        draft_times.append(t_draft - t)
        t = time.perf_counter()
        render.pdf(render.html(d.meta(), one_page, for_pdf=True))
        base_times.append(time.perf_counter() - t)
    pages = render.page_count(pdf)
    rows_n = len(d.content["rows"])
    med, base = statistics.median(times) * 1000, statistics.median(base_times) * 1000
    # the township's batch, in a process of its own (its peak resident memory is the batch's)
    with db.write_txn() as s:
        b = batch.start(s, EVAL_CLERK, township_id, month, "pdf")
        batch_id = b.id
    child = subprocess.Popen([sys.executable, "-c", BATCH_CHILD, url, str(batch_id)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    out_text = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    assert status == 0, out_text
    batch_s = float(out_text.strip().splitlines()[-1])
    peak_mb = usage.ru_maxrss / 1024
    with db.read_txn() as s:
        done = batch.get_batch(s, batch_id)
        assert done.status == "done", done.error
        size_mb = len(done.data or b"") / 1024 / 1024
        batch_pages = render.page_count(done.data or b"")
    db.dispose()
    RUN_NOTES.append(
        f"**{kind}**: the results notice of {rows_n} households ({pages} pages, {len(pdf) / 1024:,.0f} KB): median "
        f"{med:.0f} ms of {NOTICE_RUNS} ({' '.join(f'{t * 1000:.0f}' for t in times)} ms; gathering the content "
        f"{statistics.median(draft_times) * 1000:.0f} ms of it), the one-page notice {base:.0f} ms. Township batch: "
        f"{n_villages} villages' notices ({', '.join(batch.batch_kinds())}; {batch_pages} pages, {size_mb:.1f} MB) "
        f"in {batch_s:.1f} s, the building process peaking at {peak_mb:,.0f} MB resident. Setup {setup:.0f} s "
        f"({households:,} households, a finalised round per village through the services).")
    return [Row(f"月度评比结果公示 PDF，{rows_n} 户（{pages} 页），服务器端 {NOTICE_RUNS} 次：中位数 {med:.0f} ms", kind,
                f"{med:.0f} ms", f"{base:.0f} ms（一页的公示，中位数）", med / base, "< 2 s", med < 2000),
            Row(f"乡镇批量打印 {n_villages} 个村（一个 PDF，{batch_pages} 页）", kind, f"{batch_s:.1f} s",
                f"峰值内存 {peak_mb:,.0f} MB", None, "报告时间和峰值内存", None)]
