"""One household at two counters at once: real HTTP clients in 16 threads against the real service (uvicorn on a
free port) and a real database (SQLite file, and PostgreSQL when ZF_TEST_DATABASE_URL is set).

400 redemption requests from two store clerks' tills: 200 carts (one idempotency key each), each sent twice, in a
shuffled order. Half the carts take one bottle of oil (40 points; only 12 in stock), half one bag of soap powder
(25 points, plenty). The household has 1,000 points, less than the 200 carts want. Whatever the interleaving:
- the points are never overdrawn and the oil never goes below zero;
- every success has its ledger transaction and its stock movement, every refusal neither (`store verify` is clean,
  and the number of redemptions, ledger redemptions and outbound movements all equal the successes);
- a key's two answers agree (a success and its replay, or two refusals), and nothing answers 5xx.
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from app.auth.service import accounts as auth
from app.config import Settings
from app.core.context import Actor
from app.db import Database
from app.ledger import service as ledger
from app.store.models import Redemption, StockMovement
from app.store.service import stock, stores
from tests.support.factories import make_grant, make_household, make_stocked_item, make_store, make_user, make_village
from tests.support.live import serve

SYSTEM = Actor.system("测试")
THREADS = 16
CARTS = 200
START = 1_000


def test_two_counters_sixteen_threads_never_overdraw_points_or_stock(settings: Settings, db: Database) -> None:
    with db.write_txn() as s:
        v = make_village(s)
        store = make_store(s, v)
        h = make_household(s, v)
        oil = make_stocked_item(s, store, name="食用油", points=40, stock=12, unit="桶")
        powder = make_stocked_item(s, store, name="洗衣粉", points=25, stock=500)
        tokens = []
        for n in (1, 2):  # two tills, two clerks
            clerk = make_user(s, f"till{n}")
            grant = make_grant(s, clerk, "store_clerk", store_id=store.id)  # type: ignore[arg-type]
            tokens.append(auth.create_api_token(s, SYSTEM, user_id=clerk.id, grant_id=grant.id,  # type: ignore[arg-type]
                                                name=f"收银机{n}", via="cli").secret)
        ledger.award(s, SYSTEM, household_id=h.id, points=START, memo="期初积分")  # type: ignore[arg-type]
        hid, sid, oil_id, powder_id = h.id, store.id, oil.id, powder.id
    jobs = [f"cart-{i:03d}" for i in range(CARTS)] * 2
    random.Random(11).shuffle(jobs)

    def cart(key: str) -> int:
        return oil_id if int(key[-3:]) % 2 else powder_id  # type: ignore[return-value]

    with serve(settings) as server:
        clients = [httpx.Client(base_url=server.url, timeout=60,
                                headers={"Authorization": f"Bearer {tokens[n % 2]}"}) for n in range(THREADS)]

        def send(job: tuple[int, str]) -> tuple[str, int, bool, str]:
            n, key = job
            r = clients[n % THREADS].post(f"/api/v1/stores/{sid}/redemptions", headers={"Idempotency-Key": key},
                                          json={"household_id": hid, "identity_note": "户主本人",
                                                "lines": [{"item_id": cart(key), "quantity": 1}]})
            code = r.json()["error"]["code"] if r.status_code >= 400 else ""
            return key, r.status_code, r.headers.get("Idempotent-Replayed") == "true", code

        try:
            with ThreadPoolExecutor(THREADS) as pool:
                results = list(pool.map(send, enumerate(jobs)))
        finally:
            for c in clients:
                c.close()

    outcome = Counter((status, replayed, code) for _key, status, replayed, code in results)
    assert not [r for r in results if r[1] >= 500], outcome
    assert set(outcome) <= {(201, False, ""), (200, True, ""), (422, False, "insufficient_points"),
                            (422, False, "stock_short")}, outcome
    by_key: dict[str, set[int]] = {}
    for key, status, _replayed, _code in results:
        by_key.setdefault(key, set()).add(status)
    assert all(statuses in ({201, 200}, {422}) for statuses in by_key.values()), by_key
    won = [k for k, statuses in by_key.items() if 201 in statuses]
    assert outcome[(201, False, "")] == outcome[(200, True, "")] == len(won)
    oil_won = sum(1 for k in won if cart(k) == oil_id)
    spent = sum(40 if cart(k) == oil_id else 25 for k in won)
    assert oil_won <= 12 and outcome[(422, False, "insufficient_points")] > 0  # the points ran out
    with db.read_txn() as s:
        balance = ledger.balance(s, hid)
        assert balance == START - spent and balance >= 0
        assert stock.get_item(s, oil_id).stock == 12 - oil_won >= 0
        assert stock.get_item(s, powder_id).stock == 500 - (len(won) - oil_won)
        assert s.execute(select(func.count()).select_from(Redemption)).scalar_one() == len(won)
        assert s.execute(select(func.count()).select_from(StockMovement)
                         .where(StockMovement.kind == "redemption")).scalar_one() == len(won)
        assert len(ledger.redemption_transactions(s)) == len(won)
        problems, _ = stores.verify(s)
        assert problems == [] and ledger.verify(s) == []
