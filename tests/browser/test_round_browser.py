"""A whole month of the monthly evaluation in a real Chromium, every step through the pages as the users would:
the clerk opens the round and enters the grid with the keyboard (autosave), the committee votes a determination,
the township approves, the household reads its explained result on a 360 px phone and objects, the committee's
decision is recorded and the clerk posts the points."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, Request, ViewportSize, expect
from sqlalchemy import update
from sqlmodel import col

from app.db import Database
from app.evaluation.models import EvalRound
from app.evaluation.service import rounds
from tests.support.browser import LiveServer, login_via_form, new_context
from tests.support.eval_helpers import NAMES, THEMES, EvalVillage, staffed_village

pytestmark = pytest.mark.browser

PW = "Passw0rd-test"
MONTH = 202609
MONTH_LABEL = "2026年9月"
NARROW: ViewportSize = {"width": 360, "height": 740}
CELLS = 6 * len(THEMES)  # six households, every theme


def _setup(db: Database) -> tuple[EvalVillage, int]:
    """A village with its committee, its clerk, the township's reviewer, and the account of household 005 (刘志强),
    which is no member's own household (all four members may vote on it)."""
    return staffed_village(db)


class Users:
    """One browser profile per person, logged in through the form; all closed at the end of the test."""

    def __init__(self, browser: Browser, server: LiveServer, stack: ExitStack) -> None:
        self.browser, self.server, self.stack = browser, server, stack

    def login(self, login: str, viewport: ViewportSize | None = None) -> Page:
        ctx = new_context(self.browser, self.server, viewport=viewport)
        self.stack.callback(ctx.close)
        page = ctx.new_page()
        login_via_form(page, login, PW)
        expect(page.get_by_test_id("who")).to_be_visible()  # logged in, not the form again
        return page


def flash(page: Page) -> Locator:
    return page.locator(".flash-success")


def open_round_via_nav(page: Page, village_name: str) -> None:
    """评比 → the village → the month, as a committee member or the reviewer finds the round."""
    page.locator("nav.mainnav").get_by_role("link", name="评比", exact=True).click()
    page.get_by_test_id("villages").get_by_role("link", name=village_name, exact=True).click()
    page.get_by_test_id("rounds").get_by_role("link", name=MONTH_LABEL, exact=True).click()
    expect(page.locator("h1")).to_contain_text(f"{village_name} {MONTH_LABEL}评比")


def cell(page: Page, head: str, theme_name: str) -> Locator:
    """A grid cell by its accessible name (the template's aria-label: head of household and theme)."""
    return page.get_by_test_id("grid").get_by_label(f"{head} {theme_name}", exact=True)


def wait_saved(page: Page, *cells: Locator) -> None:
    """The autosave is done when every changed cell lost its "dirty" mark (data-v takes the saved value) and the
    status says 已保存."""
    for c in cells:
        expect(c).not_to_have_class(re.compile(r"\b(dirty|bad)\b"))
        expect(c).to_have_attribute("data-v", c.input_value())
    expect(page.locator("#save-status")).to_have_text("已保存")


@pytest.fixture
def users(browser: Browser, live_server: LiveServer) -> Iterator[Users]:
    with ExitStack() as stack:
        yield Users(browser, live_server, stack)


