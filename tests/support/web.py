"""Signing in from tests: the suite's secret key, the demo accounts' passwords, a page's CSRF token and the login
form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

TEST_SECRET = "test-secret-" + "x" * 40
DEMO_PASSWORDS = {
    "admin": "Admin-pass-2026",
    "reviewer": "Reviewer-pass-2026",
    "clerk": "Clerk-pass-2026",
    "member": "Member-pass-2026",
    "storekeeper": "Store-pass-2026",
    "household": "Household-pass-2026",
}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "page has no CSRF token"
    return m.group(1)


def login(client: TestClient, login_name: str, password: str | None = None) -> str:
    """Log in through the real form (as a fresh browser: cookies cleared); returns the session's CSRF token."""
    client.cookies.clear()
    page = client.get("/login")
    token = csrf_from(page.text)
    r = client.post("/login", data={"login": login_name, "password": password or DEMO_PASSWORDS[login_name],
                                    "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    return csrf_from(client.get("/account").text)
