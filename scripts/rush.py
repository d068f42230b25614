#!/usr/bin/env python3
"""Month-end rush and fault drills: the whole service under a county's load, over loopback, and what it keeps when a
worker or the database dies in the middle.

    uv run python scripts/rush.py rush                         # PostgreSQL, 2 workers, 5 minutes (≈ 10 with setup)
    uv run python scripts/rush.py rush --fault kill-worker     # … a worker SIGKILLed halfway
    uv run python scripts/rush.py rush --fault restart-db      # … the PostgreSQL server restarted halfway
    uv run python scripts/rush.py rush --db sqlite --fault kill-server --seconds 120   # SQLite, the one process
    uv run python scripts/rush.py close --fault kill-worker    # the monthly close over HTTP, a worker killed mid-round
    uv run python scripts/rush.py rush --seconds 30 --no-write # a short look, docs untouched

`rush`: the setup (not timed) builds a county of --villages villages with a year of finalised rounds (set-based, as
scripts/bench's dashboard does), a store in each village with a stocked catalogue, points and a card for every
household, an open rating round in --clerks villages; then starts `zhenfeng serve` (--workers; one on SQLite) and
runs, for --seconds, virtual users each with its own connection, each waiting a random (exponential) think time
between its requests:
    --counters store tills redeeming carts (API token, Idempotency-Key),
    --clerks village clerks saving a group of their rating grid (cookie session, CSRF),
    --reviewers township reviewers and county admins opening the county dashboard,
    --readers public readers of /public, a village's public page and a notice's verification page.
Then every redemption whose answer was lost (a connection cut by a fault) is sent again with its Idempotency-Key, as a
till does, to learn whether it had been done; `zhenfeng ledger verify`, `store verify` and `audit verify` run against
the database; and the books are compared with what the load believes it did: every redemption answered with success
is there (and no other), each household's balance, each item's stock, each rating cell saved.

`close`: --villages villages with a publicised round each (--households in all), finalised one after another over HTTP
by the county admin, as the township does at month end. With --fault, a worker (or on SQLite the server) is SIGKILLed
while a round's finalisation is in flight; the driver waits for the service, looks at the round and finalises it
if it is not. Then the three verify commands, and every round is finalised exactly once with its results in the book.

A fault: kill-worker (SIGKILL one of uvicorn's workers; its supervisor starts another), kill-server (SIGKILL the whole
server; this script starts it again after a second, as systemd's Restart=always would), restart-db (pg_ctlcluster
restart of the PostgreSQL server: this stops every other user of the server for a few seconds).

Results go to docs/drills.md, each run in its own section (the other sections are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import Database  # noqa: E402
from scripts import drill_report  # noqa: E402
from scripts.bench.common import ACTOR, REDEEM_SECRET, fresh_db, machine_cpu, percentile, process_cpu, settle  # noqa: E402
from scripts.bench.county import (  # noqa: E402
    EVAL_CLERK,
    EVAL_GRADES,
    EVAL_PASSWORD,
    Grader,
    add_committees,
    fill_dashboard,
    publicised_round,
    register_households,
    setup_villages,
)
from scripts.bench.report import machine, revision  # noqa: E402
from scripts.bench.server import ZhenfengServer  # noqa: E402
from scripts.bench.store import REDEEM_CATALOG  # noqa: E402

POINTS = 20_000  # each household's points before the rush: a cart never runs short
STOCK = 4_000  # units of each item in each store
YEAR = 2025  # the year of finalised rounds the dashboard reads
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# ---- the county ---------------------------------------------------------------------------------------------------

@dataclass
class County:
    url: str
    tills: list[tuple[int, str]]  # (store id, API token)
    served: dict[int, list[tuple[int, str]]]  # store id -> (household id, card payload)
    items: dict[int, list[tuple[int, int]]]  # store id -> (item id, points)
    stock0: dict[int, int]  # item id -> units before the rush
    rounds: dict[str, tuple[int, list[int], list[str]]]  # clerk login -> (round id, household ids, themes)
    reviewers: list[str]  # logins
    village_codes: list[str]
    notice_codes: list[str]
    redemption_id0: int  # the last redemption before the rush
    setup_s: float = 0.0


def build(url: str, villages: int, households: int, counters: int, clerks: int, reviewers: int) -> County:
    """The county of the rush (setup, not measured)."""
    from app.auth import security
    from app.auth.service import accounts as auth
    from app.evaluation.service import rounds
    from app.ledger import service as ledger
    from app.notices.service import notices
    from app.store.service import cards, stock, stores

    t0 = time.perf_counter()
    db = Database(url)
    built = fill_dashboard(db, YEAR, villages, households, store_rows=False)
    db.dispose()
    db = Database(url)  # fill_dashboard turned off SQLite's synchronous writes on its engine: a fresh one
    vids: list[int] = built["villages"]
    with db.read_txn() as s:
        homes: dict[int, list[int]] = defaultdict(list)
        for vid, hid in s.execute(text("SELECT village_id, id FROM households ORDER BY id")):
            homes[vid].append(hid)
        store_of = {v: sid for sid, v in s.execute(text("SELECT id, village_id FROM stores"))}
        codes = {v: c for v, c in s.execute(text("SELECT id, code FROM villages"))}
        township = s.execute(text("SELECT id FROM townships ORDER BY id")).scalars().first()
    clerk_villages = vids[1:clerks + 1]  # the first village has its committee from the setup already
    committees = add_committees(db, {v: homes[v] for v in clerk_villages})
    security.set_hash_cost(memory_kib=1024, time_cost=1)  # the users of the rush log in once, in the setup
    key = cards.card_key(REDEEM_SECRET)
    month = rounds.prev_month(rounds.current_month())
    with db.write_txn() as s:
        every = [(h, v) for v in vids for h in homes[v]]
        ledger.post_many(s, ACTOR, [ledger.award_posting(h, v, POINTS, "演练：预存积分") for h, v in every])
        issued = cards.ensure_cards(s, ACTOR, [h for h, _ in every])
        served: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for h, v in every:
            served[store_of[v]].append((h, cards.payload(key, issued[h])))
        items: dict[int, list[tuple[int, int]]] = defaultdict(list)
        stock0: dict[int, int] = {}
        for vid, sid in store_of.items():
            fund = stores.record_fund(s, ACTOR, village_id=vid, source="county", received_on=datetime(2026, 1, 5).date(),
                                      amount_fen=sum(c for *_, c in REDEEM_CATALOG) * STOCK, document_no="振财〔2026〕1号")
            for name, unit, points, cost in REDEEM_CATALOG:
                item = stock.create_item(s, ACTOR, sid, stock.ItemInput(name=name, unit=unit, points=points,
                                                                       cost_fen=cost))
                stock.purchase(s, ACTOR, item.id, quantity=STOCK, cost_fen=cost * STOCK,  # type: ignore[arg-type]
                               fund_id=fund.id)  # type: ignore[arg-type]
                items[sid].append((item.id, points))  # type: ignore[arg-type]
                stock0[item.id] = STOCK  # type: ignore[index]
        sids = sorted(store_of.values())
        tills = []
        for n in range(counters):
            sid = sids[n % len(sids)]
            u = auth.create_user(s, ACTOR, login=f"till{n + 1}", display_name=f"收银员{n + 1}",
                                 password=EVAL_PASSWORD, must_change_password=False)
            g = auth.grant_role(s, ACTOR, u.id, "store_clerk", store_id=sid)  # type: ignore[arg-type]
            tills.append((sid, auth.create_api_token(s, ACTOR, user_id=u.id, grant_id=g.id,  # type: ignore[arg-type]
                                                     name=f"收银台{n + 1}", via="cli").secret))
        opened: dict[int, tuple[int, list[int], list[str]]] = {}
        clerk_logins: dict[str, int] = {}
        for vid in clerk_villages:
            u = auth.create_user(s, ACTOR, login=f"clerk{vid}", display_name=f"文书{vid}",
                                 password=EVAL_PASSWORD, must_change_password=False)
            auth.grant_role(s, ACTOR, u.id, "village_clerk", village_id=vid)  # type: ignore[arg-type]
            rnd = rounds.open_round(s, EVAL_CLERK, village_id=vid, month=month, mode="consensus",
                                    present=committees[vid])
            themes = [t.code for t in rounds.ruleset_of(s, rnd).themes]
            opened[vid] = (rnd.id, homes[vid], themes)  # type: ignore[assignment]
            clerk_logins[u.login] = vid
        logins = []
        for n in range(reviewers):
            u = auth.create_user(s, ACTOR, login=f"reviewer{n + 1}", display_name=f"审核员{n + 1}",
                                 password=EVAL_PASSWORD, must_change_password=False)
            if n % 4 == 3:
                auth.grant_role(s, ACTOR, u.id, "county_admin")  # type: ignore[arg-type]
            else:
                auth.grant_role(s, ACTOR, u.id, "township_reviewer", township_id=township)  # type: ignore[arg-type]
            logins.append(u.login)
        notice_codes = []
        for vid in vids[:10]:
            d = notices.draft(s, ACTOR, "results", vid, YEAR * 100 + 12, verify_base="http://127.0.0.1")
            notice_codes.append(notices.register(s, ACTOR, d, None, key=notices.notice_key(REDEEM_SECRET)).code)
        before = int(s.execute(text("SELECT coalesce(max(id), 0) FROM redemptions")).scalar_one())
    settle(db)
    db.dispose()
    return County(url, tills, dict(served), dict(items), stock0,
                  {f"clerk{v}": opened[v] for v in clerk_villages}, logins, [codes[v] for v in vids], notice_codes,
                  before, time.perf_counter() - t0)


# ---- the server ---------------------------------------------------------------------------------------------------

class Server(ZhenfengServer):
    """`zhenfeng serve` that can be killed and started again."""

    def __init__(self, url: str, workers: int, var: Path) -> None:
        self._args = (url, workers, var)
        super().__init__(url, workers, var)

    def __enter__(self) -> Server:
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def start_again(self) -> None:
        """On the same address, as a supervisor restarting it would."""
        super().__init__(*self._args, port=self.port)


def login(base: str, who: str) -> tuple[dict[str, str], str]:
    """A cookie session for `who` (the setup's password): (cookies, its CSRF token)."""
    with httpx.Client(base_url=base, timeout=60) as c:
        token = CSRF.search(c.get("/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/login", data={"login": who, "password": EVAL_PASSWORD, "csrf_token": token},
                   follow_redirects=False)
        if r.status_code != 303:
            raise RuntimeError(f"{who} could not log in: {r.status_code} {r.text[:200]}")
        csrf = CSRF.search(c.get("/account").text).group(1)  # type: ignore[union-attr]
        return dict(c.cookies), csrf


# ---- the load -----------------------------------------------------------------------------------------------------

@dataclass
class Tally:
    """What the virtual users did and saw."""

    t0: float = 0.0
    ok: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # kind -> latencies (ms)
    failed: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))  # kind -> what -> n
    timeline: list[tuple[float, str, bool]] = field(default_factory=list)  # (s since t0, kind, ok)
    settled: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # latencies after WARMUP
    failures: list[tuple[float, str, str]] = field(default_factory=list)  # (s since t0 when sent, kind, what)
    redeemed: dict[int, tuple[int, int, tuple[tuple[int, int], ...]]] = field(default_factory=dict)
    # ^ redemption id -> (household, points, lines) for every one answered with success
    lost: list[tuple[int, dict[str, Any], str]] = field(default_factory=list)  # (till, body, key): answer never read
    refused: int = 0  # redemptions answered with a 4xx: nothing may have been spent
    grades: dict[tuple[int, int, str], str] = field(default_factory=dict)  # (round, household, theme) -> grade saved
    grade_unknown: set[tuple[int, int, str]] = field(default_factory=set)  # cells of a save whose answer was lost

    def note(self, kind: str, began: float, ok: bool, what: str = "") -> None:
        now = time.perf_counter()
        if ok:
            self.ok[kind].append((now - began) * 1000)
            if began - self.t0 >= WARMUP:
                self.settled[kind].append((now - began) * 1000)
        else:
            self.failed[kind][what] += 1
            self.failures.append((began - self.t0, kind, what))
        self.timeline.append((now - self.t0, kind, ok))


