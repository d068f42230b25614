"""Every route with every role (DESIGN §8): the app's whole route table, walked in scope and out of scope.

The walk reads the route table and finds its objects through SCOPE_RESOLVERS, so a route added later, even one
with a new kind of object id, is checked without touching this file. The walk itself lives in
tests/support/routes.py (test_form_fuzz walks the same routes), and so does the reviewed policy it expects: which
permissions each role has (`EXPECTED_PERMISSIONS`, compared here with `ROLE_PERMISSIONS`) and what a grant of each
role reaches (`REACH`). A new role, or a path parameter that has no scope resolver and is not listed in
`OWNED_PARAMS` (a user's object), `CHILD_PARAMS` (an object under another path id, like a village's import batch)
or `FIXED_PARAMS` (not an id), has to be taught there; the walk fails with a message saying so.

Per route x method x role:
- anonymous: /api answers 401 with the JSON error shape; a page answers GET with a redirect to /login and an
  unsafe method with 401/403; PUBLIC routes are reachable.
- a role without the route's permission: 404 exactly (never 403, never 200), and an `auth.denied` audit event.
- an object outside the role's reach (one per kind of place: another township, another village of the township,
  …, and one's own account for county-level objects): 404 exactly, nothing of the object's name in the answer,
  and an `auth.denied` event naming the object.
- in scope with the permission: no 401/403/404, never 5xx (422/400/409 are fine for writes with an empty body).
- a path id without a scope resolver: another user's API token, or another village's import batch under one's own
  village, answers 404 like a missing object.
Requests run reads first, then writes (empty JSON object / empty form, with the CSRF token), logout last.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

import app.main as app_main
from app.audit.models import AuditEvent
from app.auth.models import Role
from app.auth.permissions import ROLE_PERMISSIONS, Perm
from app.config import Settings
from app.db import Database
from app.deps import SAFE_METHODS
from app.main import create_app
from app.web.templates import ANON_CSRF_COOKIE
from tests.support.routes import (
    DEMO_ROLES,
    EXPECTED_PERMISSIONS,
    NOT_FOUND_JSON,
    ROLES,
    SESSION_ENDING,
    Case,
    World,
    api_routes,
    build_cases,
    bystander_world,
)
from tests.support.web import login


@pytest.fixture
def world(db: Database, demo: dict[str, object]) -> World:
    return bystander_world(db)


# ---- running a case -------------------------------------------------------------------------------------------------

def _send(client: TestClient, case: Case, csrf: str | None) -> Any:
    if case.method in SAFE_METHODS:
        return client.request(case.method, case.url, follow_redirects=False)
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    if case.route.path.startswith("/api/"):
        return client.request(case.method, case.url, json={}, headers=headers, follow_redirects=False)
    return client.request(case.method, case.url, data={"csrf_token": csrf or ""}, headers=headers,
                          follow_redirects=False)


def _denials_after(db: Database, seq: int) -> list[AuditEvent]:
    with db.read_txn() as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == "auth.denied", AuditEvent.seq > seq)
                              .order_by(AuditEvent.seq)).scalars())


def _json_error(r: Any) -> Any:
    try:
        body = r.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) and set(body) == {"error"} else None


def check(client: TestClient, case: Case, csrf: str | None) -> list[str]:
    """Send one request; return what was wrong with the answer (the audit trail is checked after the walk)."""
    r = _send(client, case, csrf)
    is_api = case.route.path.startswith("/api/")
    where = f"{case.method} {case.url} [{case.route.path}, {case.route.perm}, {case.label}]"
    errors: list[str] = []
    status = r.status_code
    if status >= 500:
        errors.append(f"{where}: server error {status}: {r.text[:300]}")
    error = _json_error(r)
    if is_api and status >= 400 and (not isinstance(error, dict) or set(error) != {"code", "message", "details"}):
        errors.append(f"{where}: {status} without the JSON error shape: {r.text[:200]}")

    if case.expect == "anonymous":
        if is_api:
            if status != 401 or (error or {}).get("code") != "not_authenticated":
                errors.append(f"{where}: anonymous expected 401 not_authenticated, got {status}: {r.text[:200]}")
        elif case.method in SAFE_METHODS:
            if status != 303 or not r.headers.get("location", "").startswith("/login"):
                errors.append(f"{where}: anonymous expected 303 to /login, got {status} {r.headers.get('location')}")
        elif status not in (401, 403):
            errors.append(f"{where}: anonymous unsafe request expected 401/403, got {status}")
    elif case.expect == "reachable":
        if status in (401, 403, 404):
            errors.append(f"{where}: expected to be reachable, got {status}: {r.text[:200]}")
        elif (r.headers.get("location", "").startswith("/login") and case.label != "anonymous"
              and (case.method, case.route.path) not in SESSION_ENDING):
            errors.append(f"{where}: sent to the login page: the session was lost (an earlier request ended it?)")
    else:  # denied | not_found
        if status != 404:
            errors.append(f"{where}: expected 404, got {status}: {r.text[:200]}")
        elif is_api and error != NOT_FOUND_JSON:
            errors.append(f"{where}: 404 differs from a missing object's: {r.text[:200]}")
        if case.secret and case.secret in r.text:
            errors.append(f"{where}: the answer names the out-of-scope object {case.secret!r}")
    return errors


def check_audit(cases: list[Case], events: list[AuditEvent], user_id: int) -> list[str]:
    """Each denied request wrote exactly one auth.denied event naming the user (and the object, for a scope
    denial); no other request wrote one. Events are matched to requests by their note ("METHOD path 需要权限 …")."""
    denied = [c for c in cases if c.expect == "denied"]
    errors: list[str] = []
    got = [(e.actor_id, (e.summary or {}).get("note"), e.object_type, e.object_id) for e in events]
    notes = [g[1] for g in got]
    for c in denied:
        note = f"{c.method} {c.url} 需要权限 {c.route.perm}"
        if note not in notes:
            errors.append(f"{c.method} {c.url} [{c.label}]: no auth.denied audit event {note!r}")
            continue
        actor_id, _, otype, oid = got.pop(notes.index(note))
        notes.remove(note)
        if actor_id != user_id:
            errors.append(f"{c.method} {c.url}: auth.denied event names actor {actor_id}, expected {user_id}")
        if c.audit_object and (otype, oid) != c.audit_object:
            errors.append(f"{c.method} {c.url}: auth.denied event names {(otype, oid)}, expected {c.audit_object}")
    errors.extend(f"unexpected auth.denied event (a request that should pass was denied?): {g}" for g in got)
    return errors


# ---- tests ----------------------------------------------------------------------------------------------------------

def test_role_permissions_match_the_reviewed_policy() -> None:
    assert set(DEMO_ROLES.values()) == set(Role), "a role without a demo user is not walked: extend demo and this test"
    assert {DEMO_ROLES[name]: perms for name, perms in EXPECTED_PERMISSIONS.items()} == ROLE_PERMISSIONS


def test_every_route_declares_a_permission(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Independent of create_app's own refusal: let it start whatever it finds, then look at every route ourselves.
    monkeypatch.setattr(app_main, "declared_permission", lambda route: Perm.PUBLIC)
    application = create_app(settings)
    try:
        routes = api_routes(application)
    finally:
        application.state.db.dispose()
    paths = {r.path for r in routes}
    assert {"/login", "/api/v1/me", "/org/villages/{village_id}", "/healthz"} <= paths, f"route walk is blind: {paths}"
    undeclared = [f"{m} {r.path}" for r in routes for m in r.methods if r.perm is None]
    assert not undeclared, f"routes without a declared permission: {undeclared}"


def test_create_app_refuses_a_route_without_permission(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deny by default at start-up: create_app must not serve a route that declares no permission."""
    router = APIRouter()

    @router.get("/zz-undeclared-probe")
    def probe() -> dict[str, str]:
        return {}

    monkeypatch.setattr(app_main, "health", SimpleNamespace(router=router))
    with pytest.raises(RuntimeError, match="without a declared permission"):
        application = create_app(settings)
        application.state.db.dispose()


@pytest.mark.parametrize("role", ROLES)
def test_every_route_with_role(role: str, app: FastAPI, client: TestClient, db: Database, world: World) -> None:
    routes = api_routes(app)
    assert routes, "the route walk found no routes"
    cases, problems = build_cases(role, routes, world, db)
    assert not problems, "\n".join(problems)

    if role == "anonymous":
        client.get("/login")
        csrf, user_id = client.cookies.get(ANON_CSRF_COOKIE), None
        assert csrf, "the login page set no anonymous CSRF cookie"
    else:
        csrf, user_id = login(client, role), world.user[role]
        # POST /login compares its form field with the anonymous CSRF cookie; give a signed-in browser one too.
        client.cookies.set(ANON_CSRF_COOKIE, csrf)
    last_seq = max((e.seq for e in _denials_after(db, 0)), default=0)

    errors: list[str] = []
    for case in cases:
        errors.extend(check(client, case, csrf))
    if user_id is not None:
        errors.extend(check_audit(cases, _denials_after(db, last_seq), user_id))
    assert not errors, f"{len(errors)} problems in {len(cases)} requests as {role}:\n" + "\n".join(errors)
