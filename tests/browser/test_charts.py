"""The report charts in a real Chromium: ECharts (vendored) draws SVG inside the chart elements under the page's
security policy (no inline script), with no console errors."""

from __future__ import annotations

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.support.browser import login_via_form

pytestmark = pytest.mark.browser


def test_dashboard_draws_svg_charts(page: Page) -> None:
    login_via_form(page, "reviewer")
    problems: list[str] = []

    def on_console(m: ConsoleMessage) -> None:
        if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico"):  # the browser's own ask
            problems.append(f"{m.text} at {m.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto("/dashboard")
    for testid in ("chart-coverage", "chart-points"):
        chart = page.get_by_test_id(testid)
        expect(chart).to_have_attribute("data-chart-ready", "")
        expect(chart.locator("svg").first).to_be_visible()
        assert chart.locator("svg path").count() > 0
    expect(page.get_by_test_id("chart-coverage").locator("svg text", has_text="覆盖率").first).to_be_attached()
    page.emulate_media(media="print")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    expect(page.get_by_test_id("chart-coverage").locator("svg").first).to_be_visible()
    assert problems == []