def _what(e: Exception | httpx.Response) -> str:
    if isinstance(e, httpx.Response):
        try:
            return f"{e.status_code} {e.json().get('error', {}).get('code', '')}".strip()
        except ValueError:
            return str(e.status_code)
    return type(e).__name__


async def rush(county: County, base: str, seconds: float, pace: float, think: dict[str, float], readers: int,
               sessions: dict[str, tuple[dict[str, str], str]], fault: Any, seed: int = 41) -> Tally:
    tally = Tally()
    end = [0.0]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(60.0, connect=10.0)

    def pause(rng: random.Random, kind: str) -> float:
        return rng.expovariate(pace / think[kind])

    async def look(c: httpx.AsyncClient, kind: str, path: str) -> None:
        """A page read: noted as done when answered 200."""
        began = time.perf_counter()
        try:
            r = await c.get(path)
            tally.note(kind, began, r.status_code == 200, _what(r))
        except httpx.HTTPError as e:
            tally.note(kind, began, False, _what(e))

    async def till(n: int) -> None:
        sid, token = county.tills[n]
        rng = random.Random(seed * 1000 + n)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout,
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            await asyncio.sleep(rng.uniform(0, think["redeem"] / pace))
            while time.perf_counter() < end[0]:
                hid, card = rng.choice(county.served[sid])
                lines = tuple((i, rng.randint(1, 2)) for i, _ in rng.sample(county.items[sid], rng.randint(1, 3)))
                body = {"household_id": hid, "card": card, "lines": [{"item_id": i, "quantity": q} for i, q in lines]}
                key = uuid.UUID(int=rng.getrandbits(128), version=4).hex
                began = time.perf_counter()
                try:
                    r = await c.post(f"/api/v1/stores/{sid}/redemptions", json=body, headers={"Idempotency-Key": key})
                except httpx.HTTPError as e:
                    tally.note("redeem", began, False, _what(e))
                    tally.lost.append((n, body, key))
                else:
                    if r.status_code in (200, 201):
                        out = r.json()
                        tally.redeemed[out["id"]] = (hid, out["points"], lines)
                        tally.note("redeem", began, True)
                    else:
                        if r.status_code < 500:
                            tally.refused += 1
                        else:  # a 5xx may or may not have been done: ask again, as for a lost answer
                            tally.lost.append((n, body, key))
                        tally.note("redeem", began, False, _what(r))
                await asyncio.sleep(pause(rng, "redeem"))

    async def clerk(who: str) -> None:
        rid, hids, themes = county.rounds[who]
        cookies, csrf = sessions[who]
        rng = random.Random(zlib.crc32(who.encode()) + seed)
        groups = [hids[k:k + 20] for k in range(0, len(hids), 20)]
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout, cookies=cookies,
                                     headers={"X-CSRF-Token": csrf, "Accept": "application/json"}) as c:
            await asyncio.sleep(rng.uniform(0, think["grid"] / pace))
            await look(c, "grid page", f"/rounds/{rid}/grid")
            while time.perf_counter() < end[0]:
                await asyncio.sleep(pause(rng, "grid"))
                cells = {(rid, h, t): rng.choice(EVAL_GRADES) for h in rng.choice(groups) for t in themes}
                began = time.perf_counter()
                try:
                    r = await c.post(f"/rounds/{rid}/grid",
                                     json={"cells": [{"h": h, "t": t, "g": g} for (_, h, t), g in cells.items()]})
                except httpx.HTTPError as e:
                    tally.note("grid save", began, False, _what(e))
                    if not isinstance(e, httpx.ConnectError):  # sent, the answer lost: it may have been saved
                        tally.grade_unknown.update(cells)
                    continue
                if r.status_code == 200:
                    tally.grades.update(cells)
                    tally.grade_unknown.difference_update(cells)
                    tally.note("grid save", began, True)
                else:
                    if r.status_code >= 500:
                        tally.grade_unknown.update(cells)
                    tally.note("grid save", began, False, _what(r))

    async def reviewer(who: str) -> None:
        cookies, _ = sessions[who]
        rng = random.Random(zlib.crc32(who.encode()) + seed)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout, cookies=cookies) as c:
            await asyncio.sleep(rng.uniform(0, think["dashboard"] / pace))
            while time.perf_counter() < end[0]:
                await look(c, "dashboard", f"/dashboard?year={YEAR}")
                await asyncio.sleep(pause(rng, "dashboard"))

    async def reader(n: int) -> None:
        rng = random.Random(seed * 7 + n)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as c:
            await asyncio.sleep(rng.uniform(0, think["public"] / pace))
            while time.perf_counter() < end[0]:
                x = rng.random()
                path = ("/public" if x < 0.2 else f"/v/{rng.choice(county.notice_codes)}" if x < 0.5
                        else f"/public/villages/{rng.choice(county.village_codes)}")
                await look(c, "public", path)
                await asyncio.sleep(pause(rng, "public"))

    tally.t0 = time.perf_counter()
    end[0] = tally.t0 + seconds
    jobs = [till(n) for n in range(len(county.tills))]
    jobs += [clerk(w) for w in county.rounds]
    jobs += [reviewer(w) for w in county.reviewers]
    jobs += [reader(n) for n in range(readers)]
    if fault is not None:
        jobs.append(asyncio.to_thread(fault, tally.t0 + seconds / 2))
    await asyncio.gather(*jobs)
    tally.timeline.sort()
    return tally


