"""ledger_bulk, ledger_spend, ledger_statement: the ledger's bulk posting, concurrent spends, and a household's balance
and statement in a ledger of millions of entries (built set-based once and kept under var/bench/)."""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url

from app import migrate
from app.db import Database
from scripts.bench.common import ACTOR, ROOT, Row, copy_table, percentile
from scripts.bench.county import add_stores, fill_households, household_villages, setup_villages

SPEND_THREADS = 16
LEDGER_BUILD = 1  # bump when ledger_db() builds a different ledger: cached copies of other builds are dropped
LEDGER_YEARS = 10  # of history per household in the statement ledger: an award and a spend every month
LEDGER_START = 2016


def bench_ledger_bulk(url: str, scale: float) -> list[Row]:
    from app.ledger import service as ledger

    n = int(100_000 * scale)
    db = Database(url)
    fill_households(db, setup_villages(db, 10), n, members=False)
    households = household_villages(db)
    assert len(households) == n, len(households)
    took = []
    for month in (11, 12):  # the first posting opens every household's account; the second finds them open
        postings = [ledger.award_posting(hid, vid, 5 + hid % 16, f"2026年{month}月 红黑榜评议：红榜奖励",
                                         reference=f"round:{month}") for hid, vid in households]
        t0 = time.perf_counter()
        with db.write_txn() as s:
            result = ledger.post_many(s, ACTOR, postings, note="基准测试：月度评议")
        took.append(time.perf_counter() - t0)
        assert result.posted == n, result

    # baseline: a bare executemany of the same 2n entry rows, in one write transaction, into an empty copy of
    # ledger_entries (same keys, indexes, checks and foreign keys; the transactions they point at exist)
    copy_table(db, "ledger_entries", "bench_ledger_entries")
    with db.read_txn() as s:
        rows = [dict(r._mapping) for r in s.execute(text(
            "SELECT transaction_id, account_id, amount, seq, balance_after FROM ledger_entries ORDER BY id LIMIT :n"),
            {"n": 2 * n})]
    assert len(rows) == 2 * n, len(rows)
    t0 = time.perf_counter()
    with db.write_txn() as s:
        s.execute(text("INSERT INTO bench_ledger_entries (transaction_id, account_id, amount, seq, balance_after) "
                       "VALUES (:transaction_id, :account_id, :amount, :seq, :balance_after)"), rows)
    baseline = time.perf_counter() - t0
    db.dispose()
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    return [
        Row(f"批量记账 {n:,} 笔奖励（post_many，一个事务，{2 * n:,} 条分录；首次记账，同时开户）", kind,
            f"{took[0]:.2f} s（{n / took[0]:,.0f} 笔/s）",
            f"{baseline:.2f} s（{n / baseline:,.0f} 笔/s；executemany 插入同样的 {2 * n:,} 条分录）",
            took[0] / baseline, "≤ 2×", took[0] / baseline <= 2),
        Row(f"再记一轮 {n:,} 笔（账户都已存在）", kind, f"{took[1]:.2f} s（{n / took[1]:,.0f} 笔/s）",
            f"{baseline:.2f} s", took[1] / baseline, "—", None),
    ]


