"""The counter (柜台兑换) in a real Chromium, as a store clerk with a USB scanner uses it: the card's payload typed into
the scan field and Enter, an item's barcode typed and Enter, "+" on another item, the running total and the balance
after, the over-balance guard, confirm, the receipt (58/80 mm and A4, and what goes to the printer). A second confirm
of the same cart (back in history, a double click, two posts at once) redeems nothing more; an old card after a
reissue is refused and moves nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy import func, select
from sqlmodel import col

from app.config import Settings
from app.core.context import Actor
from app.db import Database
from app.ledger import service as ledger
from app.store.models import Redemption, StockMovement
from app.store.service import cards, stock
from tests.support.browser import login_via_form, new_context
from tests.support.factories import make_grant, make_household, make_stocked_item, make_store, make_user, make_village
from tests.support.live import LiveServer, serve

pytestmark = pytest.mark.browser

SYSTEM = Actor.system("测试")
PW = "Passw0rd-test"
BARCODE = "6901234567892"
MM = 96 / 25.4  # CSS pixels per millimetre


@dataclass
class Shop:
    store_id: int
    hid: int
    soap: int  # 10 points, 20 in stock, barcode BARCODE
    oil: int  # 40 points, 5 in stock, no barcode
    payload: str  # the household's card (first version)
    clerk: str


def _shop(db: Database, settings: Settings) -> Shop:
    with db.write_txn() as s:
        v = make_village(s)
        store = make_store(s, v)
        h = make_household(s, v, head="王建华")
        soap = make_stocked_item(s, store, name="香皂", points=10, stock=20, barcode=BARCODE)
        oil = make_stocked_item(s, store, name="食用油", points=40, stock=5, unit="桶")
        ledger.award(s, SYSTEM, household_id=h.id, points=100, memo="期初积分")  # type: ignore[arg-type]
        card = cards.ensure_cards(s, SYSTEM, [h.id])[h.id]  # type: ignore[list-item,index]
        clerk = make_user(s, "counter-clerk", name="柜台小李")
        make_grant(s, clerk, "store_clerk", store_id=store.id)  # type: ignore[arg-type]
        return Shop(store.id, h.id, soap.id, oil.id, cards.payload(cards.card_key(settings.secret_key), card),  # type: ignore[arg-type]
                    clerk.login)


def _books(db: Database, shop: Shop) -> tuple[int, int, int, int, int]:
    """(redemptions, stock movements, balance, soap in stock, oil in stock)"""
    with db.read_txn() as s:
        return (s.execute(select(func.count()).select_from(Redemption)).scalar_one(),
                s.execute(select(func.count()).select_from(StockMovement)).scalar_one(),
                ledger.balance(s, shop.hid), stock.get_item(s, shop.soap).stock, stock.get_item(s, shop.oil).stock)


def _redemption_ids(db: Database) -> list[int]:
    with db.read_txn() as s:
        return [int(i) for i in s.execute(select(col(Redemption.id)).order_by(col(Redemption.id))).scalars() if i]


@pytest.fixture
def server(settings: Settings, db: Database) -> Iterator[LiveServer]:
    with serve(settings) as live:
        yield live


@pytest.fixture
def clerk_page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    ctx = new_context(browser, server)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()


def row(page: Page, item_id: int) -> Locator:
    return page.locator(f"#cart tr[data-item='{item_id}']")


def open_counter(page: Page, shop: Shop) -> None:
    page.goto(f"/stores/{shop.store_id}/counter")
    expect(page.get_by_test_id("scan")).to_be_focused()  # the cursor waits in the scan field


def scan_card(page: Page, payload: str) -> None:
    """As a USB scanner does: the payload as keystrokes into the focused field, then Enter."""
    expect(page.get_by_test_id("scan")).to_be_focused()
    with page.expect_navigation():
        page.keyboard.type(payload)
        page.keyboard.press("Enter")


def scan_item(page: Page, barcode: str) -> None:
    field = page.get_by_test_id("item-scan")
    expect(field).to_be_focused()
    page.keyboard.type(barcode)
    page.keyboard.press("Enter")
    expect(field).to_have_value("")


def expect_cart(page: Page, total: int, after: int) -> None:
    expect(page.get_by_test_id("total")).to_have_text(str(total))
    expect(page.get_by_test_id("after")).to_have_text(str(after))


def flash(page: Page) -> Locator:
    return page.locator(".flash-success")


def test_scan_add_confirm_receipt_and_a_second_confirm_redeems_nothing_more(
        clerk_page: Page, server: LiveServer, db: Database, settings: Settings) -> None:
    shop = _shop(db, settings)
    page = clerk_page
    login_via_form(page, shop.clerk, PW)
    expect(page.get_by_test_id("who")).to_have_text("柜台小李")
    before = _books(db, shop)
    assert before[0] == 0 and before[2:] == (100, 20, 5)

    # ---- scan the card: the household, its balance, the cursor in the item scan field ---------------------------
    open_counter(page, shop)
    scan_card(page, shop.payload)
    household = page.get_by_test_id("household")
    expect(household).to_contain_text("王建华")
    expect(household).to_contain_text("已刷卡 · 第1版")
    expect(page.get_by_test_id("balance")).to_have_text("100")
    expect_cart(page, 0, 100)
    expect(page.get_by_test_id("confirm")).to_be_disabled()  # an empty cart cannot be confirmed

    # ---- the cart: a barcode adds one, "+" adds one ----------------------------------------------------------------
    scan_item(page, BARCODE)
    expect(page.get_by_test_id(f"qty-{shop.soap}")).to_have_value("1")
    expect_cart(page, 10, 90)
    row(page, shop.oil).get_by_role("button", name="加一件").click()
    expect(page.get_by_test_id(f"qty-{shop.oil}")).to_have_value("1")
    expect_cart(page, 50, 50)
    expect(page.get_by_test_id("confirm")).to_be_enabled()

    # ---- over the balance: the confirm button is disabled and the warning says by how much; then back under ------
    warning = page.locator("#cart-warning")
    row(page, shop.oil).get_by_role("button", name="加一件").click()
    row(page, shop.oil).get_by_role("button", name="加一件").click()  # 10 + 3 × 40 = 130 > 100
    expect_cart(page, 130, -30)
    expect(warning).to_have_text("积分不足：还差 30 分")
    expect(page.get_by_test_id("confirm")).to_be_disabled()
    row(page, shop.oil).get_by_role("button", name="减一件").click()
    row(page, shop.oil).get_by_role("button", name="减一件").click()
    expect_cart(page, 50, 50)
    expect(warning).to_have_text("")
    expect(page.get_by_test_id("confirm")).to_be_enabled()
    assert _books(db, shop) == before  # nothing moves before the confirm

    # ---- confirm: the receipt --------------------------------------------------------------------------------------
    form_key = page.locator("#cart input[name=form_key]").input_value()
    assert form_key.startswith("cart-")
    with page.expect_navigation():
        page.get_by_test_id("confirm").click()
    expect(page).to_have_url(re.compile(r"/redemptions/\d+/receipt\?from=counter$"))
    expect(flash(page)).to_have_text("已兑换 50 分，余额 50 分")
    receipt = page.get_by_test_id("receipt")
    lines = receipt.locator("table.receipt-lines tbody tr")
    expect(lines).to_have_count(2)
    expect(lines.nth(0).locator("td")).to_have_text([re.compile(r"^香皂\s*10 分/袋$"), "1", "10"])
    expect(lines.nth(1).locator("td")).to_have_text([re.compile(r"^食用油\s*40 分/桶$"), "1", "40"])
    expect(page.get_by_test_id("receipt-total")).to_have_text("50")
    expect(page.get_by_test_id("receipt-balance")).to_have_text("50")
    expect(receipt).to_contain_text("刷卡")
    expect(receipt).not_to_contain_text("王建华")  # the head's name is masked on paper
    ids = _redemption_ids(db)
    assert len(ids) == 1
    rid = ids[0]
    assert page.url.endswith(f"/redemptions/{rid}/receipt?from=counter")
    done = _books(db, shop)
    assert done == (1, before[1] + 2, 50, 19, 4)
    with db.read_txn() as s:
        assert s.get(Redemption, rid).idempotency_key == form_key  # type: ignore[union-attr]

    # ---- back in history to the same cart, confirm again: the same receipt, nothing more -----------------------
    # Chromium shows the page from its cache: the same one-time key; the form has autocomplete="off", so the browser
    # does not put the quantities back: the clerk scans the same goods again and confirms.
    page.go_back()
    expect(page).to_have_url(re.compile(rf"/stores/{shop.store_id}/counter/scan$"))
    expect(page.get_by_test_id("household")).to_be_visible()
    assert page.locator("#cart input[name=form_key]").input_value() == form_key
    expect_cart(page, 0, 100)  # the balance of the page as it was shown then
    scan_item(page, BARCODE)
    row(page, shop.oil).get_by_role("button", name="加一件").click()
    expect_cart(page, 50, 50)
    with page.expect_navigation():
        page.get_by_test_id("confirm").click()
    expect(page).to_have_url(re.compile(rf"/redemptions/{rid}/receipt\?from=counter$"))
    expect(flash(page)).to_have_text("这份购物车已经兑换过了（没有重复扣分），这是当时的小票")
    expect(page.get_by_test_id("receipt-total")).to_have_text("50")
    expect(page.get_by_test_id("receipt-balance")).to_have_text("50")
    assert _books(db, shop) == done and _redemption_ids(db) == [rid]

    # the same key with another cart: refused, nothing moves
    page.go_back()
    assert page.locator("#cart input[name=form_key]").input_value() == form_key
    scan_item(page, BARCODE)
    expect_cart(page, 10, 90)
    with page.expect_navigation():
        page.get_by_test_id("confirm").click()
    expect(page.get_by_test_id("error")).to_have_text("这个兑换单号已用于另一份购物车：请刷新柜台页面后重新扫码")
    assert _books(db, shop) == done and _redemption_ids(db) == [rid]

    # ---- a new cart, double-clicked: one redemption ----------------------------------------------------------------
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/redeem" in r.url else None)
    page.goto(f"/redemptions/{rid}/receipt?from=counter")
    page.get_by_test_id("next").click()
    expect(page).to_have_url(re.compile(rf"/stores/{shop.store_id}/counter$"))
    scan_card(page, shop.payload)
    expect(page.get_by_test_id("balance")).to_have_text("50")
    scan_item(page, BARCODE)
    expect_cart(page, 10, 40)
    with page.expect_navigation():
        page.get_by_test_id("confirm").dblclick()
    expect(page).to_have_url(re.compile(r"/redemptions/\d+/receipt\?from=counter$"))
    expect(page.get_by_test_id("receipt-balance")).to_have_text("40")
    ids = _redemption_ids(db)
    assert len(ids) == 2 and posts, posts  # whatever a double click sends: one redemption
    done = _books(db, shop)
    assert done == (2, before[1] + 3, 40, 18, 4)

    # ---- the same form posted twice at once (what a double click can send): one redemption, one receipt ---------
    page.get_by_test_id("next").click()
    scan_card(page, shop.payload)
    scan_item(page, BARCODE)
    expect_cart(page, 10, 30)
    posted = len(posts)
    answers = page.evaluate("""async () => {
        const form = document.getElementById("cart");
        const send = () => fetch(form.action, {method: "POST", body: new URLSearchParams(new FormData(form))});
        const rs = await Promise.all([send(), send()]);
        return rs.map(r => [r.status, r.url]);
    }""")
    assert len(posts) == posted + 2, posts  # both reached the server
    ids = _redemption_ids(db)
    assert len(ids) == 3, answers
    assert answers == [[200, f"{server.url}/redemptions/{ids[-1]}/receipt?from=counter"]] * 2, answers
    assert _books(db, shop) == (3, before[1] + 4, 30, 17, 4)

    # ---- the receipt on paper: 58 mm, 80 mm, A4; printing shows the receipt only ------------------------------
    page.goto(f"/redemptions/{rid}/receipt")
    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_have_class(re.compile(r"\bpaper-58\b"))
    widths = {}
    for paper, label in (("80", "80 mm"), ("a4", "A4"), ("58", "58 mm")):
        with page.expect_navigation():
            page.locator(".receipt-tools").get_by_role("link", name=label, exact=True).click()
        expect(page).to_have_url(re.compile(rf"\?paper={paper}$"))
        expect(page.locator(".receipt-tools strong")).to_have_text(label)  # the chosen paper is not a link
        expect(receipt).to_have_class(re.compile(rf"\bpaper-{paper}\b"))
        box = receipt.bounding_box()
        assert box is not None
        widths[paper] = box["width"]
    # the receipt is as wide as the roll (box-sizing: border-box), A4 at most 150 mm of the sheet
    assert abs(widths["58"] - 58 * MM) < 1 and abs(widths["80"] - 80 * MM) < 1, widths
    assert abs(widths["a4"] - 150 * MM) < 1, widths
    page.emulate_media(media="print")
    expect(page.locator(".receipt-tools")).to_be_hidden()
    expect(page.locator("header.topbar")).to_be_hidden()
    expect(page.locator("nav.mainnav")).to_be_hidden()
    expect(receipt).to_be_visible()
    expect(page.get_by_test_id("receipt-total")).to_have_text("50")
    page.emulate_media(media="screen")
    expect(page.locator(".receipt-tools")).to_be_visible()


def test_an_old_card_after_a_reissue_is_refused_and_moves_nothing(
        clerk_page: Page, db: Database, settings: Settings) -> None:
    shop = _shop(db, settings)
    page = clerk_page
    login_via_form(page, shop.clerk, PW)
    expect(page.get_by_test_id("who")).to_have_text("柜台小李")

    # the card is scanned and a cart made; meanwhile the village reports it lost and issues a new one
    open_counter(page, shop)
    scan_card(page, shop.payload)
    expect(page.get_by_test_id("household")).to_contain_text("已刷卡 · 第1版")
    scan_item(page, BARCODE)
    expect_cart(page, 10, 90)
    with db.write_txn() as s:
        cards.report_lost(s, SYSTEM, shop.hid, "农户报告卡片丢失")
        new_card = cards.reissue(s, SYSTEM, shop.hid, "补办新卡")
        new_payload = cards.payload(cards.card_key(settings.secret_key), new_card)
    before = _books(db, shop)
    assert before[0] == 0 and before[2:] == (100, 20, 5)

    # confirming the cart made with the old card: refused, nothing moves
    with page.expect_navigation():
        page.get_by_test_id("confirm").click()
    expect(page.get_by_test_id("error")).to_contain_text("此卡已挂失，请使用新卡")
    assert _books(db, shop) == before

    # the old card typed at the scan field: refused, no household shown, nothing moves
    open_counter(page, shop)
    scan_card(page, shop.payload)
    expect(page.get_by_test_id("error")).to_contain_text("此卡已挂失，请使用新卡（新卡为第 2 版）")
    expect(page.get_by_test_id("household")).to_have_count(0)
    assert _books(db, shop) == before

    # the new card works
    open_counter(page, shop)
    scan_card(page, new_payload)
    expect(page.get_by_test_id("household")).to_contain_text("已刷卡 · 第2版")
    expect(page.get_by_test_id("balance")).to_have_text("100")
