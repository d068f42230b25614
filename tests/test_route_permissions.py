"""Every route with every role (DESIGN §8): the app's whole route table, walked in scope and out of scope.

The walk reads the route table, so a route added later is checked without touching this file. What this file
does hold is the reviewed policy: which permissions each role has (`EXPECTED_PERMISSIONS`, compared with
`ROLE_PERMISSIONS`) and which demo objects lie inside and outside each demo user's scope (`SCOPE_TABLE`). A new
path parameter or a new role has to be taught here; the walk fails with a message saying so.

Per route x method x role:
- anonymous: /api answers 401 with the JSON error shape; a page answers GET with a redirect to /login and an
  unsafe method with 401/403; PUBLIC routes are reachable.
- a role without the route's permission: 404 exactly (never 403, never 200), and an `auth.denied` audit event.
- an object outside the role's scope: 404 exactly, nothing of the object in the answer, and an `auth.denied` event.
- in scope with the permission: no 401/403/404, never 5xx (422/400/409 are fine for writes with an empty body).
- a path id without a scope resolver (an API token): another user's object answers 404 like a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

import app.main as app_main
from app.audit.models import AuditEvent
from app.auth import service as auth
from app.auth.deps import SCOPE_RESOLVERS, declared_permission
from app.auth.models import Role, User
from app.auth.permissions import ROLE_PERMISSIONS, Perm
from app.config import Settings
from app.core.context import Actor
from app.db import Database
from app.deps import SAFE_METHODS
from app.errors import NotFound
from app.main import create_app
from app.org.models import Group, Store, Township, Village
from app.web import ANON_CSRF_COOKIE
from tests.conftest import login
from tests.factories import make_grant, make_user

# ---- the reviewed policy --------------------------------------------------------------------------------------------

DEMO_ROLES: dict[str, Role] = {
    "admin": Role.COUNTY_ADMIN,
    "reviewer": Role.TOWNSHIP_REVIEWER,
    "clerk": Role.VILLAGE_CLERK,
    "member": Role.COMMITTEE_MEMBER,
    "storekeeper": Role.STORE_CLERK,
    "household": Role.HOUSEHOLD,
}
ROLES = ["anonymous", *DEMO_ROLES]

# Written out rather than read from ROLE_PERMISSIONS: a permission slipped into a role must turn this test red.
EXPECTED_PERMISSIONS: dict[str, frozenset[Perm]] = {
    "admin": frozenset(Perm) - {Perm.PUBLIC},
    "reviewer": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW}),
    "clerk": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.GROUP_MANAGE}),
    "member": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW}),
    "storekeeper": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW}),
    "household": frozenset({Perm.SIGNED_IN}),
}

T_HOME, T_OTHER = "城关镇", "振风乡"  # the clerk's township, and the other one
V_HOME, V_SIBLING, V_OTHER = "红旗村", "桃园村", "新民村"  # the clerk's village, one beside it, one in 振风乡
BYSTANDER = "bystander"  # an extra account with one grant: the admin's in-scope user and grant
SELF = "self"  # the acting user's own account / grant

# role -> path parameter -> (in-scope objects, out-of-scope objects). Townships by name; villages, groups (the
# village's first group) and stores (the village's store) by village name; users and grants by login.
_Refs = tuple[list[str], list[str]]
SCOPE_TABLE: dict[str, dict[str, _Refs]] = {
    "admin": {
        "township_id": ([T_HOME], []), "village_id": ([V_HOME], []), "group_id": ([V_HOME], []),
        "store_id": ([V_HOME], []), "user_id": ([BYSTANDER], []), "grant_id": ([BYSTANDER], []),
    },
    "reviewer": {
        "township_id": ([T_HOME], [T_OTHER]), "village_id": ([V_SIBLING], [V_OTHER]),
        "group_id": ([V_SIBLING], [V_OTHER]), "store_id": ([V_SIBLING], [V_OTHER]),
        "user_id": ([], [BYSTANDER, SELF]), "grant_id": ([], [BYSTANDER, SELF]),
    },
    "clerk": {
        "township_id": ([], [T_OTHER]), "village_id": ([V_HOME], [V_OTHER, V_SIBLING]),
        "group_id": ([V_HOME], [V_OTHER, V_SIBLING]), "store_id": ([V_HOME], [V_OTHER, V_SIBLING]),
        "user_id": ([], [BYSTANDER, SELF]), "grant_id": ([], [BYSTANDER, SELF]),
    },
    "member": {
        "township_id": ([], [T_OTHER]), "village_id": ([V_HOME], [V_OTHER, V_SIBLING]),
        "group_id": ([V_HOME], [V_OTHER, V_SIBLING]), "store_id": ([V_HOME], [V_OTHER, V_SIBLING]),
        "user_id": ([], [BYSTANDER, SELF]), "grant_id": ([], [BYSTANDER, SELF]),
    },
    "storekeeper": {  # a store clerk sees the store's village
        "township_id": ([], [T_OTHER]), "village_id": ([V_HOME], [V_OTHER, V_SIBLING]),
        "group_id": ([V_HOME], [V_OTHER, V_SIBLING]), "store_id": ([V_HOME], [V_OTHER, V_SIBLING]),
        "user_id": ([], [BYSTANDER, SELF]), "grant_id": ([], [BYSTANDER, SELF]),
    },
    "household": {
        "township_id": ([], [T_HOME, T_OTHER]), "village_id": ([], [V_HOME, V_OTHER]),
        "group_id": ([], [V_HOME, V_OTHER]), "store_id": ([], [V_HOME, V_OTHER]),
        "user_id": ([], [BYSTANDER, SELF]), "grant_id": ([], [BYSTANDER, SELF]),
    },
}

# Requests that end the acting session: sent last.
SESSION_ENDING = {("POST", "/logout")}
NOT_FOUND_JSON = {"code": NotFound.code, "message": NotFound().message, "details": None}
PARAM_RE = re.compile(r"{(\w+)(?::\w+)?}")


# ---- the route table ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RouteInfo:
    path: str  # the path template as served, e.g. /api/v1/villages/{village_id}
    methods: tuple[str, ...]
    perm: Perm | None
    params: tuple[str, ...]


def api_routes(application: FastAPI) -> list[RouteInfo]:
    """Every APIRoute the application serves, with its full path and declared permission.

    FastAPI 0.16x keeps each included router as one lazy `_IncludedRouter` entry in `app.routes`, so
    `[r for r in app.routes if isinstance(r, APIRoute)]` is empty there; `iter_route_contexts` flattens them.
    """
    iter_contexts = getattr(fastapi_routing, "iter_route_contexts", None)
    if iter_contexts is None:  # older FastAPI: included routes are copied into app.routes
        found: list[Any] = [r for r in application.routes if isinstance(r, APIRoute)]
    else:
        found = [c for c in iter_contexts(application.routes) if isinstance(c.original_route, APIRoute)]
    routes = []
    for r in found:
        path = str(r.path)
        routes.append(RouteInfo(path=path, methods=tuple(sorted(r.methods or ())), perm=declared_permission(r),
                                params=tuple(m.group(1) for m in PARAM_RE.finditer(path))))
    return routes


# ---- the world: ids of the demo objects, looked up, never hard-coded -----------------------------------------------

@dataclass
class World:
    township: dict[str, int]
    village: dict[str, int]
    group: dict[str, int]  # village name -> its first group
    store: dict[str, int]  # village name -> its store
    user: dict[str, int]  # login -> id
    grant: dict[str, int]  # login -> first active grant
    names: dict[tuple[str, int], str]  # (param, id) -> text that must not appear in a denial

    def resolve(self, param: str, ref: str, acting: str) -> int:
        login_ref = acting if ref == SELF else ref
        table = {"township_id": self.township, "village_id": self.village, "group_id": self.group,
                 "store_id": self.store, "user_id": self.user, "grant_id": self.grant}[param]
        return table[login_ref if param in ("user_id", "grant_id") else ref]


@pytest.fixture
def world(db: Database, demo: dict[str, object]) -> World:
    with db.write_txn() as s:
        bystander = make_user(s, BYSTANDER, name="旁观者甲")
        make_grant(s, bystander, Role.COMMITTEE_MEMBER.value, village_id=s.execute(
            select(Village.id).where(Village.name == V_HOME)).scalar_one())
    with db.read_txn() as s:
        townships = {t.name: t.id for t in s.execute(select(Township)).scalars()}
        villages = {v.name: v.id for v in s.execute(select(Village)).scalars()}
        groups: dict[str, int] = {}
        for g in s.execute(select(Group).order_by(Group.village_id, Group.number)).scalars():
            groups.setdefault(next(n for n, i in villages.items() if i == g.village_id), g.id)
        stores_rows = list(s.execute(select(Store)).scalars())
        stores = {next(n for n, i in villages.items() if i == st.village_id): st.id for st in stores_rows}
        users = {u.login: u.id for u in s.execute(select(User)).scalars()}
        grants = {login: g[0].id for login, uid in users.items() if (g := auth.active_grants(s, uid))}
        names: dict[tuple[str, int], str] = {}
        names.update({("township_id", i): n for n, i in townships.items()})
        names.update({("village_id", i): n for n, i in villages.items()})
        names.update({("store_id", st.id): st.name for st in stores_rows})
        names.update({("user_id", u.id): u.display_name for u in s.execute(select(User)).scalars()})
    return World(townships, villages, groups, stores, users, grants, names)  # type: ignore[arg-type]


# Path parameters without a scope resolver: objects owned by one user. -> factory(db, owner login) -> id
def _new_api_token(db: Database, owner: str) -> int:
    with db.write_txn() as s:
        uid = s.execute(select(User.id).where(User.login == owner)).scalar_one()
        grant = auth.active_grants(s, uid)[0]
        token = auth.create_api_token(s, Actor.system("测试"), user_id=uid, grant_id=grant.id,  # type: ignore[arg-type]
                                      name="路由权限测试").token
        return token.id  # type: ignore[return-value]


OWNED_PARAMS: dict[str, Callable[[Database, str], int]] = {"token_id": _new_api_token}


# ---- cases ----------------------------------------------------------------------------------------------------------

@dataclass
class Case:
    method: str
    route: RouteInfo
    url: str
    label: str  # what is being tried, for failure messages
    expect: str  # reachable | denied | not_found | anonymous
    audit_object: tuple[str, str] | None = None  # (object_type, object_id) the auth.denied event must name
    secret: str | None = None  # text of the out-of-scope object that must not appear in the answer


def _url(path: str, values: dict[str, int]) -> str:
    return PARAM_RE.sub(lambda m: str(values[m.group(1)]), path)


def _problem_with_params(role: str, route: RouteInfo) -> str | None:
    for p in route.params:
        if p in SCOPE_RESOLVERS:
            if p not in SCOPE_TABLE["admin"]:
                return (f"{route.path}: path parameter {p!r} has a scope resolver but this test does not know which "
                        f"objects lie inside and outside each role's scope: add it to SCOPE_TABLE and World")
        elif p not in OWNED_PARAMS:
            return (f"{route.path}: path parameter {p!r} has no scope resolver (register one with "
                    f"app.auth.deps.register_scope_resolver) and this test has no OWNED_PARAMS factory for it")
    if role != "anonymous" and role not in EXPECTED_PERMISSIONS:
        return f"role {role!r} is missing from EXPECTED_PERMISSIONS"
    return None


def build_cases(role: str, routes: list[RouteInfo], world: World, db: Database) -> tuple[list[Case], list[str]]:
    cases: list[Case] = []
    problems: list[str] = []
    acting = "admin" if role == "anonymous" else role
    foreign_owner = "clerk" if acting == "admin" else "admin"
    table = SCOPE_TABLE[acting]

    def ids(param: str, ref: str) -> int:
        return world.resolve(param, ref, acting)

    ordered = sorted(((m, r) for r in routes for m in r.methods), key=lambda mr: (mr[0], mr[1].path) in SESSION_ENDING)
    for method, route in ordered:
        where = f"{method} {route.path}"
        if route.perm is None:
            problems.append(f"{where}: declares no permission (use Depends(authorize(Perm.…)))")
            continue
        problem = _problem_with_params(role, route)
        if problem:
            problems.append(problem)
            continue
        scoped = [p for p in route.params if p in SCOPE_RESOLVERS]
        owned = [p for p in route.params if p not in SCOPE_RESOLVERS]

        in_refs = {p: table[p][0][0] for p in scoped if table[p][0]}
        fallback = {p: (table[p][0] or table[p][1])[0] for p in scoped}

        if role == "anonymous":
            values = {**{p: ids(p, r) for p, r in fallback.items()},
                      **{p: OWNED_PARAMS[p](db, foreign_owner) for p in owned}}
            expect = "reachable" if route.perm is Perm.PUBLIC else "anonymous"
            cases.append(Case(method, route, _url(route.path, values), "anonymous", expect))
            continue

        own = {p: OWNED_PARAMS[p](db, acting) for p in owned}
        allowed = route.perm is Perm.PUBLIC or route.perm in EXPECTED_PERMISSIONS[role]
        if route.perm is Perm.PUBLIC:  # authorize() checks nothing else for PUBLIC
            values = {**{p: ids(p, r) for p, r in fallback.items()}, **own}
            cases.append(Case(method, route, _url(route.path, values), "public", "reachable"))
            continue

        if not allowed:  # the permission is checked before any scope: one request, with in-scope objects if any
            values = {**{p: ids(p, r) for p, r in fallback.items()}, **own}
            outside = [p for p in scoped if p not in in_refs and fallback[p] != SELF]
            secret = world.names.get((outside[0], values[outside[0]])) if outside else None
            label = ", ".join(f"{p}={r}" for p, r in fallback.items()) or "no object"
            cases.append(Case(method, route, _url(route.path, values), f"without {route.perm}: {label}", "denied",
                              secret=secret))
            continue
        # 1. everything in scope (skipped when the role has no in-scope object for some parameter)
        if len(in_refs) == len(scoped):
            values = {**{p: ids(p, r) for p, r in in_refs.items()}, **own}
            label = ", ".join([f"{p}={r}" for p, r in in_refs.items()] + [f"{p}=own" for p in owned]) or "no object"
            cases.append(Case(method, route, _url(route.path, values), f"in scope: {label}", "reachable"))
        # 2. one parameter out of scope at a time, the others in scope where the role has any
        for p in scoped:
            for ref in table[p][1]:
                values = {**{q: ids(q, r) for q, r in fallback.items()}, p: ids(p, ref), **own}
                others_in = all(q in in_refs for q in scoped if q != p)
                audit_obj = (p.removesuffix("_id"), str(values[p])) if others_in else None
                secret = None if ref == SELF else world.names.get((p, values[p]))
                cases.append(Case(method, route, _url(route.path, values), f"out of scope: {p}={ref}", "denied",
                                  audit_obj, secret))
        # 3. an object without a scope resolver that belongs to another user: 404 like a missing one
        for p in owned:
            if len(in_refs) != len(scoped):
                continue
            values = {**{q: ids(q, r) for q, r in in_refs.items()}, **own, p: OWNED_PARAMS[p](db, foreign_owner)}
            cases.append(Case(method, route, _url(route.path, values), f"{p} of {foreign_owner}", "not_found"))
    return cases, problems


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
