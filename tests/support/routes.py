"""The route walk: every route the application serves, with the objects (found through SCOPE_RESOLVERS in the demo
county) that each demo user reaches and does not reach, turned into the requests to send and what each should get
(`build_cases`). tests/platform/test_route_permissions.py sends them and checks the answers (its docstring says
what is checked); tests/platform/test_form_fuzz.py sends hostile values through the same requests.

This module holds the reviewed policy the walk expects: which permissions each role has (`EXPECTED_PERMISSIONS`)
and what a grant of each role reaches (`REACH`); a new role or a new kind of path parameter is taught here."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute
from sqlalchemy import func, select

import app.models  # noqa: F401  (every table in metadata, for _table_for)
from app.auth.deps import SCOPE_RESOLVERS, declared_permission
from app.auth.models import Role, User
from app.auth.permissions import Perm
from app.auth.service import accounts as auth
from app.core.context import Actor
from app.core.scope import Scope
from app.db import Database, metadata
from app.deps import SAFE_METHODS
from app.errors import NotFound
from app.households.models import ImportBatch
from app.org.models import Village
from tests.support.factories import make_grant, make_user

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
    "reviewer": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW, Perm.RULESET_VIEW,
                           Perm.EVAL_VIEW, Perm.EVAL_REVIEW, Perm.STORE_VIEW, Perm.REPORTS_VIEW, Perm.NOTICES_VIEW}),
    "clerk": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.GROUP_MANAGE, Perm.HOUSEHOLD_VIEW, Perm.HOUSEHOLD_FULL,
                        Perm.HOUSEHOLD_MANAGE, Perm.LEDGER_VIEW, Perm.RULESET_VIEW, Perm.EVAL_VIEW, Perm.EVAL_RATE,
                        Perm.EVAL_MANAGE, Perm.STORE_VIEW, Perm.STORE_STOCK, Perm.STORE_MANAGE, Perm.FUNDS_MANAGE,
                        Perm.CARD_MANAGE, Perm.REPORTS_VIEW, Perm.NOTICES_VIEW, Perm.NOTICES_MANAGE}),
    "member": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW, Perm.RULESET_VIEW,
                         Perm.EVAL_VIEW, Perm.EVAL_RATE, Perm.NOTICES_VIEW}),
    "storekeeper": frozenset({Perm.SIGNED_IN, Perm.ORG_VIEW, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW,
                              Perm.LEDGER_SPEND, Perm.RULESET_VIEW, Perm.STORE_VIEW, Perm.STORE_STOCK}),
    "household": frozenset({Perm.SIGNED_IN, Perm.HOUSEHOLD_VIEW, Perm.LEDGER_VIEW,
                            Perm.RULESET_VIEW, Perm.EVAL_VIEW, Perm.OBJECTION_FILE}),
}

BYSTANDER = "bystander"  # an extra account with one grant: what the county admin edits, resets and revokes

# What a grant reaches, written out here rather than taken from ScopeFilter: role -> (home, object's scope) -> bool.
# `home` is where the demo user's grant points (its township / village / store / household).
REACH: dict[Role, Callable[[Scope, Scope], bool]] = {
    Role.COUNTY_ADMIN: lambda home, sc: True,
    Role.TOWNSHIP_REVIEWER: lambda home, sc: sc.township_id is not None and sc.township_id == home.township_id,
    Role.VILLAGE_CLERK: lambda home, sc: sc.village_id is not None and sc.village_id == home.village_id,
    Role.COMMITTEE_MEMBER: lambda home, sc: sc.village_id is not None and sc.village_id == home.village_id,
    # a store clerk sees the store and the store's village
    Role.STORE_CLERK: lambda home, sc: ((sc.store_id is not None and sc.store_id == home.store_id)
                                        or (sc.village_id is not None and sc.village_id == home.village_id)),
    Role.HOUSEHOLD: lambda home, sc: sc.household_id is not None and sc.household_id == home.household_id,
}

PLACE_FIELDS = ("township_id", "village_id", "store_id", "household_id")  # the fields of a Scope
# Places that hold the user's own grant: their names may appear on any of the user's pages (the grant's label).
AROUND_HOME = {"own", "the user's township", "the user's village"}

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


# ---- the world: objects found through the scope resolvers, never hard-coded ids ------------------------------------

def _is_county_level(sc: Scope) -> bool:
    return sc.township_id is None and sc.village_id is None and sc.store_id is None and sc.household_id is None


def _where(sc: Scope, home: Scope) -> str:
    """Where an object lies seen from a user's home: out-of-scope objects are tried one per kind of place."""
    if _is_county_level(sc):
        return "county level"
    if home.township_id is None or sc.township_id != home.township_id:
        return "other township"
    if sc.village_id is None:
        return "the user's township"
    if sc.village_id != home.village_id:
        return "other village of the township"
    if sc.store_id is not None and sc.store_id != home.store_id:
        return "other store of the village"
    if sc.household_id is not None and sc.household_id != home.household_id:
        return "other household of the village"
    return "the user's village"


