"""Browser harness: the real service under uvicorn in a background thread, driven by Debian's Chromium.

- `live_server`: `create_app(settings)` served on a free local port against the per-test database built by
  tests/conftest.py (`settings` + `demo`), so it runs on SQLite and, with ZF_TEST_DATABASE_URL, on PostgreSQL.
  Each xdist worker picks its own port; each test gets its own database and server, stopped cleanly afterwards.
- `browser`: one headless Chromium per test session (per xdist worker). `context`/`page`: fresh for every test.
- Chromium missing is a failure with instructions, never a skip: the browser tests are part of the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect, sync_playwright

from app.config import Settings
from tests.conftest import DEMO_PASSWORDS
from tests.support.live import LiveServer, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS_DIR = Path("/tmp/zf-shots")
NAV_TIMEOUT_MS = 10_000  # generous: the suite also runs on a busy 2-core CI machine next to xdist workers

expect.set_options(timeout=NAV_TIMEOUT_MS)


@pytest.fixture
def live_server(settings: Settings, demo: dict[str, object]) -> Iterator[LiveServer]:
    """The real application on http://127.0.0.1:<free port>, with the demo county and DEMO_PASSWORDS loaded."""
    with serve(settings) as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: the browser tests need Debian's Chromium. "
                    "Install it with: apt-get install -y chromium  (do not run `playwright install`)",
                    pytrace=False)
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        except Exception as e:
            pytest.fail(f"could not start Chromium at {CHROMIUM}: {e}\n"
                        "Check that Debian's package works: apt-get install -y chromium", pytrace=False)
        yield b
        b.close()


def new_context(browser: Browser, server: LiveServer, viewport: ViewportSize | None = None) -> BrowserContext:
    """A fresh browser profile (no cookies) pointed at the live server; the caller closes it."""
    ctx = browser.new_context(base_url=server.url, locale="zh-CN", viewport=viewport or {"width": 1280, "height": 800})
    ctx.set_default_timeout(NAV_TIMEOUT_MS)
    return ctx


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    ctx = new_context(browser, live_server)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


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


@pytest.fixture
def shot() -> Callable[[Page, str], Path]:
    """Save a full-page screenshot to /tmp/zf-shots/<name>.png (for looking at, not for comparing)."""
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)

    def take(p: Page, name: str) -> Path:
        path = SHOTS_DIR / f"{name}.png"
        p.screenshot(path=str(path), full_page=True)
        return path

    return take
