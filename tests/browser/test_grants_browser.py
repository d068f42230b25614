"""The county admin grants a role the way it once went wrong: only a store chosen, 添加授权 pressed. Nothing is
granted; the role must be chosen, the page says in one sentence what will be granted, and a confirmation makes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlalchemy import select

from app.auth.models import RoleGrant
from app.db import Database
from app.org.models import Store
from tests.support.browser import LiveServer, login_via_form, new_context
from tests.support.factories import make_user

pytestmark = pytest.mark.browser


def test_admin_grants_a_store_clerk_only_after_naming_the_role_and_confirming(
        browser: Browser, live_server: LiveServer, db: Database, demo: dict, shot: Callable[[Page, str], Path]) -> None:
    with db.write_txn() as s:
        u = make_user(s, "zhangsan", name="张三")
        store = s.execute(select(Store).order_by(Store.id)).scalars().first()
        assert store is not None
        store_id, store_name = store.id, store.name
    ctx = new_context(browser, live_server, {"width": 1366, "height": 768})
    page = ctx.new_page()
    problems: list[str] = []

    def on_console(m: ConsoleMessage) -> None:
        if m.type in ("error", "warning"):
            problems.append(f"{m.text} at {m.location.get('url')}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    login_via_form(page, "admin")
    page.goto(f"/admin/users/{u.id}")
    form = page.locator("#grant-form")
    role = form.locator("select[name=role]")
    expect(role).to_have_value("")  # no role chosen for the admin
    expect(page.get_by_test_id("grant-preview")).to_have_text("请先选择角色。")
    expect(form.locator("select[name=store_id]")).to_be_hidden()  # a place only once a role asks for it

    # what went wrong: 添加授权 with no role. The browser asks for the role; nothing reaches the server.
    form.get_by_role("button", name="添加授权").click()
    assert page.evaluate("document.querySelector('#grant-form select[name=role]').validity.valueMissing")
    with db.read_txn() as s:
        assert s.execute(select(RoleGrant).where(RoleGrant.user_id == u.id)).first() is None

    # keyboard only: choose the role, then the store; the sentence follows
    role.focus()
    role.select_option("store_clerk")
    store_select = form.locator("select[name=store_id]")
    expect(store_select).to_be_visible()
    expect(form.locator("select[name=village_id]")).to_be_hidden()
    expect(page.get_by_test_id("grant-preview")).to_have_text("超市管理员：请选择范围。")
    store_select.select_option(str(store_id))
    sentence = f"将授予 张三（zhangsan）“{store_name} 超市管理员”"
    expect(page.get_by_test_id("grant-preview")).to_have_text(sentence)
    shot(page, "grant-1-chosen")
    store_select.focus()
    page.keyboard.press("Tab")  # the household number is hidden (not in the tab order): next is 添加授权
    assert page.evaluate("document.activeElement.textContent.trim()") == "添加授权"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    confirm = page.get_by_test_id("grant-confirm")
    expect(confirm).to_contain_text(sentence)
    shot(page, "grant-2-confirm")
    with db.read_txn() as s:  # shown, not yet granted
        assert s.execute(select(RoleGrant).where(RoleGrant.user_id == u.id)).first() is None
    with page.expect_navigation():
        confirm.get_by_role("button", name="确认授予").click()
    expect(page.locator(".flash")).to_contain_text("已授予")
    expect(page.locator("section.card ul")).to_contain_text(store_name)
    shot(page, "grant-3-done")
    with db.read_txn() as s:
        rows = s.execute(select(RoleGrant).where(RoleGrant.user_id == u.id)).scalars().all()
        assert [(g.role, g.store_id, g.village_id, g.township_id) for g in rows] == [("store_clerk", store_id, None, None)]
    assert not problems, problems
    ctx.close()
