"""Browser helpers for the Playwright tests (their fixtures are in tests/browser/conftest.py): a fresh browser profile
pointed at a live server, and the login form filled in as a person would."""

from __future__ import annotations

from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize

from tests.support.live import LiveServer
from tests.support.web import DEMO_PASSWORDS

NAV_TIMEOUT_MS = 10_000  # generous: the suite also runs on a busy 2-core CI machine next to xdist workers

__all__ = ["NAV_TIMEOUT_MS", "LiveServer", "login_via_form", "new_context", "submit_login"]


def new_context(browser: Browser, server: LiveServer, viewport: ViewportSize | None = None) -> BrowserContext:
    """A fresh browser profile (no cookies) pointed at the live server; the caller closes it."""
    ctx = browser.new_context(base_url=server.url, locale="zh-CN", viewport=viewport or {"width": 1280, "height": 800})
    ctx.set_default_timeout(NAV_TIMEOUT_MS)
    return ctx


def login_via_form(page: Page, login: str, password: str | None = None) -> None:
    """Open /login, fill in and submit the real form; waits for the answer (the next page, or the form again)."""
    page.goto("/login")
    submit_login(page, login, password)


def submit_login(page: Page, login: str, password: str | None = None) -> None:
    """Fill in and submit the login form already on the page (e.g. shown again after a failed attempt)."""
    form = page.get_by_test_id("login-form")
    form.locator("input[name=login]").fill(login)
    form.locator("input[name=password]").fill(password if password is not None else DEMO_PASSWORDS[login])
    with page.expect_navigation():
        form.get_by_role("button", name="登录").click()
