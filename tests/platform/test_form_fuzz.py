"""Every form and every JSON body of the app, fuzzed with hostile text (issue 17, item 6): whatever is typed, pasted
or posted, the answer is a page or a JSON answer, a 4xx with a Chinese message when refused, never a 5xx.

The walk reuses the route walk of test_route_permissions (tests/support/routes.py): every unsafe route, with objects
the acting user reaches (so that the request gets past authorisation to the code that reads the fields). The fields
of a route come from its declaration (Form and File parameters, the JSON body model); a route that reads its form
itself (the grid, the presence list) gets every field name any form of the app declares. Each hostile value goes
into every field of the route at once, and into every uploaded file: the parsers behind a form see it too."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi import params as fastapi_params
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel

from app.db import Database
from app.deps import SAFE_METHODS
from app.web.templates import ANON_CSRF_COOKIE
from tests.support.routes import SESSION_ENDING, World, api_routes, build_cases, bystander_world
from tests.support.web import login

CJK = re.compile(r"[\u4e00-\u9fff]")

HOSTILE: list[str] = [
    "",
    "   ",
    "\x00",
    "前\x07后\x1b[31m",
    "\r\n\t",
    "x" * 100_000,  # beyond every field's length
    "中" * 3_000,
    "１２３",  # full-width digits
    "-1",
    "99999999999999999999",  # beyond 64 bits
    "1e309",
    "NaN",
    "0x1F",
    "2026-13-45",
    '"',
    "'; DROP TABLE households; --",
    "<script>alert(1)</script>",
    "a = " + "[" * 5_000 + "]" * 5_000,  # a TOML (or JSON) parser's recursion
    "a = " + "{b = " * 2_000 + "1" + "}" * 2_000,
    "a" + ".a" * 20_000 + " = 1",
    "".join(f"k{i} = 1\n" for i in range(5_000)),  # a TOML file of unknown keys
    '户号,姓名,与户主关系\r\n001,"张三,户主\r\n' + "x" * 140_000,  # a CSV whose stray quote runs past the csv module's limit
]
# Routes that end the session being used: not walked.
SKIP = SESSION_ENDING | {("POST", "/account/password")}


@pytest.fixture
def walk_world(db: Database, demo: dict[str, object]) -> World:
    """The demo county seen by the route walk (as test_route_permissions' `world`, with its bystander account)."""
    return bystander_world(db)


def _routes_by_key(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    found: dict[tuple[str, str], APIRoute] = {}
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            for method in route.methods or ():
                found[method, str(ctx.path)] = route
    return found


def _fields(route: APIRoute) -> tuple[list[str], list[str], type[BaseModel] | None]:
    """(form field names, file field names, JSON body model) the route declares."""
    forms, files, model = [], [], None
    for f in route.dependant.body_params or ():
        info = f.field_info
        if isinstance(info, fastapi_params.File):
            files.append(f.alias or f.name)
        elif isinstance(info, fastapi_params.Form):
            forms.append(f.alias or f.name)
        elif isinstance(f.field_info.annotation, type) and issubclass(f.field_info.annotation, BaseModel):
            model = f.field_info.annotation
    return forms, files, model


def _json_body(model: type[BaseModel], value: str) -> dict[str, Any]:
    """Every field of the model (and of the models it holds) given the hostile value."""
    body: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        inner = field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            body[name] = _json_body(inner, value)
        elif "list[" in repr(inner):
            body[name] = [value]
        else:
            body[name] = value
    return body


def _walk(role: str, app: FastAPI, client: TestClient, db: Database, world: World, api: bool) -> None:
    routes = api_routes(app)
    cases, problems = build_cases(role, routes, world, db)
    assert not problems, "\n".join(problems)
    by_key = _routes_by_key(app)
    every_form_field = sorted({name for r in by_key.values() for name in _fields(r)[0]})
    assert {"name", "reason", "text"} <= set(every_form_field), every_form_field
    csrf = login(client, role)
    client.cookies.set(ANON_CSRF_COOKIE, csrf)
    errors: list[str] = []
    walked = 0
    for case in cases:
        if (case.expect != "reachable" or case.method in SAFE_METHODS or (case.method, case.route.path) in SKIP
                or case.route.path.startswith("/api/") != api):
            continue
        route = by_key[case.method, case.route.path]
        forms, files, model = _fields(route)
        if not api and not forms and not files:
            forms = every_form_field  # a route that reads its form itself
        walked += 1
        for value in HOSTILE:
            if api:
                if model is None:
                    continue
                r = client.request(case.method, case.url, json=_json_body(model, value),
                                   headers={"X-CSRF-Token": csrf}, follow_redirects=False)
            else:
                upload = {f: ("上传.csv", value.encode("utf-8"), "application/octet-stream") for f in files}
                r = client.request(case.method, case.url, data={**{f: value for f in forms}, "csrf_token": csrf},
                                   files=upload or None, follow_redirects=False)
            where = f"{case.method} {case.url} with {value[:30]!r}{'…' if len(value) > 30 else ''}"
            if r.status_code >= 500:
                errors.append(f"{where}: {r.status_code} {r.text[:300]}")
            elif r.status_code >= 400 and not CJK.search(r.text):
                errors.append(f"{where}: {r.status_code} without a Chinese message: {r.text[:300]}")
            if r.status_code == 401 or r.headers.get("location", "").startswith("/login"):
                csrf = login(client, role)  # a request that ended the session: sign in again and go on
                client.cookies.set(ANON_CSRF_COOKIE, csrf)
    assert walked >= 5, f"the walk reached only {walked} routes"
    assert not errors, f"{len(errors)} bad answers:\n" + "\n".join(errors[:40])


@pytest.mark.parametrize("role", ["admin", "clerk", "member", "storekeeper"])
def test_every_form_answers_hostile_text_with_a_page_never_a_500(role: str, app: FastAPI, client: TestClient,
                                                                 db: Database, walk_world: World) -> None:
    _walk(role, app, client, db, walk_world, api=False)


@pytest.mark.parametrize("role", ["admin", "clerk"])
def test_every_json_body_answers_hostile_text_with_a_4xx_never_a_500(role: str, app: FastAPI, client: TestClient,
                                                                     db: Database, walk_world: World) -> None:
    _walk(role, app, client, db, walk_world, api=True)
