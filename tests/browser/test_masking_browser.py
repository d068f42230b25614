"""A committee member's view of a household on a 360 px phone: birth year and the ID number's last two, no date."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from app.auth.models import RoleGrant, User
from app.db import Database
from app.households.models import Household, Member
from tests.support.browser import LiveServer, login_via_form, new_context


def test_a_committee_member_sees_no_birth_date_digits(browser: Browser, live_server: LiveServer, db: Database,
                                                      shot: Callable[[Page, str], Path]) -> None:
    with db.read_txn() as s:
        hid = s.execute(select(RoleGrant.household_id).join(User, User.id == RoleGrant.user_id)
                        .where(User.login == "household")).scalar_one()
        h = s.get(Household, hid)
        assert h is not None
        head = s.get(Member, h.head_member_id)
        assert head is not None and head.id_number and head.birth_date
    ctx = new_context(browser, live_server, viewport={"width": 360, "height": 740})
    try:
        page = ctx.new_page()
        login_via_form(page, "member")
        page.goto(f"/households/{hid}")
        table = page.get_by_test_id("members")
        expect(table).to_contain_text("出生年份")
        expect(table).to_contain_text(f"{head.birth_date.year}年")
        expect(table).to_contain_text(f"尾号 {head.id_number[-2:]}")
        # the page itself never scrolls sideways on a 360-pixel phone (the wide table scrolls inside its own box)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        text = page.locator("main").inner_text()
        assert head.birth_date.isoformat() not in text and head.id_number[6:14] not in text
        assert not re.search(r"[A-Za-z]{4,}", table.inner_text())  # nothing in English or internal codes
        shot(page, "household-member-view-360")
    finally:
        ctx.close()
