"""No double spend, whatever the concurrency: real HTTP clients in 16 threads against the real service (uvicorn on a
free port) and a real database (SQLite file, and PostgreSQL when ZF_TEST_DATABASE_URL is set).

400 spend requests of 10 points against a balance of 1,000: 200 distinct idempotency keys, each sent twice, in a
shuffled order. Exactly 100 succeed, 100 are answered as replays of those, 200 are refused for insufficient points
(each refused key is refused twice: a refusal stores nothing), the balance ends at 0, verify is clean, no 5xx.
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from app.auth import service as auth
from app.config import Settings
from app.core.context import Actor
from app.db import Database
from app.ledger import service as ledger
from tests.factories import make_grant, make_household, make_store, make_user, make_village
from tests.live import serve

SYSTEM = Actor.system("测试")
THREADS = 16
KEYS = 200
POINTS = 10
START = 1_000


def test_sixteen_threads_cannot_double_spend(settings: Settings, db: Database) -> None:
    with db.write_txn() as s:
        v = make_village(s)
        store = make_store(s, v)
        h = make_household(s, v)
        clerk = make_user(s, "counter")
        grant = make_grant(s, clerk, "store_clerk", store_id=store.id)  # type: ignore[arg-type]
        token = auth.create_api_token(s, SYSTEM, user_id=clerk.id, grant_id=grant.id, name="收银机",  # type: ignore[arg-type]
                                      via="cli").secret
        ledger.award(s, SYSTEM, household_id=h.id, points=START, memo="期初积分")  # type: ignore[arg-type]
        hid, sid = h.id, store.id
    requests = [f"spend-{i:03d}" for i in range(KEYS)] * 2
    random.Random(7).shuffle(requests)

    with serve(settings) as server:
        clients = [httpx.Client(base_url=server.url, timeout=60,
                                headers={"Authorization": f"Bearer {token}"}) for _ in range(THREADS)]

        def send(job: tuple[int, str]) -> tuple[str, int, bool, str]:
            n, key = job
            r = clients[n % THREADS].post(f"/api/v1/stores/{sid}/spends", headers={"Idempotency-Key": key},
                                          json={"household_id": hid, "points": POINTS, "memo": f"兑换 {key}"})
            body = r.json()
            code = body["error"]["code"] if r.status_code >= 400 else ""
            return key, r.status_code, r.headers.get("Idempotent-Replayed") == "true", code

        try:
            with ThreadPoolExecutor(THREADS) as pool:
                results = list(pool.map(send, enumerate(requests)))
        finally:
            for c in clients:
                c.close()

    outcome = Counter((status, replayed, code) for _key, status, replayed, code in results)
    assert not [r for r in results if r[1] >= 500], outcome
    assert outcome == {(201, False, ""): 100, (200, True, ""): 100, (409, False, "insufficient_points"): 200}, outcome
    by_key: dict[str, set[int]] = {}
    for key, status, _replayed, _code in results:
        by_key.setdefault(key, set()).add(status)
    assert all(statuses in ({201, 200}, {409}) for statuses in by_key.values()), by_key  # both answers agree
    with db.read_txn() as s:
        assert ledger.balance(s, hid) == 0  # type: ignore[arg-type]
        assert ledger.statement(s, hid, limit=1).total == 1 + 100  # type: ignore[arg-type]
        assert ledger.account_balance(s, ledger.redeemed_account(sid)) == START  # type: ignore[arg-type]
        assert ledger.verify(s) == []