def bench_ledger_spend(url: str, scale: float) -> list[Row]:
    from concurrent.futures import ThreadPoolExecutor

    from app.core.clock import utcnow
    from app.ledger import service as ledger

    households, threads = 1_000, SPEND_THREADS
    spends = int(20_000 * scale) // threads * threads
    memo = "积分超市兑换：食用油 1 桶"
    db = Database(url)
    villages = setup_villages(db, 10)
    stores = add_stores(db, villages)
    fill_households(db, villages, households, members=False)
    hh = household_villages(db)
    with db.write_txn() as s:
        ledger.post_many(s, ACTOR, [ledger.award_posting(h, v, 1_000_000, "基准测试：预存积分") for h, v in hh])
    rng = random.Random(11)

    def work(count: int) -> list[list[tuple[int, int, int]]]:  # per thread: (household, village, points)
        return [[(*rng.choice(hh), rng.randint(1, 50)) for _ in range(count // threads)] for _ in range(threads)]

    def run(worker: Callable[[list[tuple[int, int, int]]], list[float]], count: int) -> tuple[float, list[float]]:
        jobs = work(count)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as ex:
            futures = [ex.submit(worker, j) for j in jobs]
            latencies = [x for f in futures for x in f.result()]
        return time.perf_counter() - t0, latencies

    def through_service(jobs: list[tuple[int, int, int]]) -> list[float]:
        out = []
        for hid, vid, points in jobs:
            t0 = time.perf_counter()
            with db.write_txn() as s:
                ledger.spend(s, ACTOR, household_id=hid, store_id=stores[vid], points=points, memo=memo)
            out.append((time.perf_counter() - t0) * 1000)
        return out

    through_service([(next(h for h, v in hh if v == vid), vid, 1) for vid in villages])  # every store's account
    run(through_service, threads * 4)  # warm the connection pool: the figure is the steady state
    wall, latencies = run(through_service, spends)

    # baseline: the same spend as one bare SQL transaction, 16 threads too, each on a DBAPI connection taken from the
    # app's pool for that transaction (as a request takes one; the app's settings: WAL and synchronous=FULL on
    # SQLite). PostgreSQL: lock the household's account row (FOR UPDATE); SQLite: BEGIN IMMEDIATE, one writer at a
    # time behind a lock in the process, as app.db does.
    with db.read_txn() as s:
        account: dict[int, int] = dict(s.execute(text("SELECT household_id, id FROM ledger_accounts WHERE kind = 'household'"))
                       .tuples().all())
        sink: dict[int, int] = dict(s.execute(text("SELECT store_id, id FROM ledger_accounts WHERE kind = 'redeemed'"))
                                    .tuples().all())
    pg = not db.is_sqlite
    mark = "%s" if pg else "?"
    lock_sql = f"SELECT balance, entry_count FROM ledger_accounts WHERE id = {mark}" + (" FOR UPDATE" if pg else "")
    tx_sql = ("INSERT INTO ledger_transactions (kind, village_id, month, memo, actor_name, occurred_at) "
              "VALUES ('redemption', ?, ?, ?, ?, ?) RETURNING id").replace("?", mark)
    entries_sql = ("INSERT INTO ledger_entries (transaction_id, account_id, amount, seq, balance_after) "
                   "VALUES (?, ?, ?, ?, ?), (?, ?, ?, NULL, NULL)").replace("?", mark)
    update_sql = f"UPDATE ledger_accounts SET balance = {mark}, entry_count = {mark} WHERE id = {mark}"
    totals_sql = ("INSERT INTO ledger_month_totals (village_id, month, kind, slot, points) "
                  "VALUES (?, ?, 'redemption', ?, ?) ON CONFLICT (village_id, month, kind, slot) "
                  "DO UPDATE SET points = ledger_month_totals.points + excluded.points").replace("?", mark)
    writer = threading.Lock()

    def spend_sql(cur: Any, hid: int, vid: int, points: int) -> None:
        acc = account[hid]
        cur.execute(lock_sql, (acc,))
        balance, count = cur.fetchone()
        if balance < points:
            raise RuntimeError(f"household {hid} has {balance} points, needs {points}")
        now = utcnow()
        cur.execute(tx_sql, (vid, ledger.month_of(now), memo, ACTOR.name,
                             now if pg else now.strftime("%Y-%m-%d %H:%M:%S.%f")))
        tx_id = cur.fetchone()[0]
        cur.execute(entries_sql, (tx_id, acc, -points, count + 1, balance - points, tx_id, sink[stores[vid]], points))
        cur.execute(update_sql, (balance - points, count + 1, acc))
        cur.execute(totals_sql, (vid, ledger.month_of(now), acc % ledger.SLOTS, -points))  # as the posting keeps it

    def bare(jobs: list[tuple[int, int, int]]) -> list[float]:
        out = []
        for hid, vid, points in jobs:
            t0 = time.perf_counter()
            if pg:
                with closing(db.engine.raw_connection()) as raw:
                    spend_sql(raw.cursor(), hid, vid, points)
                    raw.commit()
            else:
                with writer, closing(db.engine.raw_connection()) as raw:
                    cur = raw.cursor()
                    cur.execute("BEGIN IMMEDIATE")
                    try:
                        spend_sql(cur, hid, vid, points)
                    except BaseException:
                        cur.execute("ROLLBACK")
                        raise
                    cur.execute("COMMIT")
            out.append((time.perf_counter() - t0) * 1000)
        return out

    run(bare, threads * 4)
    base_wall, base_latencies = run(bare, spends)
    with db.read_txn() as s:
        problems = ledger.verify(s)
    assert not problems, problems[:3]
    db.dispose()
    rate, base_rate = spends / wall, spends / base_wall
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    return [Row(f"单笔兑换（spend），{threads} 个线程并发，{households:,} 户中随机，{spends:,} 笔", kind,
                f"{rate:,.0f} 笔/s（p50 {statistics.median(latencies):.1f} ms，p99 {percentile(latencies, 99):.1f} ms）",
                f"{base_rate:,.0f} 笔/s（p50 {statistics.median(base_latencies):.1f} ms，"
                f"p99 {percentile(base_latencies, 99):.1f} ms；裸 SQL 事务：锁账户行、插入交易和两条分录、更新余额）",
                base_rate / rate, "≤ 2×", base_rate / rate <= 2)]


def ledger_db(url: str, entries: int) -> tuple[str, float | None]:
    """A database beside `url` holding a ledger of about `entries` entries (households with LEDGER_YEARS of history
    each), built set-based on first use and kept for later runs: SQLite under var/bench/, PostgreSQL as a
    zf_bench_ledger_* database, keyed by schema revision, LEDGER_BUILD and size. Returns its url and the seconds the
    build took (None: it was there already)."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    tag = f"zf_bench_ledger_{rev}_v{LEDGER_BUILD}_"
    name = f"{tag}{entries}"
    building = f"{name}_building"
    if url.startswith("sqlite"):
        folder = ROOT / "var" / "bench"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{name}.db"
        if target.exists():
            return f"sqlite:///{target}", None
        for old in folder.glob("zf_bench_ledger_*"):  # other builds and a build cut short
            if not old.name.startswith(tag) or old.name.startswith(building):
                old.unlink()
        build_url = f"sqlite:///{folder / building}.db"
    else:
        base = make_url(url)
        admin = create_engine(base.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            have = set(conn.execute(text(r"SELECT datname FROM pg_database WHERE datname LIKE 'zf\_bench\_ledger\_%'"))
                       .scalars())
            if name not in have:
                for old in have:
                    if not old.startswith(tag) or old == building:
                        conn.execute(text(f'DROP DATABASE "{old}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{building}"'))
        if name in have:
            admin.dispose()
            return base.set(database=name).render_as_string(hide_password=False), None
        build_url = base.set(database=building).render_as_string(hide_password=False)
    t0 = time.perf_counter()
    migrate.upgrade(build_url)
    db = Database(build_url)
    fill_ledger(db, entries)
    db.dispose()
    if url.startswith("sqlite"):
        assert not (folder / f"{building}.db-wal").exists()
        (folder / f"{building}.db").rename(target)
        return f"sqlite:///{target}", time.perf_counter() - t0
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False), time.perf_counter() - t0


def fill_ledger(db: Database, entries: int) -> None:
    """Households with LEDGER_YEARS of history each, about `entries` entries in all, written set-based (INSERT …
    SELECT, one statement per month and kind, every household at once), not through the service, yet a valid book:
    every transaction balances, each household's chain runs seq 1, 2, 3 … with balance_after = previous + amount,
    and its account row holds the final balance and entry count. Household h is awarded 20 + h % 7 * 5 points on
    the 5th of every month and spends 10 + h % 5 * 2 on the 15th; transactions go in time order, as in real use."""
    from app.ledger import service as ledger

    steps = LEDGER_YEARS * 12 * 2
    villages = setup_villages(db, 10)
    add_stores(db, villages)
    fill_households(db, villages, entries // (2 * steps), members=False)
    pg = not db.is_sqlite

    def at(day: datetime) -> str:
        return f"TIMESTAMPTZ '{day:%Y-%m-%d %H:%M:%S}+00'" if pg else f"'{day:%Y-%m-%d %H:%M:%S}.000000'"

    start = at(datetime(LEDGER_START, 1, 1, tzinfo=UTC))

    def award(household: str) -> str:
        return f"(20 + {household} % 7 * 5)"

    def spend(household: str) -> str:
        return f"(10 + {household} % 5 * 2)"

    if not pg:  # a build: one cut short is thrown away, so no need to wait for the disk at every commit
        event.listen(db.engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA synchronous=OFF"))
        db.engine.dispose()
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ledger_accounts (code, kind, village_id, household_id, store_id, balance, entry_count, "
            f"created_at) SELECT 'household:' || id, 'household', village_id, id, NULL, "
            f"{steps // 2} * ({award('id')} - {spend('id')}), "
            f"{steps}, {start} FROM households ORDER BY id"))
        conn.execute(text(
            "INSERT INTO ledger_accounts (code, kind, village_id, household_id, store_id, balance, entry_count, "
            f"created_at) SELECT 'village:' || id || '\\:issue', 'issue', id, NULL, NULL, NULL, 0, {start} FROM villages"))
        conn.execute(text(
            "INSERT INTO ledger_accounts (code, kind, village_id, household_id, store_id, balance, entry_count, "
            f"created_at) SELECT 'store:' || id || '\\:redeemed', 'redeemed', village_id, NULL, id, NULL, 0, {start} "
            "FROM stores"))
        conn.execute(text(
            "CREATE TABLE bench_slots AS SELECT a.id AS account_id, a.village_id, "
            f"{award('a.household_id')} AS award, {spend('a.household_id')} AS spend, "
            "i.id AS issue_id, d.id AS redeemed_id, row_number() OVER (ORDER BY a.id) - 1 AS r "
            "FROM ledger_accounts a JOIN ledger_accounts i ON i.kind = 'issue' AND i.village_id = a.village_id "
            "JOIN stores st ON st.village_id = a.village_id JOIN ledger_accounts d ON d.store_id = st.id "
            "WHERE a.kind = 'household'"))
        n = conn.execute(text("SELECT count(*) FROM bench_slots")).scalar_one()
    t0 = time.perf_counter()
    for k in range(steps):
        month, is_award = k // 2, k % 2 == 0
        day = datetime(LEDGER_START + month // 12, month % 12 + 1, 5 if is_award else 15, 2, tzinfo=UTC)
        first = k * n + 1  # transaction ids run in time order; entry ids are 2·tx − 1 (household) and 2·tx
        if is_award:
            tx = (f"'award', village_id, {ledger.month_of(day)}, '{day:%Y年%-m月} 红黑榜评议：红榜奖励', "
                  f"'round\\:{month + 1}', NULL, '村文书'")
            amount, after, sink = "award", f"{month} * (award - spend) + award", "issue_id"
        else:
            tx = (f"'redemption', village_id, {ledger.month_of(day)}, '积分超市兑换：食用油、洗衣粉', NULL, NULL, "
                  "'超市店员'")
            amount, after, sink = "-spend", f"{month + 1} * (award - spend)", "redeemed_id"
        with db.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO ledger_transactions (id, kind, village_id, month, memo, reference, actor_id, actor_name, "
                f"occurred_at, idempotency_key, request_hash, reverses_id) SELECT {first} + r, {tx}, {at(day)}, "
                "NULL, NULL, NULL FROM bench_slots ORDER BY r"))
            conn.execute(text(
                "INSERT INTO ledger_entries (id, transaction_id, account_id, amount, seq, balance_after) "
                "SELECT id, transaction_id, account_id, amount, seq, balance_after FROM ("
                f"SELECT 2 * ({first} + r) - 1 AS id, {first} + r AS transaction_id, account_id, {amount} AS amount, "
                f"{k + 1} AS seq, {after} AS balance_after FROM bench_slots UNION ALL "
                f"SELECT 2 * ({first} + r), {first} + r, {sink}, -({amount}), NULL, NULL FROM bench_slots"
                ") AS e ORDER BY id"))
        if k % 24 == 23:
            print(f"    ledger: {LEDGER_START + k // 24} written, {(k + 1) * n * 2:,} entries, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE bench_slots"))
        if pg:
            for table in ("ledger_transactions", "ledger_entries"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"))
    with db.write_txn() as s:  # the dashboards' monthly totals, which the posting keeps, from what was written
        ledger.rebuild_month_totals(s)
    t0 = time.perf_counter()
    with db.read_txn() as s:
        problems = ledger.verify(s)
    assert not problems, problems[:3]
    print(f"    ledger: verified in {time.perf_counter() - t0:.0f} s", flush=True)
    with db.engine.connect() as conn:  # settle: what a build leaves to flush must not land in the measurements
        if pg:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
            conn.exec_driver_sql("CHECKPOINT")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    os.sync()


def bench_ledger_statement(url: str, scale: float) -> list[Row]:
    from app.ledger import service as ledger

    entries = int(10_000_000 * scale)
    ledger_url, built = ledger_db(url, entries)
    print(f"    ledger of {entries:,} entries: " + (f"built in {built:.0f} s" if built else "cached"), flush=True)
    db = Database(ledger_url)
    with db.read_txn() as s:
        households = list(s.execute(text("SELECT household_id FROM ledger_accounts WHERE kind = 'household'"))
                          .scalars())
        last_entry = s.execute(text("SELECT max(id) FROM ledger_entries")).scalar_one()
    rng = random.Random(5)
    picks = [rng.choice(households) for _ in range(2_000)]

    def lookup(hid: int) -> None:
        with db.read_txn() as s:
            bal = ledger.balance(s, hid)
            st = ledger.statement(s, hid, offset=0, limit=20)
        assert len(st.lines) == 20 and st.balance == bal == st.lines[0].balance_after, (hid, st)

    for hid in picks[:20]:  # warm the connection pool and the caches: the figure is the steady state
        lookup(hid)
    times = []
    for hid in picks:
        t0 = time.perf_counter()
        lookup(hid)
        times.append((time.perf_counter() - t0) * 1000)
    # baseline: the same number of round trips, each fetching one random entry by primary key
    base = []
    for _ in picks:
        i = rng.randint(1, last_entry)
        t0 = time.perf_counter()
        with db.read_txn() as s:
            s.execute(text("SELECT amount FROM ledger_entries WHERE id = :i"), {"i": i}).all()
        base.append((time.perf_counter() - t0) * 1000)
    db.dispose()
    med, p99 = statistics.median(times), percentile(times, 99)
    kind = "SQLite" if url.startswith("sqlite") else "PostgreSQL"
    return [Row(f"余额 + 明细首页（20 条），{last_entry:,} 条分录的账本中随机 {len(picks):,} 户（每户 {LEDGER_YEARS} 年 "
                f"{LEDGER_YEARS * 24} 条）：中位数 {med:.2f} ms", kind, f"p99 {p99:.2f} ms",
                f"{statistics.median(base):.2f} ms（按主键取一条分录，p99 {percentile(base, 99):.2f} ms）", None,
                "p99 < 10 ms", p99 < 10)]