def _closeness(sc: Scope, home: Scope) -> tuple[bool, ...]:
    return tuple(getattr(sc, f) is not None and getattr(sc, f) == getattr(home, f)
                 for f in ("household_id", "store_id", "village_id", "township_id"))


class World:
    """The demo data seen through SCOPE_RESOLVERS: for every path parameter with a resolver, the objects that exist
    and where they lie; for every demo user, its home and which of those objects its grant reaches (REACH)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._objects: dict[str, list[tuple[int, Scope]]] = {}
        self._names: dict[tuple[str, int], str | None] = {}
        with db.read_txn() as s:
            users = list(s.execute(select(User)).scalars())
            self.user = {u.login: u.id for u in users}
            self.display_name = {u.login: u.display_name for u in users}
            grants = {login: auth.active_grants(s, uid) for login, uid in self.user.items()}
            self.grant = {login: g[0].id for login, g in grants.items() if g}
            self.role = {login: Role(g[0].role) for login, g in grants.items() if g}
            self._home_ids: dict[str, set[int]] = {}  # where the grants point, per Scope field
            for g in (g for gs in grants.values() for g in gs):
                for f in PLACE_FIELDS:
                    if getattr(g, f) is not None:
                        self._home_ids.setdefault(f, set()).add(getattr(g, f))
            self.home = {login: self._home(s, g[0]) for login, g in grants.items() if g}

    def _home(self, s: Any, grant: Any) -> Scope:
        for param in ("household_id", "store_id", "village_id", "township_id"):
            value = getattr(grant, param)
            if value is not None:
                resolver = SCOPE_RESOLVERS.get(param)
                return (resolver(s, value) if resolver else None) or Scope(**{param: value})
        villages = self.objects("village_id", s)  # county level: objects of the first village hang together
        return villages[0][1] if villages else Scope()

    def objects(self, param: str, session: Any = None) -> list[tuple[int, Scope]]:
        """Objects of one kind with where they lie (by the app's resolver): a sample from the parameter's table when
        this test can find it, else every id the resolver knows, probing upwards until a long run of misses."""
        if param not in self._objects:
            resolver, table = SCOPE_RESOLVERS[param], _table_for(param)
            with (nullcontext(session) if session is not None else self.db.read_txn()) as s:
                if table is not None and "id" in table.c:
                    found = [(i, sc) for i in self._sample_ids(s, param, table) if (sc := resolver(s, i)) is not None]
                else:
                    found, object_id, misses = [], 1, 0
                    while misses < 50:
                        sc = resolver(s, object_id)
                        found += [(object_id, sc)] if sc is not None else []
                        misses = 0 if sc is not None else misses + 1
                        object_id += 1
            self._objects[param] = found
        return self._objects[param]

    def _sample_ids(self, s: Any, param: str, table: Any) -> list[int]:
        """A few objects per place: enough for one at every demo user's home, one beside it (another household
        of the village, another village of the township …) and one in every other place."""
        idc = table.c.id
        places = [table.c[c] for c in ("township_id", "village_id", "store_id") if c in table.c]
        stmts = [select(func.min(idc)), select(func.max(idc)), *(select(func.min(idc)).group_by(c) for c in places)]
        for field, key in (("household_id", table.c.get("household_id")), (param, idc)):
            homes = self._home_ids.get(field)
            if key is None or not homes:
                continue
            stmts.append(select(func.min(idc)).where(key.in_(homes)).group_by(key))
            stmts += [select(func.min(idc)).where(key.not_in(homes)).group_by(c) for c in places]
        if not places and "household_id" not in table.c:  # a county-level kind of object: take them all
            stmts.append(select(idc).order_by(idc).limit(200))
        return sorted({i for st in stmts for i in s.execute(st).scalars() if i is not None})

    def _own(self, login: str, param: str) -> int | None:
        return {"user_id": self.user.get(login), "grant_id": self.grant.get(login)}.get(param)

    def in_scope(self, login: str, param: str) -> int | None:
        """The object the user reaches that lies nearest its home (the newest on a tie), never its own account."""
        home, reach = self.home[login], REACH[self.role[login]]
        mine = [(_closeness(sc, home), i) for i, sc in self.objects(param)
                if reach(home, sc) and i != self._own(login, param)]
        return max(mine)[1] if mine else None

    def out_of_scope(self, login: str, param: str) -> list[tuple[int, str]]:
        """One object the user does not reach per kind of place, nearest to its home first, plus its own account
        for county-level objects (users, grants)."""
        home, reach = self.home[login], REACH[self.role[login]]
        picked: dict[str, tuple[tuple[bool, ...], int]] = {}
        for i, sc in self.objects(param):
            if not reach(home, sc):
                picked.setdefault(_where(sc, home), (_closeness(sc, home), i))
        found = [(i, where) for where, (_, i) in sorted(picked.items(), key=lambda kv: kv[1][0], reverse=True)]
        own = self._own(login, param)
        if own is not None and not reach(home, Scope()):
            found.append((own, "own"))
        return found

    def name(self, param: str, object_id: int, acting: str) -> str | None:
        """The object's name, when its table has one: it must not appear in a denial (unless the acting user's own
        name, shown on every page, happens to contain it)."""
        if (param, object_id) not in self._names:
            table = _table_for(param)
            column = next((c for c in ("name", "display_name", "head_name") if table is not None and c in table.c),
                          None)
            value = None
            if table is not None and column is not None:
                with self.db.read_txn() as s:
                    value = s.execute(select(table.c[column]).where(table.c.id == object_id)).scalar()
            self._names[param, object_id] = value if isinstance(value, str) and len(value) >= 3 else None
        value = self._names[param, object_id]
        return None if value is None or value in self.display_name.get(acting, "") else value


def _table_for(param: str) -> Any:
    """The table a path parameter names, found through foreign keys of the same name (e.g. api_tokens.grant_id)."""
    targets = {fk.column.table for t in metadata.tables.values() if param in t.c for fk in t.c[param].foreign_keys}
    if len(targets) == 1:
        return targets.pop()
    return metadata.tables.get(param.removesuffix("_id") + "s")


def bystander_world(db: Database) -> World:
    """The demo county (already in `db`) seen by the walk, with BYSTANDER added: an account with one grant, for the
    county admin to edit, reset and revoke."""
    with db.write_txn() as s:
        bystander = make_user(s, BYSTANDER, name="旁观者甲")
        village = s.execute(select(Village.id).order_by(Village.id)).scalars().first()
        make_grant(s, bystander, Role.COMMITTEE_MEMBER.value, village_id=village)  # type: ignore[arg-type]
    return World(db)


# Path parameters without a scope resolver: objects owned by one user. -> factory(db, owner login) -> id
def _new_api_token(db: Database, owner: str) -> int:
    with db.write_txn() as s:
        uid = s.execute(select(User.id).where(User.login == owner)).scalar_one()
        grant = auth.active_grants(s, uid)[0]
        token = auth.create_api_token(s, Actor.system("测试"), user_id=uid, grant_id=grant.id,  # type: ignore[arg-type]
                                      name="路由权限测试").token
        return token.id  # type: ignore[return-value]


OWNED_PARAMS: dict[str, Callable[[Database, str], int]] = {"token_id": _new_api_token}


# Path parameters without a scope resolver that belong to the object another path parameter names:
# param -> (parent param, finder(db, parent id) -> an id belonging to that parent, or None).
def _import_batch_of(db: Database, village_id: int) -> int | None:
    with db.read_txn() as s:
        return s.execute(select(ImportBatch.id).where(ImportBatch.village_id == village_id)  # type: ignore[arg-type]
                         .order_by(ImportBatch.id)).scalars().first()  # type: ignore[arg-type]


def _sheet_upload_of(db: Database, round_id: int) -> int | None:
    """A rating sheet waiting for confirmation (the demo uploads none): an empty one, made here."""
    from app.evaluation.models import SheetUpload
    with db.write_txn() as s:
        found = s.execute(select(SheetUpload.id).where(SheetUpload.round_id == round_id)).scalars().first()  # type: ignore[arg-type]
        if found is not None:
            return int(found)
        up = SheetUpload(round_id=round_id, file_name="评分表.xlsx", cells=[], problems=[], created_by="测试")
        s.add(up)
        s.flush()
        return up.id


CHILD_PARAMS: dict[str, tuple[str, Callable[[Database, int], int | None]]] = {
    "batch_id": ("village_id", _import_batch_of),
    "upload_id": ("round_id", _sheet_upload_of),
}

# Path parameters that are not ids at all: a value the route accepts.
FIXED_PARAMS: dict[str, str] = {"fmt": "csv", "code": "DEMQ2345",  # code: the demo's results notice
                               "village_code": "341000101001"}  # the demo's first village, on the public portal


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


def _url(path: str, values: dict[str, Any]) -> str:
    return PARAM_RE.sub(lambda m: str(values[m.group(1)]), path)


def _problem_with_params(role: str, route: RouteInfo) -> str | None:
    for p in route.params:
        if p in CHILD_PARAMS and CHILD_PARAMS[p][0] not in route.params:
            return f"{route.path}: {p!r} is known only under {CHILD_PARAMS[p][0]!r}, which this path lacks"
        if p not in SCOPE_RESOLVERS and p not in OWNED_PARAMS and p not in CHILD_PARAMS and p not in FIXED_PARAMS:
            return (f"{route.path}: path parameter {p!r} has no scope resolver (register one with "
                    f"app.auth.deps.register_scope_resolver) and this test has no OWNED_PARAMS / CHILD_PARAMS / "
                    f"FIXED_PARAMS entry for it")
    if role != "anonymous" and role not in EXPECTED_PERMISSIONS:
        return f"role {role!r} is missing from EXPECTED_PERMISSIONS"
    return None


def _order(method: str, route: RouteInfo) -> tuple[bool, bool]:
    """Reads first, then writes (a write that succeeds must not spoil a read), and logout last."""
    return (method, route.path) in SESSION_ENDING, method not in SAFE_METHODS


def build_cases(role: str, routes: list[RouteInfo], world: World, db: Database) -> tuple[list[Case], list[str]]:
    cases: list[Case] = []
    problems: list[str] = []
    acting = "admin" if role == "anonymous" else role
    foreign_owner = "clerk" if acting == "admin" else "admin"
    if acting not in world.role or world.role[acting] not in REACH:
        return [], [f"demo user {acting!r} has no grant, or its role has no REACH rule in this test"]
    child_ids: dict[tuple[str, int], int | None] = {}

    def child_of(c: str, parent_id: int) -> int | None:
        if (c, parent_id) not in child_ids:
            child_ids[c, parent_id] = CHILD_PARAMS[c][1](db, parent_id)
        return child_ids[c, parent_id]

    for method, route in sorted(((m, r) for r in routes for m in r.methods), key=lambda mr: _order(*mr)):
        where = f"{method} {route.path}"
        if route.perm is None:
            problems.append(f"{where}: declares no permission (use Depends(authorize(Perm.…)))")
            continue
        problem = _problem_with_params(role, route)
        if problem:
            problems.append(problem)
            continue
        scoped = [p for p in route.params if p in SCOPE_RESOLVERS]
        owned = [p for p in route.params if p not in SCOPE_RESOLVERS and p in OWNED_PARAMS]
        children = [p for p in route.params if p not in SCOPE_RESOLVERS and p in CHILD_PARAMS]
        fixed = {p: FIXED_PARAMS[p] for p in route.params if p not in SCOPE_RESOLVERS and p in FIXED_PARAMS}
        inside = {p: i for p in scoped if (i := world.in_scope(acting, p)) is not None}
        outside = {p: world.out_of_scope(acting, p) for p in scoped}
        missing = [p for p in scoped if p not in inside and not outside[p]]
        if missing:
            problems.append(f"{where}: the demo data holds no object for {missing}: extend app/demo/loader.py")
            continue
        fallback = {p: inside[p] if p in inside else outside[p][0][0] for p in scoped}

        def fill(values: dict[str, Any], where: str = where, children: list[str] = children,
                 fixed: dict[str, str] = fixed) -> dict[str, Any] | None:
            """Add the parameters that hang off others (an import batch of the village in the path)."""
            values = {**values, **fixed}
            for c in children:
                parent = CHILD_PARAMS[c][0]
                if c not in values:
                    values[c] = child_of(c, values[parent])
                if values[c] is None:
                    problems.append(f"{where}: the demo data holds no {c} under {parent}={values[parent]}")
                    return None
            return values

        def add(values: dict[str, Any] | None, label: str, expect: str, audit_object: tuple[str, str] | None = None,
                secret: str | None = None, route: RouteInfo = route, method: str = method) -> None:
            if values is not None:
                cases.append(Case(method, route, _url(route.path, values), label, expect, audit_object, secret))

        if role == "anonymous":
            values = fill({**fallback, **{p: OWNED_PARAMS[p](db, foreign_owner) for p in owned}})
            add(values, "anonymous", "reachable" if route.perm is Perm.PUBLIC else "anonymous")
            continue

        own = {p: OWNED_PARAMS[p](db, acting) for p in owned}
        if route.perm is Perm.PUBLIC:  # authorize() checks nothing else for PUBLIC
            add(fill({**fallback, **own}), "public", "reachable")
            continue

        if route.perm not in EXPECTED_PERMISSIONS[role]:
            # the permission is checked before any scope: one request, with in-scope objects where there are any
            values = fill({**fallback, **own})
            far = [p for p in scoped if p not in inside and outside[p][0][1] not in AROUND_HOME]
            secret = world.name(far[0], fallback[far[0]], acting) if far else None
            label = ", ".join(f"{p}={v}" for p, v in fallback.items()) or "no object"
            add(values, f"without {route.perm}: {label}", "denied", secret=secret)
            continue
        # 1. everything in scope (skipped when the role reaches no object for some parameter)
        complete = len(inside) == len(scoped)
        if complete:
            label = ", ".join([f"{p}={v}" for p, v in inside.items()] + [f"{p}=own" for p in owned]) or "no object"
            add(fill({**inside, **own}), f"in scope: {label}", "reachable")
        # 2. one parameter out of scope at a time, the others in scope where the role reaches any. Reads try one
        #    object per kind of place; writes (slower, and checked by the same dependency) only the nearest one.
        for p in scoped:
            others_in = all(q in inside for q in scoped if q != p)
            tried = outside[p] if method in SAFE_METHODS else [
                o for n, o in enumerate(outside[p]) if n == 0 or o[1] == "own"]
            for object_id, where_ in tried:
                audit_obj = (p.removesuffix("_id"), str(object_id)) if others_in else None
                secret = None if where_ in AROUND_HOME else world.name(p, object_id, acting)
                add(fill({**fallback, p: object_id, **own}), f"out of scope: {p}={object_id} ({where_})", "denied",
                    audit_obj, secret)
        if not complete:
            continue
        # 3. an object without a scope resolver that belongs to another user: 404 like a missing one
        for p in owned:
            add(fill({**inside, **own, p: OWNED_PARAMS[p](db, foreign_owner)}), f"{p} of {foreign_owner}",
                "not_found")
        # 4. an object that hangs off another parent than the one in the path (another village's import batch)
        for c in children:
            parent = CHILD_PARAMS[c][0]
            other = next((x for i, _ in world.objects(parent) if i != inside[parent]
                          and (x := child_of(c, i)) is not None), None)
            if other is None:
                problems.append(f"{where}: the demo data holds no {c} outside {parent}={inside[parent]}")
                continue
            add(fill({**inside, **own, c: other}), f"{c}={other} of another {parent}", "not_found")
    return cases, problems