def test_a_month_of_evaluation_in_the_browser(users: Users, db: Database, tmp_path: Path) -> None:
    ev, mine = _setup(db)
    village = ev.village.name
    heads = NAMES[:6]  # the heads of households 001..006, in the grid's order

    # ---- 1. the clerk opens the round for a past month and records who is present --------------------------------
    clerk = users.login("clerk1")
    clerk.locator("nav.mainnav").get_by_role("link", name="评比", exact=True).click()
    clerk.get_by_test_id("villages").get_by_role("link", name=village, exact=True).click()
    expect(clerk.get_by_role("heading", name="开始新一轮评比")).to_be_visible()
    form = clerk.get_by_test_id("open-round")
    form.locator("input[name=month]").fill(str(MONTH))
    expect(form.locator("select[name=mode]")).to_have_value("consensus")
    form.locator("input[name=objection_days]").fill("5")
    with clerk.expect_navigation():
        form.get_by_role("button", name="开始评比").click()
    expect(flash(clerk)).to_contain_text(f"已开始{MONTH_LABEL}评比")
    m = re.search(r"/rounds/(\d+)$", clerk.url)
    assert m, clerk.url
    rid = int(m.group(1))
    expect(clerk.get_by_test_id("status")).to_have_text("草稿")
    present = clerk.get_by_test_id("present-form")
    for u in ev.members:
        present.get_by_label(u.display_name, exact=True).check()
    with clerk.expect_navigation():
        present.get_by_role("button", name="保存出席名单").click()
    expect(flash(clerk)).to_contain_text(f"已记录出席委员 {len(ev.members)} 人")
    for u in ev.members:
        expect(clerk.get_by_test_id("present-form").get_by_label(u.display_name, exact=True)).to_be_checked()

    # ---- 2. the grid: fill the blanks with 良, then change a few cells with the keyboard only --------------------
    clerk.get_by_role("link", name="打开评分表").click()
    expect(clerk).to_have_url(re.compile(rf"/rounds/{rid}/grid$"))
    grid = clerk.get_by_test_id("grid")
    expect(grid.locator("input.cell")).to_have_count(CELLS)
    expect(clerk.get_by_test_id("missing")).to_have_text(f"还缺 {CELLS} 项")
    fill = clerk.get_by_test_id("fill-form")
    fill.locator("select[name=grade]").select_option("良")
    with clerk.expect_navigation():
        fill.get_by_role("button", name="填充空格").click()
    expect(flash(clerk)).to_contain_text(f"已将 {CELLS} 个空格填为“良”")
    expect(clerk.get_by_test_id("missing")).to_have_text("还缺 0 项")
    for c in grid.locator("input.cell").all():
        expect(c).to_have_value("良")

    start = cell(clerk, heads[3], "移风易俗")           # 004 赵桂兰 · 移风易俗
    start.focus()
    expect(start).to_be_focused()
    clerk.keyboard.press("y")                           # y = 优 (pinyin initial), then one cell to the right
    expect(start).to_have_value("优")
    expect(cell(clerk, heads[3], "环保卫生")).to_be_focused()
    clerk.keyboard.press("Enter")                       # Enter moves down: 005 刘志强 · 环保卫生
    env_mine = cell(clerk, heads[4], "环保卫生")
    expect(env_mine).to_be_focused()
    clerk.keyboard.press("c")                           # c = 差
    expect(env_mine).to_have_value("差")
    expect(cell(clerk, heads[4], "遵纪守法")).to_be_focused()
    clerk.keyboard.press("ArrowDown")                   # 006 陈玉梅 · 遵纪守法
    law6 = cell(clerk, heads[5], "遵纪守法")
    expect(law6).to_be_focused()
    clerk.keyboard.press("1")                           # 1 = the best grade (优)
    expect(law6).to_have_value("优")
    expect(cell(clerk, heads[5], "热心公益")).to_be_focused()
    wait_saved(clerk, start, env_mine, law6)
    expect(clerk.get_by_test_id("missing")).to_have_text("还缺 0 项")
    clerk.get_by_test_id("grid").scroll_into_view_if_needed()
    clerk.screenshot(path=str(tmp_path / "grid.png"), full_page=True)

    clerk.reload()                                      # autosave really saved: the values come from the database
    expect(cell(clerk, heads[3], "移风易俗")).to_have_value("优")
    expect(cell(clerk, heads[4], "环保卫生")).to_have_value("差")
    expect(cell(clerk, heads[5], "遵纪守法")).to_have_value("优")
    expect(cell(clerk, heads[4], "遵纪守法")).to_have_value("良")
    expect(clerk.get_by_test_id("missing")).to_have_text("还缺 0 项")

    # ---- 3. a key that is no grade: a Chinese message, nothing saved -------------------------------------------
    posts: list[str] = []

    def on_request(r: Request) -> None:
        if r.method == "POST":
            posts.append(r.url)

    clerk.on("request", on_request)
    target = cell(clerk, heads[0], "勤劳致富")
    target.focus()
    clerk.keyboard.press("x")
    status = clerk.locator("#save-status")
    expect(status).to_have_text("“x”不是本项目的等级")
    expect(status).to_have_class(re.compile(r"\bbad\b"))
    expect(target).to_have_value("良")
    expect(target).to_be_focused()                      # the cursor stays on the cell
    expect(target).not_to_have_class(re.compile(r"\bdirty\b"))
    clerk.reload()
    expect(cell(clerk, heads[0], "勤劳致富")).to_have_value("良")
    clerk.remove_listener("request", on_request)
    assert posts == [], f"an invalid key sent something to the server: {posts}"

    # ---- 4. a determination: proposed by the clerk, voted by the committee -------------------------------------
    clerk.goto(f"/rounds/{rid}")
    expect(clerk.get_by_test_id("progress")).to_contain_text(f"已评 {CELLS} / {CELLS} 项")
    clerk.locator("details:has([data-testid=propose-form]) > summary").click()
    propose = clerk.get_by_test_id("propose-form")
    propose.locator("select[name=household_id]").select_option(label=f"005 {heads[4]}")
    propose.locator("select[name=code]").select_option("CIVILISED_FAMILY")
    propose.locator("textarea[name=description]").fill("家风良好，常年照顾邻居孤寡老人")
    with clerk.expect_navigation():
        propose.get_by_role("button", name="提交表决").click()
    expect(flash(clerk)).to_contain_text("已提出认定，等待委员表决")
    motion = clerk.get_by_test_id("motion")
    expect(motion).to_have_count(1)
    expect(motion).to_contain_text(f"005 {heads[4]} · 文明家庭")
    expect(motion.locator(".tag")).to_have_text("待表决")
    # all four members may vote on 005 (nobody's own household): a majority is 3
    expect(motion).to_contain_text("可参加表决 4 人，需同意 3 票")

    for i in range(3):
        member = users.login(ev.members[i].login)
        open_round_via_nav(member, village)
        mo = member.get_by_test_id("motion")
        expect(mo).to_contain_text("文明家庭")
        with member.expect_navigation():
            mo.get_by_role("button", name="同意", exact=True).click()
        expect(flash(member)).to_contain_text(f"已表决：同意 {i + 1}、反对 0、弃权 0（需同意 3 票）")
        expect(member.get_by_test_id("motion").locator(".tag")).to_have_text("已通过" if i == 2 else "待表决")
    expect(flash(member)).to_contain_text("已通过")

    clerk.reload()
    expect(clerk.get_by_test_id("motion").locator(".tag")).to_have_text("已通过")
    with clerk.expect_navigation():
        clerk.get_by_test_id("state-submit").get_by_role("button", name="提交乡镇审核").click()
    expect(flash(clerk)).to_contain_text("提交乡镇审核：已完成")
    expect(clerk.get_by_test_id("status")).to_have_text("待乡镇审核")

    # ---- 5. the township reviews and approves -------------------------------------------------------------------
    reviewer = users.login("reviewer1")
    open_round_via_nav(reviewer, village)
    reviewer.get_by_role("link", name="审核本轮评比").click()
    expect(reviewer).to_have_url(re.compile(rf"/rounds/{rid}/review$"))
    stats = reviewer.get_by_test_id("stats")
    expect(stats).to_contain_text("6 户，已评 6 户")
    expect(stats).to_contain_text("红榜")
    expect(reviewer.get_by_role("heading", name="值得留意的情况")).to_be_visible()
    expect(stats).to_contain_text("发放 238 分，扣减 0 分")  # 3 × 36 + 40 + 50 + 40
    # three themes where no cell was changed: every household 良, which the township is asked to look at
    expect(reviewer.get_by_test_id("signals")).to_contain_text("勤劳致富一项，本月评分的 6 户全部评为“良”")
    expect(reviewer.get_by_test_id("signals")).not_to_contain_text("环保卫生一项")
    review = reviewer.get_by_test_id("review-form")
    review.locator("textarea[name=comment]").fill("同意公示")
    with reviewer.expect_navigation():
        review.get_by_role("button", name="审核通过").click()
    expect(flash(reviewer)).to_contain_text("已审核通过")
    expect(reviewer.get_by_test_id("status")).to_have_text("审核通过")
    expect(reviewer.get_by_test_id("review-form")).to_have_count(0)

    # ---- 6. the clerk starts the publicity ------------------------------------------------------------------------
    clerk.reload()
    expect(clerk.get_by_test_id("review-comment")).to_have_text("同意公示")
    with clerk.expect_navigation():
        clerk.get_by_test_id("state-publicise").get_by_role("button", name="开始公示").click()
    expect(flash(clerk)).to_contain_text("开始公示：已完成")
    expect(clerk.get_by_test_id("status")).to_have_text("公示中")

    # ---- 7. the household reads its result on a small phone and objects ---------------------------------------
    home = users.login("home5", viewport=NARROW)
    home.locator("nav.mainnav").get_by_role("link", name="评比", exact=True).click()
    expect(home).to_have_url(re.compile(rf"/households/{mine}/evaluation"))
    lines = home.get_by_test_id("lines")
    env_row = lines.locator("tbody tr", has_text="环保卫生")
    expect(env_row).to_contain_text("环保卫生：委员会合议 差")
    expect(env_row.locator("td.num")).to_have_text("+0")
    expect(lines.locator("tbody tr", has_text="勤劳致富")).to_contain_text("勤劳致富：委员会合议 良")
    expect(lines.locator("tbody tr", has_text="文明家庭")).to_contain_text("+20")
    expect(home.get_by_test_id("total")).to_have_text("+50")    # 5 × 良 6 + 差 0 + 文明家庭 20
    home.screenshot(path=str(tmp_path / "household-360.png"), full_page=True)
    scroll = home.evaluate("document.documentElement.scrollWidth")
    assert scroll <= NARROW["width"] + 1, f"horizontal overflow at 360 px on the household's result: {scroll}"

    objection = home.get_by_test_id("objection-form")
    objection.locator("select[name=target]").select_option("rating")
    objection.locator("select[name=theme]").select_option(label="环保卫生")
    objection.locator("textarea[name=text]").fill("院子上周已清理干净，请再去看看")
    with home.expect_navigation():
        objection.get_by_role("button", name="提交异议").click()
    expect(flash(home)).to_contain_text("异议已提交")
    mine_list = home.get_by_test_id("my-objections")
    expect(mine_list).to_contain_text("院子上周已清理干净")
    expect(mine_list.locator(".tag")).to_have_text("待处理")

    # ---- 8. the committee's decision, the end of the publicity, the points -------------------------------------
    clerk.reload()
    obj = clerk.get_by_test_id("objection")
    expect(obj).to_contain_text("院子上周已清理干净")
    expect(obj).to_contain_text("评分：环保卫生")
    resolve = obj.get_by_test_id("resolve-form")
    resolve.locator("select[name=decision]").select_option(label="异议成立")
    resolve.locator("select[name=corrected_grade]").select_option("良")
    resolve.locator("input[name=reason]").fill("现场核实，已整改")
    with clerk.expect_navigation():
        resolve.get_by_role("button", name="记录处理结果").click()
    expect(flash(clerk)).to_contain_text("已记录处理结果")
    obj = clerk.get_by_test_id("objection")
    expect(obj.locator(".tag")).to_have_text("异议成立")
    expect(obj).to_contain_text("更正为 良")

    # the publicity is not over yet: the page says so and nothing is posted
    with clerk.expect_navigation():
        clerk.get_by_test_id("state-finalise").get_by_role("button", name="公示结束，积分入账").click()
    expect(clerk.get_by_test_id("error")).to_contain_text("之后才能入账")
    expect(clerk.get_by_test_id("status")).to_have_text("公示中")

    with db.write_txn() as s:  # five days later
        s.execute(update(EvalRound).where(col(EvalRound.id) == rid)
                  .values(objections_close_on=rounds.today_local() - timedelta(days=1)))
    clerk.goto(f"/rounds/{rid}")
    with clerk.expect_navigation():
        clerk.get_by_test_id("state-finalise").get_by_role("button", name="公示结束，积分入账").click()
    expect(flash(clerk)).to_contain_text("已入账：6 户积分，发放 244 分、扣减 0 分")
    expect(clerk.get_by_test_id("status")).to_have_text("已完成")
    expect(clerk.get_by_test_id("state-finalise")).to_have_count(0)

    # the household: the corrected result (5 × 良 + corrected 良 + 文明家庭 = 56) and the points in its account
    home.goto(f"/households/{mine}/evaluation?round={rid}")
    expect(home.get_by_test_id("total")).to_have_text("+56")
    expect(home.get_by_test_id("months")).to_contain_text(f"{MONTH_LABEL} +56")
    expect(home.get_by_test_id("lines").locator("tbody tr", has_text="环保卫生")).to_contain_text("+6")
    expect(home.get_by_test_id("my-objections")).to_contain_text("异议成立")
    home.get_by_role("link", name="积分明细").click()
    expect(home).to_have_url(re.compile(rf"/households/{mine}/points$"))
    expect(home.get_by_test_id("balance").locator("strong")).to_have_text("56")
    first = home.get_by_test_id("statement").locator("tbody tr").first
    expect(first).to_contain_text("+56")
    scroll = home.evaluate("document.documentElement.scrollWidth")
    assert scroll <= NARROW["width"] + 1, f"horizontal overflow at 360 px on the points page: {scroll}"
