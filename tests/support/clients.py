"""Test clients against one application per worker, over the demo county: the fixtures and helpers that
tests/auth/test_auth.py, tests/audit/test_audit.py and tests/platform/test_bad_input.py share.

A test module takes the fixtures by naming them at its top (pytest finds fixtures among a module's names):

    from tests.support import clients as common
    _client_stack = common._client_stack
    db_url = common.db_url
    demo = common.demo
    app = common.app
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.auth.models import RoleGrant, User
from app.auth.service import accounts as auth_service
from app.config import Settings
from app.db import Database
from app.main import create_app
from app.org.models import Township, Village
from tests.support.web import DEMO_PASSWORDS, csrf_from

SESSION_COOKIE = "zf_session"


@pytest.fixture
def db_url(demo_db_url: str) -> str:
    return demo_db_url  # every test here starts from the demo county (see tests/conftest.py)


_SHARED_APP: list[FastAPI] = []


@pytest.fixture
def app(settings: Settings, db: Database) -> Iterator[FastAPI]:
    """One application per worker, pointed at each test's own database and settings. FastAPI prepares each route on
    an application's first request; doing that once rather than in every test keeps these files fast. The app
    itself keeps no state (DESIGN §1): everything lives in the database it is given."""
    if not _SHARED_APP:
        _SHARED_APP.append(create_app(settings))
    application = _SHARED_APP[0]
    application.state.settings = settings
    application.state.db = Database(settings.database_url)
    try:
        yield application
    finally:
        application.state.db.dispose()


@pytest.fixture
def demo(db: Database, demo_accounts: dict[str, object]) -> dict[str, object]:
    return demo_accounts


_OPEN: list[ExitStack] = []


@pytest.fixture(autouse=True)
def _client_stack() -> Iterator[None]:
    """Clients made by `new_client` stay open for the test (an open TestClient keeps its event loop: fast)."""
    with ExitStack() as stack:
        _OPEN.append(stack)
        try:
            yield
        finally:
            _OPEN.remove(stack)


def new_client(app, **kw) -> TestClient:  # type: ignore[no-untyped-def]
    c = TestClient(app, base_url=kw.pop("base_url", "http://testserver"), **kw)
    return _OPEN[-1].enter_context(c) if _OPEN else c


def form_login(c: TestClient, name: str, password: str, csrf: str | None = None, **headers: str):  # type: ignore[no-untyped-def]
    """POST the login form (fetching the form first for its CSRF token unless one is given)."""
    token = csrf or csrf_from(c.get("/login").text)
    return c.post("/login", data={"login": name, "password": password, "csrf_token": token},
                  headers=headers, follow_redirects=False)


def user_id(db, login_name: str) -> int:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        return int(s.execute(select(User.id).where(User.login == login_name)).scalar_one())


def events(db, action: str) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        return list(s.execute(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)).scalars())


def count(db, model) -> int:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def assert_api_error(r, status: int, code: str | None = None, text: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text[:500]
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert re.search(r"[\u4e00-\u9fff]", body["error"]["message"]), body
    if code:
        assert body["error"]["code"] == code, body
    if text:
        assert text in body["error"]["message"], body
    return body["error"]  # type: ignore[no-any-return]


def api_login(app, name: str, password: str | None = None) -> TestClient:  # type: ignore[no-untyped-def]
    """A client with a session opened by the login service (as the form does, without fetching pages), sending the
    session's CSRF token as a header on every request. Tests of the login form itself use `login`/`form_login`."""
    db = app.state.db
    with db.write_txn() as s:
        result = auth_service.login(s, app.state.settings, login=name, password=password or DEMO_PASSWORDS[name],
                                    ip="testclient", user_agent="pytest", request_id=None)
    c = new_client(app, cookies={SESSION_COOKIE: result.token})
    c.headers["X-CSRF-Token"] = result.principal.csrf_token or ""
    return c


def ids(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        t = {t.name: t.id for t in s.execute(select(Township)).scalars()}
        v = {v.name: v.id for v in s.execute(select(Village)).scalars()}
    return {**t, **v}  # type: ignore[dict-item]


def grant_id_of(db, login_name: str, role: str) -> int:  # type: ignore[no-untyped-def]
    with db.read_txn() as s:
        return int(s.execute(select(RoleGrant.id).where(RoleGrant.user_id == user_id(db, login_name),
                                                        RoleGrant.role == role)).scalar_one())
