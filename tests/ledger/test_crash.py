"""A bulk posting killed half-way lands entirely or not at all.

A child process opens the database and, in one write transaction, posts 20,000 awards with `post_many`; the test
kills it with SIGKILL (no cleanup of any kind runs) at a chosen point: inside post_many (the transactions and entries
written, the balances not yet), after post_many returned but before the commit, and at a random moment. Then the
database must hold none or all of the 20,000 transactions, consistent balances, a clean `verify`, and (SQLite) pass
`PRAGMA integrity_check`; and it must still take new postings.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.db import Database
from app.ledger import service
from tests.support.factories import SYSTEM, make_household, make_village

ROOT = Path(__file__).resolve().parents[2]
POSTINGS = 20_000
HOUSEHOLDS = 40
CHILD_APP = "zf-ledger-crash-child"

CHILD = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from sqlalchemy import event
    from app.core.context import Actor
    from app.db import Database
    from app.ledger import service

    url, mode, village_id, households = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].split(",")
    n = int(sys.argv[6])
    db = Database(url)
    actor = Actor.system("批量测试")
    postings = [service.award_posting(int(households[i % len(households)]), village_id, 1 + i % 7,
                                      f"月度评比奖励 第{i}笔") for i in range(n)]

    if mode == "inside":
        @event.listens_for(db.engine, "before_cursor_execute")
        def pause_before_balances(conn, cursor, statement, parameters, context, executemany):
            # the transactions and entries are written; the balances are next
            if statement.lstrip().upper().startswith("UPDATE LEDGER_ACCOUNTS"):
                print("INSIDE", flush=True)
                time.sleep(600)

    with db.write_txn() as session:
        print("START", flush=True)
        service.post_many(session, actor, postings, note="崩溃测试")
        print("POSTED", flush=True)
        if mode == "posted":
            time.sleep(600)
    print("COMMITTED", flush=True)
''')


def expected_points(household_ids: list[int]) -> dict[int, int]:
    out = dict.fromkeys(household_ids, 0)
    for i in range(POSTINGS):
        out[household_ids[i % len(household_ids)]] += 1 + i % 7
    return out


def _lines(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line.strip())
    into.put("EOF")


def _wait_for(lines: queue.Queue[str], marker: str, proc: subprocess.Popen[str], errors: Path,
              timeout: float = 120) -> float:
    """Block until the child prints `marker`; return the time it was seen."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"the child never printed {marker}") from None
        if line == marker:
            return time.monotonic()
        if line == "EOF":
            raise AssertionError(f"the child ended before {marker}: {errors.read_text()}")


def _wait_until_pg_lets_go(url: str) -> None:
    """PostgreSQL notices the dead client and rolls its transaction back: wait for its backend to go."""
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    try:
        deadline = time.monotonic() + 30
        with engine.connect() as conn:
            while conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :a "
                                    "AND datname = current_database()"), {"a": CHILD_APP}).scalar_one():
                assert time.monotonic() < deadline, "the killed child's backend is still there"
                time.sleep(0.05)
                conn.rollback()
    finally:
        engine.dispose()


def run_and_kill(db: Database, tmp_path: Path, mode: str, village_id: int, household_ids: list[int],
                 delay: float | None = None) -> tuple[list[str], float]:
    """Run the child; kill it at its marker (`inside`, `posted`) or `delay` s after it starts posting. Returns the
    markers it printed and the seconds from its START to the kill."""
    script = tmp_path / "bulk_post.py"
    script.write_text(CHILD)
    url = db.url
    if not db.is_sqlite:
        url = make_url(url).update_query_dict({"application_name": CHILD_APP}).render_as_string(hide_password=False)
    errors = tmp_path / f"child-{mode}.err"
    with errors.open("w") as err:
        proc = subprocess.Popen([sys.executable, str(script), str(ROOT), url, mode, str(village_id),
                                 ",".join(map(str, household_ids)), str(POSTINGS)],
                                stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp_path)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen = ["START"]
    try:
        started = _wait_for(lines, "START", proc, errors)
        if mode == "inside":
            _wait_for(lines, "INSIDE", proc, errors)
            seen.append("INSIDE")
        elif mode == "posted":
            _wait_for(lines, "POSTED", proc, errors)
            seen.append("POSTED")
        else:
            assert delay is not None
            time.sleep(max(0.0, started + delay - time.monotonic()))
        os.kill(proc.pid, signal.SIGKILL)
        killed_after = time.monotonic() - started
    finally:
        proc.kill()  # (already dead, or a failed wait above)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    if not db.is_sqlite:
        _wait_until_pg_lets_go(db.url)
    return seen, killed_after


