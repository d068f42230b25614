"""Login, navigation by role, throttling, logout, large-font mode and the 360 px layout, in a real Chromium."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from app.auth.deps import SESSION_COOKIE
from app.auth.permissions import ROLE_PERMISSIONS, Perm
from app.web.templates import NAV
from tests.support.browser import LiveServer, login_via_form, new_context, submit_login
from tests.support.web import DEMO_PASSWORDS

pytestmark = pytest.mark.browser

BAD_LOGIN = "登录名或密码不正确"
NARROW = {"width": 360, "height": 740}


def nav_labels(page: Page) -> list[str]:
    return [t.strip() for t in page.locator("nav.mainnav a").all_inner_texts()]


def expected_nav(role: object) -> list[str]:
    """What NAV shows a holder of `role`, from NAV and ROLE_PERMISSIONS (not from the code under test's filter)."""
    allowed = ROLE_PERMISSIONS[role] | {Perm.PUBLIC, Perm.SIGNED_IN}  # type: ignore[index]
    return [label for label, _url, perm in NAV if perm in allowed]


def has_session(context: BrowserContext) -> bool:
    return any(c["name"] == SESSION_COOKIE for c in context.cookies())


def html_classes(page: Page) -> list[str]:
    return (page.locator("html").get_attribute("class") or "").split()


def overflow(page: Page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")


# ---- 1. navigation by role ----------------------------------------------------------------------------------------

def test_nav_shows_each_role_what_it_may_use(browser: Browser, live_server: LiveServer, demo: dict) -> None:
    """Every demo role logs in through the form; one server and one page for all six, cookies cleared between."""
    seen: dict[str, list[str]] = {}
    problems: list[str] = []
    ctx = new_context(browser, live_server)
    page = ctx.new_page()
    for login in DEMO_PASSWORDS:
        account = demo[login]
        ctx.clear_cookies()
        login_via_form(page, login)
        if not re.search(r"/$", page.url) or not has_session(ctx):
            problems.append(f"{login}: not logged in (at {page.url})")
            continue
        expect(page.get_by_test_id("who")).to_have_text(account.display_name)
        labels = seen[login] = nav_labels(page)
        want = expected_nav(account.role)
        if labels != want:
            problems.append(f"{login} ({account.role}): nav shows {labels}, ROLE_PERMISSIONS allow {want}")
        # the home page's tiles repeat the same entries (all but 首页), after the role's own shortcut (the counter,
        # the household's card), which comes first
        tiles = [t.strip() for t in page.locator("section.tiles a.tile:not(.primary-tile)").all_inner_texts()]
        shortcut = [t.strip() for t in page.locator("section.tiles a.primary-tile").all_inner_texts()]
        want_shortcut = {"storekeeper": ["柜台兑换"], "household": ["我的积分卡和可兑换商品"]}.get(login, [])
        if shortcut != want_shortcut:
            problems.append(f"{login}: home page shortcut {shortcut}, expected {want_shortcut}")
        want_tiles = [label for label in want if label != "首页"]
        if tiles != want_tiles:
            problems.append(f"{login}: home page tiles {tiles}, expected {want_tiles}")
    ctx.close()
    assert not problems, "\n".join(problems)

    # the same, spelled out, so a reader sees what is meant (later issues add entries; these must not move)
    staff_only = {"行政区划", "账号管理", "审计日志"}
    assert {"首页", "行政区划", "账号管理", "审计日志", "我的账号"} <= set(seen["admin"])
    for login in ("reviewer", "clerk", "member", "storekeeper"):
        assert "行政区划" in seen[login] and "我的账号" in seen[login], (login, seen[login])
        assert "账号管理" not in seen[login] and "审计日志" not in seen[login], (login, seen[login])
    assert seen["household"][0] == "首页" and seen["household"][-1] == "我的账号", seen["household"]
    assert not staff_only & set(seen["household"]), seen["household"]


# ---- 2. wrong password --------------------------------------------------------------------------------------------

def test_wrong_password_shows_chinese_error_and_sets_no_session(page: Page, context: BrowserContext,
                                                                live_server: LiveServer) -> None:
    login_via_form(page, "clerk", "not-the-password")

    expect(page.get_by_test_id("error")).to_contain_text(BAD_LOGIN)
    assert re.search(r"/login$", page.url), page.url
    expect(page.locator("input[name=login]")).to_have_value("clerk")  # the login name is kept, the password not
    expect(page.locator("input[name=password]")).to_have_value("")
    expect(page.locator("nav.mainnav")).to_have_count(0)
    assert not has_session(context), context.cookies()


# ---- 3. throttling ------------------------------------------------------------------------------------------------

def test_account_is_locked_after_too_many_failures(page: Page, context: BrowserContext,
                                                   live_server: LiveServer) -> None:
    limit = live_server.settings.login_max_failures_per_account
    page.goto("/login")
    error = page.get_by_test_id("error")
    for i in range(limit):  # each failed attempt shows the form again, with the error
        submit_login(page, "member", f"wrong-{i}")
        expect(error).to_contain_text(BAD_LOGIN)
        expect(error).not_to_contain_text("锁定")

    submit_login(page, "member", "wrong-once-more")
    expect(error).to_contain_text("锁定")
    expect(error).to_contain_text("分钟")

    submit_login(page, "member")  # the right password, now refused
    expect(error).to_contain_text("锁定")
    expect(error).to_contain_text("分钟")
    expect(page.locator("nav.mainnav")).to_have_count(0)
    assert not has_session(context)
    page.goto("/org")
    assert "/login" in page.url

    login_via_form(page, "clerk")  # the lock is per account: another account from the same browser still gets in
    assert has_session(context)
    expect(page.get_by_test_id("who")).to_have_text("张志强")


# ---- 4. logout ----------------------------------------------------------------------------------------------------

def test_logout_returns_to_login_and_protects_pages(page: Page, context: BrowserContext,
                                                    live_server: LiveServer) -> None:
    login_via_form(page, "admin")
    page.goto("/org")
    expect(page.locator("h1")).to_contain_text("行政区划")

    old_session = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
    with page.expect_navigation():
        page.get_by_role("button", name="退出").click()
    assert re.search(r"/login$", page.url), page.url
    expect(page.get_by_test_id("login-form")).to_be_visible()
    expect(page.locator("[role=status]")).to_contain_text("您已安全退出")
    assert not has_session(context)

    page.goto("/org")
    assert re.search(r"/login\?next=(/|%2F)org$", page.url), page.url
    expect(page.get_by_test_id("login-form")).to_be_visible()
    expect(page.locator("nav.mainnav")).to_have_count(0)

    # the session is ended on the server too: a copy of the old cookie opens nothing
    assert old_session
    context.add_cookies(old_session)  # type: ignore[arg-type]
    page.goto("/org")
    assert "/login" in page.url, page.url
    expect(page.locator("nav.mainnav")).to_have_count(0)


# ---- 5. large-font mode -------------------------------------------------------------------------------------------

def test_large_font_is_applied_and_remembered_per_user(page: Page, browser: Browser,
                                                       live_server: LiveServer) -> None:
    login_via_form(page, "admin")
    assert "large-font" not in html_classes(page)
    button = page.get_by_test_id("large-font")
    expect(button).to_have_text("老年模式")
    normal_size = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")

    with page.expect_navigation():
        button.click()
    assert "large-font" in html_classes(page)
    expect(button).to_have_text("标准字体")
    large_size = page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    assert large_size > normal_size

    page.reload()
    assert "large-font" in html_classes(page)

    # kept with the user, not the browser: a fresh browser profile gets it at login, another user does not
    other = new_context(browser, live_server)
    try:
        p2 = other.new_page()
        login_via_form(p2, "admin")
        assert "large-font" in html_classes(p2)
        with p2.expect_navigation():
            p2.get_by_role("button", name="退出").click()
        login_via_form(p2, "clerk")
        expect(p2.get_by_test_id("who")).to_have_text("张志强")
        assert "large-font" not in html_classes(p2)
    finally:
        other.close()

    with page.expect_navigation():  # and it switches back
        page.get_by_test_id("large-font").click()
    assert "large-font" not in html_classes(page)


# ---- 6. 360 px wide -----------------------------------------------------------------------------------------------

def test_no_horizontal_overflow_at_360px(browser: Browser, live_server: LiveServer,
                                         shot: Callable[[Page, str], Path]) -> None:
    ctx = new_context(browser, live_server, viewport=NARROW)
    try:
        page = ctx.new_page()
        problems: list[str] = []

        def check(name: str) -> None:
            scroll, client = overflow(page)
            shot(page, name)
            if scroll > NARROW["width"] + 1:
                problems.append(f"{name} ({page.url}): scrollWidth {scroll} > {NARROW['width']} (clientWidth {client})")

        page.goto("/login")
        check("login-360")
        login_via_form(page, "admin")
        expect(page.get_by_test_id("who")).to_be_visible()
        check("admin-home-360")
        page.goto("/org")
        expect(page.locator("h1")).to_contain_text("行政区划")
        check("admin-org-360")

        with page.expect_navigation():  # the same in large-font mode, which the elderly use on small phones
            page.get_by_test_id("large-font").click()
        assert "large-font" in html_classes(page)
        check("admin-org-360-large")
        page.goto("/")
        check("admin-home-360-large")

        assert not problems, "horizontal overflow at 360 px:\n" + "\n".join(problems)
    finally:
        ctx.close()
