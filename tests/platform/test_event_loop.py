"""No route touches the database on the event loop.

A route declared `async def` runs on the worker's event loop. If it queries the database and the query waits (for a
row lock, the audit chain's lock, a pooled connection), every other request of that worker stops with it, and the
transactions those requests hold keep their locks, so the wait can become a deadlock between workers. The month-end
rush (scripts/rush.py) found exactly that: the rating grid's save, then an `async def`, waited on the event loop for
the audit lock held by a redemption in the other worker, which waited for a row locked by a transaction of the
stalled worker. Routes that need the raw body or the form take it from a dependency (app.deps.RawBody, PostedForm)
and are plain `def`s, run in a worker thread.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy import text

from app.db import Database
from app.deps import db_session
from app.main import create_app


def _uses_session(route: APIRoute) -> bool:
    todo, seen = list(route.dependant.dependencies), set()
    while todo:
        dep = todo.pop()
        if id(dep) in seen:
            continue
        seen.add(id(dep))
        if dep.call is db_session:
            return True
        todo.extend(dep.dependencies)
    return False


def test_no_route_that_takes_a_database_session_runs_on_the_event_loop(settings) -> None:
    app = create_app(settings)
    offending = []
    checked = 0
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute) and _uses_session(route):
            checked += 1
            if inspect.iscoroutinefunction(route.endpoint):
                offending.append(f"{sorted(route.methods)} {ctx.path} ({route.endpoint.__module__}."
                                 f"{route.endpoint.__name__})")
    assert checked > 100  # the walk reached the routes
    assert offending == [], "async routes that take a database session:\n" + "\n".join(offending)


def test_postgresql_waits_for_a_lock_a_bounded_time(db: Database) -> None:
    """On PostgreSQL every connection carries a lock timeout and an idle-transaction timeout (SQLite waits on its
    own busy timeout)."""
    if db.is_sqlite:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15_000
        return
    with db.engine.connect() as conn:
        assert conn.execute(text("SHOW lock_timeout")).scalar() == "15s"
        assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "5min"


def test_no_pooled_connection_free_is_a_503_that_says_try_again(app, db, demo) -> None:
    """Every pooled connection taken (the rush found requests queueing for them): the request is refused after the
    pool's wait with 503, Retry-After and a Chinese message, and nothing is saved, instead of a 500."""
    from sqlalchemy import create_engine

    from app.db import WRITE_OPTION
    from tests.support.clients import api_login

    c = api_login(app, "admin")
    hid = c.get("/api/v1/households", params={"limit": 1}).json()["items"][0]["id"]
    before = c.get(f"/api/v1/households/{hid}/points").json()
    served = app.state.db
    small = create_engine(served.engine.url, pool_size=1, max_overflow=0, pool_timeout=0.2,
                          connect_args={"check_same_thread": False} if served.is_sqlite else {})
    served.engine, served._write_engine = small, small.execution_options(**{WRITE_OPTION: True})
    held = small.connect()  # the one connection, taken
    try:
        r = c.post(f"/api/v1/households/{hid}/points/adjustments", json={"amount": 5, "reason": "补录"})
    finally:
        held.close()
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "5"
    assert r.json()["error"]["code"] == "unavailable" and "没有保存" in r.json()["error"]["message"]
    assert c.get(f"/api/v1/households/{hid}/points").json() == before
    small.dispose()