@dataclass(frozen=True)
class Before:
    txs: int
    entries: int
    audited: int
    balances: dict[int, int]


def before(db: Database, household_ids: list[int]) -> Before:
    with db.read_session() as s:
        return Before(service.transaction_count(s), _entries(s), _audited(s), service.balances(s, household_ids))


def _entries(s: Session) -> int:
    return int(s.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one())


def _audited(s: Session) -> int:
    return int(s.execute(text("SELECT count(*) FROM audit_events WHERE action = 'ledger.post_many'")).scalar_one())


def assert_all_or_nothing(db: Database, household_ids: list[int], was: Before) -> bool:
    """Returns whether the bulk posting is there (all of it) or not (none of it)."""
    reopened = Database(db.url)  # a new engine: nothing cached from before the crash
    try:
        with reopened.read_session() as s:
            if reopened.is_sqlite:
                assert s.execute(text("PRAGMA integrity_check")).scalars().all() == ["ok"]
            txs = service.transaction_count(s) - was.txs
            entries = _entries(s) - was.entries
            audited = _audited(s) - was.audited
            balances = service.balances(s, household_ids)
            violations = service.verify(s)
        assert txs in (0, POSTINGS), f"{txs} of {POSTINGS} transactions survived the crash"
        landed = txs == POSTINGS
        assert entries == 2 * txs
        assert audited == int(landed)
        added = expected_points(household_ids) if landed else dict.fromkeys(household_ids, 0)
        assert balances == {h: was.balances[h] + added[h] for h in household_ids}
        assert violations == []
        # and the database takes new postings (no lock left behind, the chains carry on)
        with reopened.write_txn() as s:
            service.award(s, SYSTEM, household_id=household_ids[0], points=5, memo="崩溃之后的第一笔")
        with reopened.read_session() as s:
            assert service.balance(s, household_ids[0]) == balances[household_ids[0]] + 5
            assert service.verify(s) == []
        return landed
    finally:
        reopened.dispose()


def _village(db: Database) -> tuple[int, list[int]]:
    with db.write_txn() as s:
        v = make_village(s)
        household_ids = [make_household(s, v).id for _ in range(HOUSEHOLDS)]
        assert v.id is not None and None not in household_ids
        return v.id, household_ids  # type: ignore[return-value]


def test_a_bulk_posting_killed_inside_post_many_leaves_nothing(db: Database, tmp_path: Path) -> None:
    """Killed with the 20,000 transactions and 40,000 entries written and the balances not yet."""
    village_id, household_ids = _village(db)
    was = before(db, household_ids)
    seen, _ = run_and_kill(db, tmp_path, "inside", village_id, household_ids)
    assert "POSTED" not in seen and "COMMITTED" not in seen
    assert assert_all_or_nothing(db, household_ids, was) is False


def test_a_bulk_posting_killed_before_its_commit_or_at_a_random_moment_lands_whole_or_not_at_all(
        db: Database, tmp_path: Path) -> None:
    village_id, household_ids = _village(db)
    # 1. killed after post_many returned, before the commit: nothing
    was = before(db, household_ids)
    seen, posting_took = run_and_kill(db, tmp_path, "posted", village_id, household_ids)
    assert "COMMITTED" not in seen
    assert assert_all_or_nothing(db, household_ids, was) is False
    # 2. killed at a random moment, somewhere between the start and a little after the commit (as long as
    # posting took just now): all or nothing, and the same answer as the child's last word
    delay = random.uniform(0, 1.3 * posting_took)
    was = before(db, household_ids)
    seen, _ = run_and_kill(db, tmp_path, "random", village_id, household_ids, delay=delay)
    landed = assert_all_or_nothing(db, household_ids, was)
    assert not ("COMMITTED" in seen and not landed), (delay, seen)
    assert not (landed and "POSTED" not in seen), (delay, seen)
    print(f"killed {delay:.2f} s after the start (posting took {posting_took:.2f} s): "
          f"{'all' if landed else 'none'} of it landed; the child printed {seen}")