def settle_lost(county: County, base: str, tally: Tally) -> dict[str, int]:
    """Every redemption whose answer was lost, sent again with its key (as the till does): replayed means it had been
    done, a fresh 201 that it is done now; either way it is in the books and believed."""
    out: Counter[str] = Counter()
    for n, body, key in tally.lost:
        sid, token = county.tills[n]
        for attempt in range(30):
            try:
                r = httpx.post(f"{base}/api/v1/stores/{sid}/redemptions", json=body, timeout=60,
                               headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})
            except httpx.HTTPError:
                time.sleep(1)
                continue
            if r.status_code in (200, 201):
                got = r.json()
                tally.redeemed[got["id"]] = (body["household_id"], got["points"],
                                             tuple((ln["item_id"], ln["quantity"]) for ln in body["lines"]))
                out["had been done" if r.status_code == 200 else "done on asking again"] += 1
            elif r.status_code >= 500 and attempt < 29:
                time.sleep(1)
                continue
            else:
                out[f"refused {r.status_code}"] += 1
            break
        else:
            out["no answer"] += 1
    return dict(out)


# ---- the checks ---------------------------------------------------------------------------------------------------

def verify_commands(url: str) -> dict[str, tuple[int, str]]:
    """`zhenfeng ledger verify`, `store verify`, `audit verify` as an operator runs them: exit code, last line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZF_")}
    env.update(ZF_DATABASE_URL=url, ZF_SECRET_KEY=REDEEM_SECRET)
    exe = Path(sys.executable).parent / "zhenfeng"
    out = {}
    for what in ("ledger", "store", "audit"):
        done = subprocess.run([str(exe), what, "verify"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=1800)
        last = (done.stdout.strip() or done.stderr.strip()).splitlines()
        out[what] = (done.returncode, last[-1] if last else "")
    return out


def compare_books(county: County, tally: Tally) -> dict[str, Any]:
    """The books against what the load believes it did."""
    db = Database(county.url)
    problems: list[str] = []
    with db.read_txn() as s:
        rows = s.execute(text("SELECT id, household_id, points, status FROM redemptions WHERE id > :a"),
                         {"a": county.redemption_id0}).all()
        ids = {r.id for r in rows}
        believed = set(tally.redeemed)
        if extra := ids - believed:
            problems.append(f"{len(extra)} redemptions in the books that no till was told of (e.g. {sorted(extra)[:5]})")
        if missing := believed - ids:
            problems.append(f"{len(missing)} redemptions answered with success are missing (e.g. {sorted(missing)[:5]})")
        for r in rows:
            b = tally.redeemed.get(r.id)
            if b and (b[0] != r.household_id or b[1] != r.points or r.status != "done"):
                problems.append(f"redemption {r.id}: books {r.household_id}/{r.points}/{r.status}, believed {b[:2]}")
        spent: Counter[int] = Counter()
        moved: Counter[int] = Counter()
        for hid, pts, lines in tally.redeemed.values():
            spent[hid] += pts
            for item, q in lines:
                moved[item] += q
        balances: dict[int, int] = dict(s.execute(text("SELECT household_id, balance FROM ledger_accounts "
                                       "WHERE kind = 'household'")).all())
        wrong = [h for h, bal in balances.items() if bal != BEFORE.get(h, 0) - spent[h]]
        if wrong:
            problems.append(f"{len(wrong)} household balances differ from what the tills spent (e.g. {wrong[:5]})")
        stock: dict[int, int] = dict(s.execute(text("SELECT id, stock FROM store_items")).all())
        off = [i for i, before in county.stock0.items() if stock[i] != before - moved[i]]
        if off:
            problems.append(f"{len(off)} items' stock differs from what the tills took (e.g. {off[:5]})")
        rids = sorted({rid for rid, _, _ in tally.grades} | {rid for rid, _, _ in tally.grade_unknown})
        saved = {}
        if rids:
            for rid, hid, theme, grade in s.execute(text(
                    f"SELECT round_id, household_id, theme, grade FROM eval_ratings WHERE round_id IN "
                    f"({', '.join(str(r) for r in rids)})")):
                saved[(rid, hid, theme)] = grade
        known = {c: g for c, g in tally.grades.items() if c not in tally.grade_unknown}
        bad_cells = [c for c, g in known.items() if saved.get(c) != g]
        if bad_cells:
            problems.append(f"{len(bad_cells)} rating cells differ from the last save answered (e.g. {bad_cells[:3]})")
        extra_cells = [c for c in saved if c not in tally.grades and c not in tally.grade_unknown]
        if extra_cells:
            problems.append(f"{len(extra_cells)} rating cells saved that no clerk was told of")
    db.dispose()
    return {"problems": problems, "redemptions": len(ids), "points": sum(p for _, p, _ in tally.redeemed.values()),
            "units": sum(moved.values()), "households": len(balances), "items": len(county.stock0),
            "cells": len(known), "cells_unknown": len(tally.grade_unknown)}


BEFORE: dict[int, int] = {}  # household id -> balance before the rush (its year of rounds, redemptions, POINTS)


def snapshot_balances(url: str) -> None:
    db = Database(url)
    with db.read_txn() as s:
        BEFORE.update({h: b for h, b in s.execute(text(
            "SELECT household_id, balance FROM ledger_accounts WHERE kind = 'household'"))})
    db.dispose()


# ---- the faults ---------------------------------------------------------------------------------------------------

def inflict(kind: str, server: Server, log: list[str], *, every_worker: bool = False, when: str = "") -> None:
    """One fault, now, and what happened in `log` (`when` says when it struck, for the report)."""
    t = time.perf_counter()
    if kind == "kill-worker":
        victims = list(server.pids) if every_worker else server.pids[:1]
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        log.append(f"{when}SIGKILL to worker{'s' if len(victims) > 1 else ''} {', '.join(map(str, victims))}")
        while any(v in server.pids for v in victims) or len(server.pids) < server.workers:
            time.sleep(0.05)
        log.append(f"new workers ({', '.join(map(str, server.pids))} serving) {time.perf_counter() - t:.1f} s later "
                   "(uvicorn's supervisor)")
    elif kind == "kill-server":
        pid = server.proc.pid
        server.kill()
        log.append(f"{when}SIGKILL to the server (pid {pid})")
        time.sleep(1.0)
        server.start_again()
        log.append(f"started again and answering /healthz {time.perf_counter() - t:.1f} s after the kill (this "
                   "script as the supervisor, 1 s wait as systemd's RestartSec=1)")
    elif kind == "restart-db":
        cluster = sorted(os.listdir("/etc/postgresql"))[0]
        done = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart", "-m",
                               "fast"], capture_output=True, text=True)
        log.append(f"{when}PostgreSQL {cluster} restarted (fast: connections cut) in {time.perf_counter() - t:.1f} s "
                   f"(exit {done.returncode})")
    else:
        raise SystemExit(f"unknown fault {kind}")


def make_fault(kind: str | None, server: Server, log: list[str]) -> Any:
    """The fault for the rush: a function that waits until the given moment (time.perf_counter()), then strikes."""
    if kind is None:
        return None

    def at(moment: float) -> None:
        time.sleep(max(0.0, moment - time.perf_counter()))
        inflict(kind, server, log)

    return at


# ---- the report ---------------------------------------------------------------------------------------------------

def _p(xs: list[float], p: float) -> str:
    return f"{percentile(xs, p):,.0f}" if xs else "—"


def outage(tally: Tally) -> str:
    """Which requests failed and when they were sent, in runs of requests sent within a second of each other."""
    if not tally.failures:
        return "no request failed"
    runs: list[list[tuple[float, str, str]]] = []
    for f in sorted(tally.failures):
        if runs and f[0] - runs[-1][-1][0] <= 1.0:
            runs[-1].append(f)
        else:
            runs.append([f])
    parts = []
    for run in runs[:8]:
        what = Counter(f"{KIND_NAMES[k].split('（')[0]} {w}" for _, k, w in run)
        span = f"{run[0][0]:.1f} s" if len(run) == 1 else f"{run[0][0]:.1f}–{run[-1][0]:.1f} s"
        parts.append(f"sent at {span}: " + ", ".join(f"{n} × {w}" for w, n in what.most_common()))
    n = len(tally.failures)
    return (f"{n:,} request{'s' if n != 1 else ''} failed ({'; '.join(parts)}"
            + (f"; and {len(runs) - 8} more runs" if len(runs) > 8 else "") + ")")


def rush_report(args: argparse.Namespace, county: County, tally: Tally, seconds: float, verify: dict[str, Any],
                books: dict[str, Any], settled: dict[str, int], fault_log: list[str], cpu: str) -> str:
    name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[args.db]
    title = f"## 月底高峰：{name}" + (f"，{FAULT_NAMES[args.fault]}" if args.fault else "")
    lines = [title, "", f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `scripts/rush.py {' '.join(sys.argv[1:])}` "
             f"on {revision()}. Machine: {machine()}.", "",
             f"Setup (not timed, {county.setup_s:.0f} s): {args.villages} villages, {args.households:,} households, a "
             f"year of finalised rounds ({YEAR}), a store in each village with {len(REDEEM_CATALOG)} items, "
             f"{args.counters} tills, {args.clerks} open rating rounds, {args.reviewers} reviewers. Served by "
             f"`zhenfeng serve` with {args.workers} worker{'s' if args.workers > 1 else ''}. The load: "
             f"{args.counters} tills, {args.clerks} clerks, {args.reviewers} reviewers and {args.readers} public "
             f"readers at once for {seconds:.0f} s, each with its own connection, waiting between requests a random "
             f"think time of mean {THINK['redeem'] / args.pace:.0f} s (till), {THINK['grid'] / args.pace:.0f} s "
             f"(clerk, a group of 20 households × 6 themes a save), {THINK['dashboard'] / args.pace:.0f} s "
             f"(reviewer) and {THINK['public'] / args.pace:.0f} s (reader). {cpu}", "",
             f"| requests | answered with success | per second | p50 ms | p99 ms | p50 / p99 ms after the first "
             f"{WARMUP:.0f} s | failed |", "|---|---|---|---|---|---|---|"]
    for kind in ("redeem", "grid save", "grid page", "dashboard", "public"):
        ok = tally.ok.get(kind, [])
        failed = tally.failed.get(kind, Counter())
        what = ", ".join(f"{n:,} × {w}" for w, n in failed.most_common(4)) or "0"
        later = tally.settled.get(kind, [])
        lines.append(f"| {KIND_NAMES[kind]} | {len(ok):,} | {len(ok) / seconds:,.1f} | {_p(ok, 50)} | {_p(ok, 99)} | "
                     f"{_p(later, 50)} / {_p(later, 99)} | {what} |")
    lines.append("")
    if fault_log:
        lines += ["The fault: " + "; ".join(fault_log) + f". {outage(tally)}.", ""]
    else:
        said = outage(tally)
        lines += [f"{said[0].upper()}{said[1:]}.", ""]
    if tally.lost:
        lines += [f"Redemptions whose answer was lost, sent again with their Idempotency-Key afterwards: "
                  f"{len(tally.lost):,} ({', '.join(f'{n:,} {w}' for w, n in settled.items())}).", ""]
    clean = all(code == 0 for code, _ in verify.values())
    lines += ["Afterwards: " + "; ".join(f"`zhenfeng {w} verify` exit {code} ({last})" for w, (code, last)
                                         in verify.items()) + ".", "",
              f"The books against what the load believes it did: {books['redemptions']:,} redemptions "
              f"({books['points']:,} points, {books['units']:,} units), each household's balance "
              f"({books['households']:,}), each item's stock ({books['items']:,}) and each rating cell saved "
              f"({books['cells']:,}; {books['cells_unknown']:,} of a save whose answer was lost, not compared): "
              + ("**all agree**." if not books["problems"] else "**" + "; ".join(books["problems"]) + "**."), ""]
    verdict = clean and not books["problems"]
    lines.insert(2, f"**{'Clean' if verdict else 'NOT CLEAN'}**: "
                 + ("every request answered with success is in the books, and nothing else; the three verify "
                    "commands are clean." if verdict else "see below.") + "\n")
    return "\n".join(lines)


KIND_NAMES = {"redeem": "兑换（收银台，POST）", "grid save": "评分表保存（文书，POST）", "grid page": "评分表页面（文书，GET）",
              "dashboard": "县看板（审核员，GET）", "public": "公开页面与公示核验（群众，GET）"}
FAULT_NAMES = {"kill-worker": "中途 SIGKILL 一个 worker", "kill-server": "中途 SIGKILL 服务进程",
               "restart-db": "中途重启 PostgreSQL"}
WARMUP = 30.0  # s: every user's first request falls in its first think time, the grid pages all at once
THINK = {"redeem": 10.0, "grid": 6.0, "dashboard": 10.0, "public": 15.0}


def cpu_of(server: Server, t_machine: float, t_wall: float, t_self: float, srv0: float) -> str:
    cores = os.cpu_count() or 1
    srv = process_cpu(server.pids) - srv0
    return (f"CPU during the rush: the machine {t_machine / t_wall / cores:.0%} busy of its {cores} cores; the "
            f"workers {srv / t_wall:.2f} cores (the current ones), the load script {t_self / t_wall:.2f}, the rest "
            f"(the database server, other processes) {(t_machine - srv - t_self) / t_wall:.2f}.")


def watch(url: str, server: Server, stop: threading.Event, every: float = 5.0) -> None:
    """Every few seconds while the load runs, print what the workers and the database are doing."""
    pg = not url.startswith("sqlite")
    db = Database(url) if pg else None
    last_m, last_s, last_t = machine_cpu(), process_cpu(server.pids), time.perf_counter()
    while not stop.wait(every):
        now, m, srv = time.perf_counter(), machine_cpu(), process_cpu(server.pids)
        line = (f"    [{time.strftime('%H:%M:%S')}] machine {(m - last_m) / (now - last_t):.2f} cores, workers "
                f"{(srv - last_s) / (now - last_t):.2f}")
        if db is not None:
            try:
                with db.engine.connect() as conn:
                    rows = conn.execute(text(
                        "SELECT state, coalesce(wait_event_type, '-'), count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1, 2")).all()
                line += ", database: " + ", ".join(f"{n} {st}/{w}" for st, w, n in rows)
            except Exception as e:  # the database may be restarting: that is what is being watched
                line += f", database: {type(e).__name__}"
        print(line, flush=True)
        last_m, last_s, last_t = m, srv, now
    if db is not None:
        db.dispose()


def run_rush(args: argparse.Namespace) -> tuple[str, bool]:
    with tempfile.TemporaryDirectory() as work:
        url = fresh_db(args.db, Path(work))
        print(f"==> setup on {args.db}", flush=True)
        county = build(url, args.villages, args.households, args.counters, args.clerks, args.reviewers)
        snapshot_balances(url)
        print(f"    {county.setup_s:.0f} s", flush=True)
        with Server(url, args.workers, Path(work)) as server:
            sessions = {w: login(server.url, w) for w in [*county.rounds, *county.reviewers]}
            fault_log: list[str] = []
            fault = make_fault(args.fault, server, fault_log)
            print(f"==> the rush: {args.seconds:.0f} s", flush=True)
            m0, c0, s0 = machine_cpu(), time.process_time(), process_cpu(server.pids)
            t0 = time.perf_counter()
            watching = threading.Event()
            watcher = threading.Thread(target=watch, args=(url, server, watching), daemon=True)
            watcher.start()
            try:
                    tally = asyncio.run(rush(county, server.url, args.seconds, args.pace, THINK, args.readers, sessions,
                                         fault))
            finally:
                watching.set()
                watcher.join()
            wall = time.perf_counter() - t0
            cpu = cpu_of(server, machine_cpu() - m0, wall, time.process_time() - c0, s0)
            for kind, xs in tally.ok.items():
                print(f"    {kind}: {len(xs):,} ok, p50 {_p(xs, 50)} ms, p99 {_p(xs, 99)} ms, failed "
                      f"{dict(tally.failed.get(kind, {}))}", flush=True)
            settled = settle_lost(county, server.url, tally)
        print("==> verify", flush=True)
        verify = verify_commands(url)
        books = compare_books(county, tally)
        print(f"    {verify}\n    {books}", flush=True)
        text_ = rush_report(args, county, tally, args.seconds, verify, books, settled, fault_log, cpu)
        ok = all(c == 0 for c, _ in verify.values()) and not books["problems"]
        return text_, ok


# ---- the monthly close under a fault -------------------------------------------------------------------------------

def run_close(args: argparse.Namespace) -> tuple[str, bool]:
    from app.auth.service import accounts as auth
    from app.evaluation.service import rounds

    with tempfile.TemporaryDirectory() as work:
        url = fresh_db(args.db, Path(work))
        print(f"==> setup on {args.db}: {args.villages} villages, {args.households:,} households", flush=True)
        t0 = time.perf_counter()
        db = Database(url)
        vids = setup_villages(db, args.villages)
        homes = register_households(db, vids, args.households)
        members = add_committees(db, homes)
        grader = Grader(homes)
        month = rounds.prev_month(rounds.current_month())
        rids = {}
        for vid in vids:
            with db.write_txn() as s:
                rids[vid] = publicised_round(s, vid, month, members[vid], homes[vid], grader)
        with db.write_txn() as s:
            u = auth.create_user(s, ACTOR, login="closer", display_name="县管理员", password=EVAL_PASSWORD,
                                 must_change_password=False)
            auth.grant_role(s, ACTOR, u.id, "county_admin")  # type: ignore[arg-type]
        settle(db)
        db.dispose()
        setup_s = time.perf_counter() - t0
        print(f"    {setup_s:.0f} s", flush=True)
        fault_log: list[str] = []
        killed_round: list[int] = []
        with Server(url, args.workers, Path(work)) as server:
            cookies, csrf = login(server.url, "closer")
            c = httpx.Client(base_url=server.url, cookies=cookies, timeout=120,
                             headers={"X-CSRF-Token": csrf}, follow_redirects=False)
            order = list(rids.values())
            kill_at = len(order) // 2
            took: list[float] = []
            retried = 0
            t_close = time.perf_counter()
            for k, rid in enumerate(order):
                while True:
                    killer = None
                    if args.fault and k == kill_at and not killed_round:
                        delay = statistics.median(took) / 2 if took else 0.2
                        killer = threading.Thread(target=_kill_after, args=(args.fault, server, delay, fault_log))
                        killer.start()
                        killed_round.append(rid)
                    began = time.perf_counter()
                    try:
                        r = c.post(f"/rounds/{rid}/state", data={"action": "finalise"})
                        answered: int | str = r.status_code
                    except httpx.HTTPError as e:
                        answered = type(e).__name__
                    if killer is not None:
                        killer.join()
                    if answered == 303:
                        took.append(time.perf_counter() - began)
                        break
                    # no answer, or an error: wait for the service, look at the round, finalise it if it is not
                    retried += 1
                    fault_log.append(f"round {rid}: {answered}")
                    _wait_healthy(server.url)
                    state = _round_status(url, rid)
                    fault_log.append(f"round {rid} after the fault: {state}")
                    if state == "finalised":
                        break
            close_s = time.perf_counter() - t_close
            c.close()
        verify = verify_commands(url)
        db = Database(url)
        with db.read_txn() as s:
            states = Counter(s.execute(text("SELECT status FROM eval_rounds")).scalars())
            per_round = s.execute(text(
                "SELECT r.id, r.households_rated, (SELECT count(*) FROM eval_results x WHERE x.round_id = r.id "
                "AND (x.ledger_tx_id IS NULL OR EXISTS (SELECT 1 FROM ledger_transactions t "
                "WHERE t.id = x.ledger_tx_id))), "
                "(SELECT count(*) FROM eval_round_events e WHERE e.round_id = r.id AND e.to_status = 'finalised') "
                "FROM eval_rounds r")).all()
            book = s.execute(text("SELECT count(DISTINCT ledger_tx_id) FROM eval_results")).scalar_one()
        db.dispose()
        problems = []
        for rid, rated, results, events in per_round:
            if results != len(homes[next(v for v, r in rids.items() if r == rid)]) or events != 1:
                problems.append(f"round {rid}: {results} results, {events} finalisations, {rated} rated")
        clean = all(code == 0 for code, _ in verify.values()) and not problems and states == Counter(
            {"finalised": len(rids)})
        name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[args.db]
        lines = [f"## 月度结算中途故障：{name}" + (f"，{FAULT_NAMES[args.fault]}" if args.fault else ""), "",
                 f"**{'Clean' if clean else 'NOT CLEAN'}**: "
                 + ("every round finalised exactly once, with all its results; the three verify commands clean."
                    if clean else "see below.") + "\n",
                 f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `scripts/rush.py {' '.join(sys.argv[1:])}` on "
                 f"{revision()}. Machine: {machine()}.", "",
                 f"Setup (not timed, {setup_s:.0f} s): {args.villages} villages, {args.households:,} households, a "
                 f"round each publicised through the services. The county admin then finalises the rounds one after "
                 f"another over HTTP (`POST /rounds/<id>/state action=finalise`, `zhenfeng serve` with "
                 f"{args.workers} worker{'s' if args.workers > 1 else ''}): {close_s:.1f} s in all, a round "
                 f"{statistics.median(took) * 1000:,.0f} ms median. "
                 + (f"Halfway, while round {killed_round[0]} was being finalised: " + "; ".join(fault_log) + ". "
                    f"The driver asked again {retried} time{'s' if retried != 1 else ''}." if args.fault else ""), "",
                 f"Afterwards: rounds {dict(states)}; " + "; ".join(
                     f"`zhenfeng {w} verify` exit {code} ({last})" for w, (code, last) in verify.items())
                 + f"; {book:,} ledger transactions posted by the rounds. "
                 + ("Every round has one finalisation event and one result per household."
                    if not problems else "**" + "; ".join(problems[:5]) + "**"), ""]
        return "\n".join(lines), clean


def _kill_after(kind: str, server: Server, delay: float, log: list[str]) -> None:
    """The fault for the close, `delay` s into a round's finalisation: every worker, so the finalising one is hit."""
    time.sleep(delay)
    inflict(kind, server, log, every_worker=True, when=f"{delay * 1000:.0f} ms into the request, ")


