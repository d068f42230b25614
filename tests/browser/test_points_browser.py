"""A household reads its points on a 360 px phone; the county administrator adjusts and reverses in a real Chromium."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import LiveServer, login_via_form, new_context

pytestmark = pytest.mark.browser

NARROW = {"width": 360, "height": 740}


def test_household_reads_its_points_on_a_small_phone(browser: Browser, live_server: LiveServer,
                                                      shot: Callable[[Page, str], Path]) -> None:
    ctx = new_context(browser, live_server, viewport=NARROW)  # type: ignore[arg-type]
    try:
        page = ctx.new_page()
        login_via_form(page, "household")
        page.locator("nav.mainnav").get_by_role("link", name="积分", exact=True).click()
        expect(page.get_by_test_id("balance")).to_contain_text("现有积分")
        rows = page.get_by_test_id("statement").locator("tbody tr")
        assert rows.count() >= 2
        expect(page.get_by_test_id("statement")).to_contain_text("评比积分")
        assert page.get_by_test_id("adjust-form").count() == 0  # a household cannot adjust
        shot(page, "household-points-360")
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= NARROW["width"] + 1, f"horizontal overflow at 360 px: {scroll}"
    finally:
        ctx.close()


def test_admin_adjusts_then_reverses(browser: Browser, live_server: LiveServer,
                                     shot: Callable[[Page, str], Path]) -> None:
    ctx = new_context(browser, live_server)
    try:
        page = ctx.new_page()
        login_via_form(page, "admin")
        page.goto("/points")
        page.get_by_test_id("villages").get_by_role("link").first.click()
        expect(page.get_by_test_id("summary")).to_be_visible()
        shot(page, "village-points")
        page.goto("/households?q=")
        page.locator("table a[href^='/households/']").first.click()
        page.get_by_test_id("points-link").click()
        before = int(page.get_by_test_id("balance").locator("strong").inner_text())
        page.locator("details:has([data-testid=adjust-form]) > summary").click()
        form = page.get_by_test_id("adjust-form")
        form.locator("input[name=amount]").fill("7")
        form.locator("input[name=reason]").fill("9月漏记热心公益")
        with page.expect_navigation():
            form.get_by_role("button", name="记入调整").click()
        expect(page.get_by_role("alert").or_(page.locator(".flash-success"))).to_contain_text("已调整")
        expect(page.get_by_test_id("balance").locator("strong")).to_have_text(str(before + 7))
        first = page.get_by_test_id("statement").locator("tbody tr").first
        expect(first).to_contain_text("积分调整 +7：9月漏记热心公益")
        first.locator("summary", has_text="冲正").click()
        first.locator("input[name=reason]").fill("调整有误")
        with page.expect_navigation():
            first.get_by_role("button", name="冲正这笔").click()
        expect(page.get_by_test_id("balance").locator("strong")).to_have_text(str(before))
        expect(page.get_by_test_id("statement").locator("tbody tr").nth(1)).to_contain_text("已冲正")
        shot(page, "household-points-admin")
    finally:
        ctx.close()
