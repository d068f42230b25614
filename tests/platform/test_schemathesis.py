"""Schemathesis against /openapi.json: stateful runs (following the schema's OpenAPI links, those the routes declare
and those schemathesis infers) as each role of the demo county, through API tokens and through a browser session
with its CSRF header. No answer may be a 5xx, and every answer must be what the schema documents for that operation:
a documented status code, the documented content type, a body matching the documented schema.

Bounded and repeatable: derandomized Hypothesis, a modest number of scenarios, no shrinking, no example database.
Every scenario starts from the same database (the demo county and the run's credentials, put back before each one):
Hypothesis needs the same choices to lead to the same answers, or it reports the run as flaky.
Runs on SQLite, and on PostgreSQL when ZF_TEST_DATABASE_URL is set (the `demo` fixture picks the database).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import checks as st_checks
from schemathesis.python import asgi as st_asgi
from schemathesis.specs.openapi import checks as oa_checks
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from app.db import build_engine, metadata
from tests.support.db import PG_URL, copy_sqlite, truncate_all
from tests.support.web import DEMO_PASSWORDS

CHECKS = [st_checks.not_a_server_error, oa_checks.status_code_conformance, oa_checks.content_type_conformance,
          oa_checks.response_schema_conformance]

# Putting the database back costs ~10 ms on SQLite and ~0.3 s on PostgreSQL: fewer scenarios there (same steps).
SETTINGS = hypothesis.settings(max_examples=5 if PG_URL else 12, stateful_step_count=25, derandomize=True, database=None,
                               deadline=None, phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                               suppress_health_check=list(hypothesis.HealthCheck))

# What would end the run's own credential (its password, token, grant or account) and leave the rest of the run
# answering 401: fuzzed on their own, below.
SELF_DESTRUCTIVE = ["POST /api/v1/me/password", "DELETE /api/v1/me/tokens/{token_id}",
                    "POST /api/v1/users/{user_id}/password", "PUT /api/v1/users/{user_id}/active",
                    "DELETE /api/v1/grants/{grant_id}"]
# ... and the reads whose answers lead to the ids those take.
THEIR_SOURCES = ["GET /api/v1/me", "GET /api/v1/me/tokens", "GET /api/v1/users", "GET /api/v1/users/{user_id}/grants"]

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def credentials(app: Any, login_name: str, via: str) -> dict[str, str]:
    """Headers that authenticate as `login_name`: a fresh API token (via="token"), or the cookie of a session opened
    through the login form together with its CSRF token (via="session")."""
    with TestClient(app, base_url="http://testserver") as c:
        token = CSRF_RE.search(c.get("/login").text)
        assert token
        r = c.post("/login", data={"login": login_name, "password": DEMO_PASSWORDS[login_name],
                                   "csrf_token": token.group(1)}, follow_redirects=False)
        assert r.status_code == 303, r.text[:300]
        csrf = CSRF_RE.search(c.get("/account").text)
        assert csrf
        cookie = c.cookies.get("zf_session")
        assert cookie
        if via == "session":
            return {"Cookie": f"zf_session={cookie}", "X-CSRF-Token": csrf.group(1)}
        grant = c.get("/api/v1/me").json()["grants"][0]["id"]
        r = c.post("/api/v1/me/tokens", json={"name": "schemathesis", "grant_id": grant, "days": 1},
                   headers={"X-CSRF-Token": csrf.group(1)})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}


def snapshot(url: str, where: Path) -> Callable[[], None]:
    """The database as it is now; the function returned puts it back."""
    if url.startswith("sqlite"):
        live, saved = make_url(url).database, where / "snapshot.db"
        assert live
        copy_sqlite(live, saved)
        return lambda: copy_sqlite(saved, live)
    engine = build_engine(url)
    with engine.connect() as conn:
        rows = {t.name: [dict(r) for r in conn.execute(select(t)).mappings()] for t in metadata.sorted_tables}
    engine.dispose()

    def restore() -> None:
        truncate_all(url)
        engine = build_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("SET LOCAL session_replication_role = replica"))  # cyclic foreign keys
                for t in metadata.sorted_tables:
                    if rows[t.name]:
                        conn.execute(t.insert(), rows[t.name])
                    if "id" in t.c and t.c.id.primary_key:
                        conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), "
                                          f"(SELECT COALESCE(max(id), 0) + 1 FROM {t.name}), false)"))
        finally:
            engine.dispose()

    return restore


def run_stateful(schema: Any, headers: dict[str, str], restore: Callable[[], None]) -> None:
    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            restore()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None,
                              **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs=kwargs)

    Machine.run(settings=SETTINGS)


@pytest.fixture
def served(app, demo) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The app with the demo county; schemathesis starts its lifespan on the first call and keeps it for the
    process, so it is stopped here (it would hold the app and its database)."""
    yield app
    st_asgi.shutdown_lifespans()


RUNS = [("admin", "token"), ("reviewer", "token"), ("clerk", "token"), ("member", "token"),
        ("storekeeper", "token"), ("household", "token"), ("clerk", "session")]


@pytest.mark.parametrize(("login_name", "via"), RUNS, ids=[f"{n}-{v}" for n, v in RUNS])
def test_stateful_api_as_each_role(served, tmp_path: Path, login_name: str, via: str) -> None:  # type: ignore[no-untyped-def]
    headers = credentials(served, login_name, via)
    restore = snapshot(served.state.settings.database_url, tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", served).exclude(name=SELF_DESTRUCTIVE)
    run_stateful(schema, headers, restore)


def test_operations_on_own_credentials(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Passwords, tokens, grants and accounts, as the county admin (whose own token may well be revoked midway in a
    scenario: the answers after that are 401s, which must be documented too)."""
    headers = credentials(served, "admin", "token")
    restore = snapshot(served.state.settings.database_url, tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", served).include(name=SELF_DESTRUCTIVE + THEIR_SOURCES)
    run_stateful(schema, headers, restore)
