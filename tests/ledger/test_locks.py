"""Postings with idempotency keys take no lock per key: a county's monthly close fits a stock PostgreSQL's lock
table (max_locks_per_transaction 64), and two transactions racing with the same key still meet at the key's unique
index: the second replays the first or is refused with a 409, never a 500."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import insert, text

from app.core.context import Actor
from app.db import Database
from app.errors import Conflict
from app.households.models import Household
from app.ledger import service as ledger
from tests.support.db import PG_URL
from tests.support.factories import make_household, make_village

ADMIN = Actor(user_id=None, name="县管理员", role="county_admin")


def _village_with(db: Database, n: int) -> tuple[int, list[int]]:
    with db.write_txn() as s:
        v = make_village(s)
        make_household(s, v)
        s.execute(insert(Household), [{"village_id": v.id, "number": f"B{i:05d}", "number_sort": f"B{i:05d}",
                                       "head_name": f"户主{i}"} for i in range(n - 1)])
        ids = [int(i) for i in s.execute(text("SELECT id FROM households WHERE village_id = :v ORDER BY id"),
                                         {"v": v.id}).scalars()]
        return v.id, ids  # type: ignore[return-value]


@pytest.mark.skipif(not PG_URL, reason="SQLite takes no advisory locks: its one writer serialises every key")
def test_a_keyed_batch_takes_a_bounded_number_of_locks(db: Database) -> None:
    vid, hids = _village_with(db, 1_200)  # past COPY_FROM: the close's own path
    postings = [ledger.award_posting(h, vid, 10, "2026年10月 月度评比", idempotency_key=f"round-9:{h}") for h in hids]
    with db.write_txn() as s:
        res = ledger.post_many(s, ADMIN, postings)
        held = s.execute(text("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'"))
        advisory = int(held.scalar_one())
    assert res.posted == 1_200
    assert advisory <= 2  # the audit chain's tail; before: one per key (1,200; the demo county's close ran out)
    with db.write_txn() as s:  # sent again: every posting found by its key
        assert ledger.post_many(s, ADMIN, postings).replayed == 1_200


def _hold_then_commit(db: Database, posting: ledger.Posting, ready: threading.Event, go: threading.Event,
                      out: dict[str, object]) -> None:
    with db.write_txn() as s:
        out["first"] = ledger.post(s, ADMIN, posting)
        ready.set()
        go.wait(20)


def _race(db: Database, first: ledger.Posting, second: list[ledger.Posting]) -> tuple[object, int]:
    """`first` posted and held uncommitted; `second` posted meanwhile (it waits at the key), then `first` commits.
    Every account exists before (see `_opened`)."""
    ready, go, out = threading.Event(), threading.Event(), {}
    holder = threading.Thread(target=_hold_then_commit, args=(db, first, ready, go, out))
    holder.start()
    assert ready.wait(20)
    result: dict[str, object] = {}

    def post_second() -> None:
        try:
            with db.write_txn() as s:
                result["ok"] = ledger.post_many(s, ADMIN, second) if len(second) > 1 else ledger.post(s, ADMIN, second[0])
        except Exception as e:  # the test inspects what came out
            result["error"] = e

    racer = threading.Thread(target=post_second)
    racer.start()
    racer.join(1.0)  # on PostgreSQL it now waits at the key's index (or the household's row); on SQLite, for the writer
    go.set()
    holder.join(20)
    racer.join(20)
    assert not racer.is_alive() and "first" in out
    with db.read_txn() as s:
        count = ledger.transaction_count(s)
    return result.get("error", result.get("ok")), count


def _opened(db: Database, n: int) -> tuple[int, list[int]]:
    """A village whose households' and village's accounts exist, each household holding 1 point: two transactions
    creating the same account take turns, which would hide the race at the key that these tests are about."""
    vid, hids = _village_with(db, n)
    with db.write_txn() as s:
        ledger.post_many(s, ADMIN, [ledger.award_posting(h, vid, 1, "期初积分") for h in hids])
    return vid, hids


@pytest.mark.parametrize("batch", [0, 2, ledger.COPY_FROM + 1])  # one posting; a small batch; a batch sent by COPY
def test_the_same_key_for_another_household_at_the_same_moment_is_a_409(db: Database, batch: int) -> None:
    vid, hids = _opened(db, max(batch, 1) + 1)
    first = ledger.award_posting(hids[0], vid, 10, "好人好事", idempotency_key="same-key")
    second = [ledger.award_posting(hids[1], vid, 10, "好人好事", idempotency_key="same-key")]
    second += [ledger.award_posting(h, vid, 5, "好人好事", idempotency_key=f"other-{h}") for h in hids[2:batch + 1]]
    outcome, count = _race(db, first, second)
    assert isinstance(outcome, Conflict) and outcome.code == "idempotency_conflict", outcome
    assert count == len(hids) + 1  # the opening awards and the first; nothing of the refused batch
    with db.read_txn() as s:
        assert [ledger.balance(s, h) for h in hids] == [11] + [1] * (len(hids) - 1)
        assert ledger.verify(s) == []


def test_the_same_request_at_the_same_moment_posts_once(db: Database) -> None:
    vid, (h1, h2) = _opened(db, 2)
    first = ledger.award_posting(h1, vid, 10, "好人好事", idempotency_key="twice")
    outcome, count = _race(db, first, [first, ledger.award_posting(h2, vid, 4, "拾金不昧", idempotency_key="h2")])
    assert isinstance(outcome, ledger.BulkResult) and (outcome.posted, outcome.replayed) == (1, 1), outcome
    assert count == 2 + 2
    with db.read_txn() as s:
        assert ledger.balance(s, h1) == 11 and ledger.balance(s, h2) == 5 and ledger.verify(s) == []
