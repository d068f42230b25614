"""Browser harness: the real service under uvicorn in a background thread, driven by Debian's Chromium.

- `live_server`: `create_app(settings)` served on a free local port against the per-test database built by
  tests/conftest.py (`settings` + `demo`), so it runs on SQLite and, with ZF_TEST_DATABASE_URL, on PostgreSQL.
  Each xdist worker picks its own port; each test gets its own database and server, stopped cleanly afterwards.
- `browser`: one headless Chromium per test session (per xdist worker). `context`/`page`: fresh for every test.
- The helpers tests call (a new profile, the login form) are in tests/support/browser.py.
- Chromium missing is a failure with instructions, never a skip: the browser tests are part of the gate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from app.config import Settings
from tests.support.browser import NAV_TIMEOUT_MS, new_context
from tests.support.live import LiveServer, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS_DIR = Path("/tmp/zf-shots")

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


@pytest.fixture
def context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    ctx = new_context(browser, live_server)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def shot() -> Callable[[Page, str], Path]:
    """Save a full-page screenshot to /tmp/zf-shots/<name>.png (for looking at, not for comparing)."""
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)

    def take(p: Page, name: str) -> Path:
        path = SHOTS_DIR / f"{name}.png"
        p.screenshot(path=str(path), full_page=True)
        return path

    return take
