"""Browser harness: the real service under uvicorn in a background thread, driven by Debian's Chromium.

- `live_server`: `create_app(settings)` served on a free local port against the per-test database built by
  tests/conftest.py (`settings` + `demo`), so it runs on SQLite and, with ZF_TEST_DATABASE_URL, on PostgreSQL.
  Each xdist worker picks its own port; each test gets its own database and server, stopped cleanly afterwards.
- `browser`: one headless Chromium per test session (per xdist worker). `context`/`page`: fresh for every test.
- Chromium missing is a failure with instructions, never a skip: the browser tests are part of the gate.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect, sync_playwright

from app.config import Settings
from app.main import create_app
from tests.conftest import DEMO_PASSWORDS

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS_DIR = Path("/tmp/zf-shots")
STARTUP_TIMEOUT_S = 20.0
NAV_TIMEOUT_MS = 10_000  # generous: the suite also runs on a busy 2-core CI machine next to xdist workers

expect.set_options(timeout=NAV_TIMEOUT_MS)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    settings: Settings


def _wait_healthy(url: str, thread: threading.Thread, server: uvicorn.Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped during startup (see the captured log above)")
        if server.started:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError as e:  # not listening yet, or 503 while the database is not reachable
                last_error = e
        time.sleep(0.05)
    raise RuntimeError(f"service at {url} did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s: {last_error}")


@pytest.fixture
def live_server(settings: Settings, demo: dict[str, object]) -> Iterator[LiveServer]:
    """The real application on http://127.0.0.1:<free port>, with the demo county and DEMO_PASSWORDS loaded."""
    app = create_app(settings)
    port = _free_port()
    config = uvicorn.Config(app=app, host="127.0.0.1", port=port, log_config=None, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, thread, server)
        yield LiveServer(url=url, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():  # a connection kept open: stop waiting for it
            server.force_exit = True
            thread.join(timeout=5)
        app.state.db.dispose()
    assert not thread.is_alive(), "uvicorn did not stop"


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