def _wait_healthy(base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the service did not come back within a minute")


def _round_status(url: str, rid: int) -> str:
    db = Database(url)
    try:
        with db.read_txn() as s:
            return str(s.execute(text("SELECT status FROM eval_rounds WHERE id = :r"), {"r": rid}).scalar_one())
    finally:
        db.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["rush", "close"])
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    ap.add_argument("--workers", type=int, help="app workers (default 2 on PostgreSQL, 1 on SQLite)")
    ap.add_argument("--fault", choices=sorted(FAULT_NAMES))
    ap.add_argument("--seconds", type=float, default=300.0, help="rush: how long the load runs")
    ap.add_argument("--villages", type=int, help="default 60 (rush), 30 (close)")
    ap.add_argument("--households", type=int, help="in all; default 12,000 (rush), 18,000 (close)")
    ap.add_argument("--counters", type=int, default=300)
    ap.add_argument("--clerks", type=int, default=50)
    ap.add_argument("--reviewers", type=int, default=20)
    ap.add_argument("--readers", type=int, default=200)
    ap.add_argument("--pace", type=float, default=1.0, help="think times divided by this (2: twice the load)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "drills.md"))
    ap.add_argument("--no-write", action="store_true", help="print the result, leave the docs alone")
    args = ap.parse_args()
    args.workers = args.workers or (1 if args.db == "sqlite" else 2)
    if args.db == "sqlite" and args.workers != 1:
        ap.error("SQLite has one writer: --workers 1")
    if args.fault == "restart-db" and args.db != "postgres":
        ap.error("restart-db is for PostgreSQL")
    if args.fault == "kill-worker" and args.workers < 2:
        ap.error("kill-worker needs several workers; with one, use kill-server")
    if args.what == "rush":
        args.villages = args.villages or 60
        args.households = args.households or 12_000
        if args.clerks >= args.villages:
            ap.error("--clerks must be fewer than --villages")
        text_, ok = run_rush(args)
    else:
        args.villages = args.villages or 30
        args.households = args.households or 18_000
        text_, ok = run_close(args)
    print(text_)
    if not args.no_write:
        drill_report.write_section(Path(args.out), text_)
        print(f"written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