def test_a_nul_character_in_text_is_bad_input_not_a_server_error(app, db, demo) -> None:
    """PostgreSQL refuses NUL in text (found by schemathesis): a 422 that says what to remove. SQLite, which would
    store it, refuses it the same way (issue 17)."""
    from tests.support.clients import api_login

    c = api_login(app, "admin")
    hid = c.get("/api/v1/households", params={"limit": 1}).json()["items"][0]["id"]
    r = c.post(f"/api/v1/households/{hid}/points/adjustments", json={"amount": 5, "reason": "补录\x00积分"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid" and "空字符" in r.json()["error"]["message"]


def run_on_a_loop_of_its_own(coroutine: Coroutine[Any, Any, None]) -> None:
    """asyncio.run in a thread of its own: a browser test earlier in this xdist worker leaves Playwright's event loop
    running in the main thread, where asyncio.run would refuse to start."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


def test_requests_beyond_the_workers_capacity_wait_their_turn_then_get_503() -> None:
    """At most `limit` requests inside the application; one more waits, and is refused with 503 and Retry-After
    when its wait runs out. The health check is never held back."""
    import asyncio
    import json

    from app.web.middleware import AdmissionMiddleware

    release = asyncio.Event()
    inside: list[str] = []

    async def slow_app(scope, receive, send):  # type: ignore[no-untyped-def]
        inside.append(scope["path"])
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(mw: AdmissionMiddleware, path: str) -> tuple[int, dict[str, str], bytes]:
        sent: list[dict] = []

        async def receive():  # type: ignore[no-untyped-def]
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        await mw({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
        head = sent[0]
        return head["status"], {k.decode(): v.decode() for k, v in head["headers"]}, sent[1]["body"]

    async def scenario() -> None:
        mw = AdmissionMiddleware(slow_app, limit=2, wait=0.2)
        first = [asyncio.create_task(call(mw, f"/a{i}")) for i in range(2)]
        await asyncio.sleep(0.05)
        assert inside == ["/a0", "/a1"]
        status, headers, body = await call(mw, "/a2")  # a third: waits 0.2 s, refused
        assert status == 503 and headers["retry-after"] == "5"
        assert json.loads(body)["error"]["code"] == "busy" and "再试" in json.loads(body)["error"]["message"]
        health = asyncio.create_task(call(mw, "/healthz"))  # passes even now
        await asyncio.sleep(0.05)
        assert "/healthz" in inside
        later = asyncio.create_task(call(mw, "/a3"))  # waits for a turn, which comes when the first two end
        await asyncio.sleep(0.05)
        release.set()
        assert [(await t)[0] for t in (*first, health, later)] == [200, 200, 200, 200]
        assert inside[-1] == "/a3"

    run_on_a_loop_of_its_own(scenario())


def test_a_small_body_is_read_before_its_request_takes_a_slot_and_handed_over_whole() -> None:
    """With one slot: a form whose body is still arriving holds no slot (another request is served meanwhile), and
    the application gets the body in one piece when it is in. A chunked body over READ_AHEAD_BYTES is an upload:
    it takes an upload place and a slot, gets what was read ahead then the rest, and frees its upload place as soon
    as its body is in. A client that leaves before its body is in never reaches the application."""
    import asyncio

    from app.web.middleware import READ_AHEAD_BYTES, AdmissionMiddleware

    got: dict[str, bytes] = {}
    uploads_seen: list[int] = []

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        got[scope["path"]] = body
        uploads_seen.append(mw.gauge.uploads)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = AdmissionMiddleware(app, limit=1, wait=0.5, uploads=1)

    def feeder(pieces: list[bytes], gaps: asyncio.Queue[None] | None = None):  # type: ignore[no-untyped-def]
        queue = list(pieces)

        async def receive():  # type: ignore[no-untyped-def]
            if gaps is not None:
                await gaps.get()
            if not queue:
                return {"type": "http.disconnect"}
            piece = queue.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(queue)}
        return receive

    async def call(path: str, headers: list[tuple[bytes, bytes]], receive) -> list[dict]:  # type: ignore[no-untyped-def]
        sent: list[dict] = []

        async def send(message):  # type: ignore[no-untyped-def]
            sent.append(message)

        await mw({"type": "http", "path": path, "method": "POST", "headers": headers}, receive, send)
        return sent

    async def scenario() -> None:
        gaps: asyncio.Queue[None] = asyncio.Queue()
        form = [b"login=", b"li", b"&password=x"]
        slow = asyncio.create_task(call("/slow", [(b"content-length", b"19")], feeder(form, gaps)))
        gaps.put_nowait(None)  # the first piece arrives, the rest not yet
        await asyncio.sleep(0.05)
        assert mw.gauge.receiving == 1 and mw.gauge.in_use == 0
        quick = await call("/quick", [], feeder([b""]))  # the one slot is free: served at once
        assert quick[0]["status"] == 200
        for _ in range(2):
            gaps.put_nowait(None)
        assert (await asyncio.wait_for(slow, 10))[0]["status"] == 200 and got["/slow"] == b"login=li&password=x"

        big = [b"a" * 40_000, b"b" * 40_000, b"c" * 40_000]
        sent = await asyncio.wait_for(call("/upload", [(b"transfer-encoding", b"chunked")], feeder(big)), 10)
        assert sent[0]["status"] == 200 and got["/upload"] == b"".join(big)
        assert uploads_seen[-1] == 0 and mw.gauge.uploads == 0 and mw.gauge.in_use == 0  # freed when the body was in
        assert len(got["/upload"]) > READ_AHEAD_BYTES

        gone = await call("/gone", [(b"content-length", b"100")], feeder([]))  # leaves before sending a byte
        assert gone == [] and "/gone" not in got and mw.gauge.receiving == 0

    run_on_a_loop_of_its_own(scenario())


def test_a_worker_admits_no_more_requests_than_its_database_connections(app) -> None:
    from app.db import POOL_CAPACITY
    from app.web.middleware import AdmissionMiddleware

    found = [m for m in app.user_middleware if m.cls is AdmissionMiddleware]
    assert found and found[0].kwargs["limit"] <= POOL_CAPACITY
    pool = app.state.db.engine.pool
    assert pool.size() + pool._max_overflow == POOL_CAPACITY


def test_the_api_documents_the_503_it_may_answer(client) -> None:
    """A client (a till's software) learns from /openapi.json that any call may be refused for now, with Retry-After."""
    spec = client.get("/openapi.json").json()
    redeem = spec["paths"]["/api/v1/stores/{store_id}/redemptions"]["post"]["responses"]
    assert redeem["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "Retry-After" in redeem["503"]["description"]
