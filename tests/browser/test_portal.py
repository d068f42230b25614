"""The public portal on a 360 px phone, in a real Chromium: the county's villages, a village's notices, red list,
ranking and accounts without sideways scrolling, and a household looking up its own points with the card code
(typed as a person types it) and its PIN."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from app.core.context import Actor
from app.db import Database
from app.households.models import Household
from app.ledger import service as ledger
from app.notices.service import pins
from app.org.models import Village
from app.store.service import cards
from tests.support.browser import LiveServer, new_context

pytestmark = pytest.mark.browser

PHONE = {"width": 360, "height": 740}
PIN = "384907"
FIRST = "341000101001"


def scroll_width(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth"))


def test_portal_on_a_360px_phone(browser: Browser, live_server: LiveServer, db: Database, demo: dict,
                                 shot: Callable[[Page, str], Path]) -> None:
    with db.write_txn() as s:
        vid = s.execute(select(Village.id).where(Village.code == FIRST)).scalar_one()
        h = s.execute(select(Household).where(Household.village_id == vid).order_by(Household.id)).scalars().first()
        assert h is not None and h.id is not None
        card = cards.ensure_cards(s, Actor.system("测试"), [h.id])[h.id]
        payload = cards.payload(cards.card_key(live_server.settings.secret_key), card)
        pins.set_pin(s, Actor.system("测试"), h.id, PIN)
        balance = ledger.balance(s, h.id)

    ctx = new_context(browser, live_server, viewport=PHONE)  # type: ignore[arg-type]
    page = ctx.new_page()
    try:
        page.goto("/public")
        assert scroll_width(page) <= 360, "the village list scrolls sideways on a 360 px phone"
        with page.expect_navigation():
            page.get_by_test_id("village-link").filter(has_text="红旗村").click()
        assert page.url.endswith(f"/public/villages/{FIRST}")
        expect(page.get_by_test_id("notices")).to_be_visible()
        results = page.get_by_test_id("notice").filter(has_text="评比结果公示").first  # among the month's notices
        expect(results).to_contain_text("评比结果公示")
        expect(results.get_by_role("link", name="查看并核验")).to_be_visible()
        expect(page.get_by_test_id("red-row").first).to_be_visible()
        expect(page.get_by_test_id("red-row").first).to_contain_text("*")  # masked by the village's policy
        expect(page.get_by_test_id("rank-row").first).to_be_visible()
        expect(page.get_by_test_id("money-in")).to_be_visible()
        assert scroll_width(page) <= 360, "the village page scrolls sideways on a 360 px phone"
        box = page.get_by_test_id("me-link").bounding_box()
        assert box is not None and box["height"] >= 44, "the look-up button is too small to tap"
        shot(page, "portal-village-360")

        with page.expect_navigation():
            page.get_by_test_id("me-link").click()
        form = page.get_by_test_id("me-form")
        form.locator("input[name=card]").fill(payload.lower().replace("-", " "))  # as typed from the card
        form.locator("input[name=pin]").fill("000001")
        with page.expect_navigation():
            form.get_by_role("button", name="查询").click()
        expect(page.get_by_test_id("error")).to_contain_text("卡号或查询密码不正确")
        expect(page.get_by_test_id("balance")).to_have_count(0)

        form = page.get_by_test_id("me-form")
        form.locator("input[name=pin]").fill(PIN)  # the card code is still in the field
        with page.expect_navigation():
            form.get_by_role("button", name="查询").click()
        expect(page.get_by_test_id("balance")).to_contain_text(str(balance))
        expect(page.get_by_test_id("lines")).to_be_visible()
        assert scroll_width(page) <= 360, "the household's page scrolls sideways on a 360 px phone"
        shot(page, "portal-me-360")
    finally:
        ctx.close()
