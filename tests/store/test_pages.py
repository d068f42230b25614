"""The store's back office in the browser's terms (HTTP, real forms): the catalog and stock in (purchase against a
fund, donation, stock-take, transfer), the finance page, the village's cards (issue, print, lost, reissue) and a
household's own view of its card and of what it can afford."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.context import Actor
from app.db import Database
from app.ledger import service as ledger
from app.org.models import Store, Township, Village
from app.rulesets import service as rulesets
from app.store.models import Card, Fund, Item, StockMovement
from app.store.service import cards, counter, stock
from app.store.service import stores as store_service
from tests.support.factories import make_grant, make_household, make_store, make_user, make_village
from tests.support.web import TEST_SECRET, login

PW = "Passw0rd-test"
SYSTEM = Actor.system("测试")


@dataclass
class Shop:
    village_id: int
    store_id: int
    other_store_id: int  # a store of another village of the same township
    households: list[int]


def _shop(db: Database) -> Shop:
    """A village with a store, three households (the first with 120 points), a neighbour village with its own store,
    the county default ruleset (one point = 1 yuan), a village clerk `clerk1`, a store clerk `shop1` and the first
    household's own account `home1`."""
    with db.write_txn() as s:
        v = make_village(s, name="振风村")
        store = make_store(s, v)
        neighbour = make_village(s, s.get(Township, v.township_id), name="东邻村")
        other_store = make_store(s, neighbour)
        make_store(s, make_village(s, name="远村"))  # another township: never a transfer target
        hids = [make_household(s, v, number=f"{i + 1:03d}", head=name).id
                for i, name in enumerate(["张建国", "李秀英", "王德明"])]
        rulesets.ensure_default(s, SYSTEM, from_month=202401)
        ledger.award(s, SYSTEM, household_id=hids[0], points=120, memo="测试发放")  # type: ignore[arg-type]
        clerk = make_user(s, "clerk1", name="王文书")
        make_grant(s, clerk, "village_clerk", village_id=v.id)  # type: ignore[arg-type]
        shop = make_user(s, "shop1", name="陈店员")
        make_grant(s, shop, "store_clerk", store_id=store.id)  # type: ignore[arg-type]
        home = make_user(s, "home1", name="张建国")
        make_grant(s, home, "household", household_id=hids[0])  # type: ignore[arg-type]
        return Shop(v.id, store.id, other_store.id, hids)  # type: ignore[arg-type]


def _fund(db: Database, village_id: int, yuan: int = 500) -> int:
    with db.write_txn() as s:
        f = store_service.record_fund(s, SYSTEM, village_id=village_id, source="county", amount_fen=yuan * 100,
                                      received_on=date.today(), document_no="振财〔2026〕12号")
        return f.id  # type: ignore[return-value]


def _item_id(db: Database, store_id: int, name: str) -> int:
    with db.read_txn() as s:
        return int(s.execute(select(Item.id).where(Item.store_id == store_id, Item.name == name)).scalar_one())


def _create_item(client: TestClient, csrf: str, store_id: int, name: str = "食用油", points: str = "50",
                 cost: str = "45.5") -> None:
    r = client.post(f"/stores/{store_id}/items", data={"csrf_token": csrf, "name": name, "unit": "桶",
                                                       "category": "粮油", "points": points, "cost": cost,
                                                       "low_stock": "3", "barcode": ""}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]


def test_item_purchase_against_a_fund(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    fund_id = _fund(db, shop.village_id, 500)
    csrf = login(client, "clerk1", PW)
    _create_item(client, csrf, shop.store_id)
    item_id = _item_id(db, shop.store_id, "食用油")
    page = client.get(f"/items/{item_id}")
    assert page.status_code == 200 and "振财〔2026〕12号" in page.text and "余 500.00 元" in page.text
    r = client.post(f"/items/{item_id}/purchase", data={"csrf_token": csrf, "quantity": "10", "cost": "455",
                                                        "fund_id": str(fund_id), "note": "县城批发"})
    assert r.status_code == 200 and "已采购入库 10 桶，455.00 元，库存 10 桶" in r.text
    with db.read_txn() as s:
        item, fund = s.get(Item, item_id), s.get(Fund, fund_id)
        assert item.stock == 10 and item.stock_value_fen == 45500  # type: ignore[union-attr]
        assert fund.spent_fen == 45500  # type: ignore[union-attr]
    assert "县城批发" in r.text and "采购入库" in r.text  # the movement, with its note
    # the catalog shows it with its value; the store list counts it
    catalog = client.get(f"/stores/{shop.store_id}")
    assert "455.00" in catalog.text and "食用油" in catalog.text
    assert "455.00" in client.get("/stores").text


def test_purchase_over_the_money_left_is_refused_and_changes_nothing(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    fund_id = _fund(db, shop.village_id, 100)
    csrf = login(client, "clerk1", PW)
    _create_item(client, csrf, shop.store_id)
    item_id = _item_id(db, shop.store_id, "食用油")
    r = client.post(f"/items/{item_id}/purchase", data={"csrf_token": csrf, "quantity": "3", "cost": "150.5",
                                                        "fund_id": str(fund_id), "note": "超支"})
    assert r.status_code == 422
    assert "这笔资金只剩 100.00 元，不够支付 150.50 元" in r.text
    assert 'value="150.5"' in r.text and 'value="超支"' in r.text  # nothing typed is lost
    with db.read_txn() as s:
        assert s.get(Item, item_id).stock == 0  # type: ignore[union-attr]
        assert s.get(Fund, fund_id).spent_fen == 0  # type: ignore[union-attr]
        assert s.execute(select(StockMovement)).first() is None
    # bad numbers name the field
    r = client.post(f"/items/{item_id}/purchase", data={"csrf_token": csrf, "quantity": "三", "cost": "10",
                                                        "fund_id": str(fund_id)})
    assert r.status_code == 422 and "数量须为整数" in r.text
    r = client.post(f"/items/{item_id}/purchase", data={"csrf_token": csrf, "quantity": "1", "cost": "1.234",
                                                        "fund_id": str(fund_id)})
    assert r.status_code == 422 and "采购金额须为金额" in r.text
    r = client.post(f"/items/{item_id}/purchase", data={"csrf_token": csrf, "quantity": "0", "cost": "1",
                                                        "fund_id": str(fund_id)})
    assert r.status_code == 422 and "数量须为 1 到 100000 之间的整数" in r.text


def test_donation_stocktake_and_transfer(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    csrf = login(client, "clerk1", PW)
    _create_item(client, csrf, shop.store_id, name="大米", points="30", cost="20")
    item_id = _item_id(db, shop.store_id, "大米")
    r = client.post(f"/items/{item_id}/donation", data={"csrf_token": csrf, "quantity": "20", "value": "400",
                                                        "donor": "县爱心企业", "document_no": "捐字001",
                                                        "received_on": "2026-03-05"})
    assert r.status_code == 200 and "已登记捐赠入库 20 袋" not in r.text and "已登记捐赠入库 20 桶" in r.text
    with db.read_txn() as s:
        fund = s.execute(select(Fund).where(Fund.form == "goods")).scalar_one()
        assert (fund.village_id, fund.amount_fen, fund.spent_fen, fund.donor, fund.year) == (
            shop.village_id, 40000, 40000, "县爱心企业", 2026)
        assert s.get(Item, item_id).stock == 20  # type: ignore[union-attr]
    # a stock-take needs a reason; the form keeps what was typed
    r = client.post(f"/items/{item_id}/stocktake", data={"csrf_token": csrf, "counted": "18", "reason": ""})
    assert r.status_code == 422 and "请写明原因" in r.text and 'value="18"' in r.text
    r = client.post(f"/items/{item_id}/stocktake", data={"csrf_token": csrf, "counted": "18", "reason": "受潮 2 袋"})
    assert r.status_code == 200 and "已按盘点调整 -2 桶，库存 18 桶" in r.text and "受潮 2 袋" in r.text
    r = client.post(f"/items/{item_id}/stocktake", data={"csrf_token": csrf, "counted": "18", "reason": "复核"})
    assert "盘点数与账面库存一致" in r.text
    # transfer to the neighbour's store of the same township
    page = client.get(f"/items/{item_id}")
    assert "东邻村振风超市" in page.text
    r = client.post(f"/items/{item_id}/transfer", data={"csrf_token": csrf, "to_store_id": str(shop.other_store_id),
                                                        "quantity": "5", "reason": "邻村缺货"})
    assert r.status_code == 200 and "已调出 5 桶 到东邻村振风超市，本店库存 13 桶" in r.text
    with db.read_txn() as s:
        twin = s.execute(select(Item).where(Item.store_id == shop.other_store_id)).scalar_one()
        assert twin.stock == 5 and twin.name == "大米"
        assert s.get(Item, item_id).stock == 13  # type: ignore[union-attr]
    r = client.post(f"/items/{item_id}/transfer", data={"csrf_token": csrf, "to_store_id": str(shop.other_store_id),
                                                        "quantity": "50", "reason": "太多"})
    assert r.status_code == 422 and "库存不足" in r.text and 'value="50"' in r.text
    moves = client.get(f"/stores/{shop.store_id}/movements")
    assert all(k in moves.text for k in ("捐赠入库", "盘点调整", "调出"))
    only = client.get(f"/stores/{shop.store_id}/movements?kind=stocktake")
    assert "受潮 2 袋" in only.text and "邻村缺货" not in only.text


def test_item_edit_photo_and_settings(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    csrf = login(client, "clerk1", PW)
    _create_item(client, csrf, shop.store_id, name="肥皂", points="5", cost="2")
    item_id = _item_id(db, shop.store_id, "肥皂")
    r = client.post(f"/items/{item_id}", data={"csrf_token": csrf, "name": "肥皂", "unit": "块", "category": "洗化",
                                              "points": "abc", "cost": "2", "low_stock": "5"})
    assert r.status_code == 422 and "兑换积分须为整数" in r.text and 'value="abc"' in r.text
    r = client.post(f"/items/{item_id}", data={"csrf_token": csrf, "name": "肥皂", "unit": "块", "category": "洗化",
                                              "points": "6", "cost": "2", "low_stock": "5", "barcode": "6901234"})
    assert r.status_code == 200 and "已保存商品“肥皂”（已下架）" in r.text  # no active box ticked: off the shelf
    none = client.get(f"/items/{item_id}/photo")  # no photo yet: a placeholder, not 404 (the item exists)
    assert none.status_code == 200 and none.headers["content-type"].startswith("image/svg+xml")
    assert client.get("/items/999999/photo").status_code == 404
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    r = client.post(f"/items/{item_id}/photo", data={"csrf_token": csrf},
                    files={"photo": ("soap.png", png, "image/png")})
    assert r.status_code == 200 and "已更新商品照片" in r.text
    client.cookies.clear()  # the photo is public
    got = client.get(f"/items/{item_id}/photo")
    assert got.status_code == 200 and got.content == png and got.headers["content-type"] == "image/png"
    assert "max-age" in got.headers["cache-control"]
    csrf = login(client, "clerk1", PW)
    r = client.post(f"/items/{item_id}/photo", data={"csrf_token": csrf},
                    files={"photo": ("x.gif", b"GIF89a", "image/gif")})
    assert r.status_code == 422 and "照片须为 JPG、PNG 或 WebP 图片" in r.text
    # settings: a daily limit and the neighbour village served too
    with db.read_txn() as s:
        neighbour = s.get(Store, shop.other_store_id).village_id  # type: ignore[union-attr]
    r = client.post(f"/stores/{shop.store_id}/settings", data={"csrf_token": csrf, "daily_limit": "x"})
    assert r.status_code == 422 and "每户每日兑换上限须为整数" in r.text
    r = client.post(f"/stores/{shop.store_id}/settings", data={"csrf_token": csrf, "daily_limit": "200"})
    assert r.status_code == 200 and "每户每日最多兑换 200 分" in r.text
    # which villages a store serves is the county's decision: the village clerk may not widen it
    r = client.post(f"/stores/{shop.store_id}/villages", data={"csrf_token": csrf, "villages": [str(neighbour)]})
    assert r.status_code == 404
    with db.write_txn() as s:
        make_grant(s, make_user(s, "county1", name="县管理员"), "county_admin")
    csrf = login(client, "county1", PW)
    r = client.post(f"/stores/{shop.store_id}/villages", data={"csrf_token": csrf, "villages": [str(neighbour)]})
    assert r.status_code == 200 and "同时服务本乡镇其他 1 个村" in r.text and "东邻村" in r.text
    with db.read_txn() as s:
        assert store_service.served_villages(s, shop.store_id) == (shop.village_id, neighbour)


def test_store_clerk_sees_the_counter_button_and_cannot_manage(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    login(client, "shop1", PW)
    page = client.get("/stores")
    assert page.status_code == 200 and 'data-testid="counter-big"' in page.text
    assert f'href="/stores/{shop.store_id}/counter"' in page.text
    store = client.get(f"/stores/{shop.store_id}")
    assert 'data-testid="new-item"' in store.text and 'data-testid="settings"' not in store.text
    assert client.get(f"/villages/{shop.village_id}/cards").status_code == 404
    assert client.get(f"/villages/{shop.village_id}/finance").status_code == 200


def test_finance_page_shows_the_figures(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    csrf = login(client, "clerk1", PW)
    r = client.post(f"/villages/{shop.village_id}/funds", data={"csrf_token": csrf, "source": "county",
                                                                "amount": "1,000", "received_on": "",
                                                                "document_no": "", "donor": "", "note": "首批"})
    assert r.status_code == 422 and "拨款请填写拨款文件的文号" in r.text and 'value="1,000"' in r.text
    r = client.post(f"/villages/{shop.village_id}/funds", data={"csrf_token": csrf, "source": "county",
                                                                "amount": "1,000", "received_on": "",
                                                                "document_no": "振财〔2026〕1号", "note": "首批"})
    assert r.status_code == 200 and "已登记县级拨款 1,000.00 元" in r.text
    with db.read_txn() as s:
        fund_id = s.execute(select(Fund.id)).scalar_one()
    _create_item(client, csrf, shop.store_id, name="毛巾", points="10", cost="8")
    item_id = _item_id(db, shop.store_id, "毛巾")
    client.post(f"/items/{item_id}/purchase", data={"csrf_token": csrf, "quantity": "50", "cost": "400",
                                                    "fund_id": str(fund_id)})
    page = client.get(f"/villages/{shop.village_id}/finance")
    assert page.status_code == 200

    def cell(testid: str) -> str:
        m = re.search(rf'data-testid="{testid}"[^>]*>([^<]*)<', page.text)
        assert m, testid
        return m.group(1).strip()

    assert cell("money-in") == "1,000.00"
    assert cell("purchased") == "400.00"
    assert cell("money-left") == "600.00"
    assert cell("stock-value") == "400.00"
    assert cell("outstanding") == "120 分"
    assert cell("liability") == "120.00"  # the default ruleset: one point is worth one yuan
    assert cell("cover") == "880.00" and 'data-testid="cover-warning"' not in page.text
    assert "振财〔2026〕1号" in page.text and "首批" in page.text
    # more points out than money and goods: the cover goes red and says why
    with db.write_txn() as s:
        ledger.award(s, SYSTEM, household_id=shop.households[1], points=2000, memo="大额奖励")
    page = client.get(f"/villages/{shop.village_id}/finance")
    assert 'class="bad" data-testid="cover">-1,120.00' in page.text and 'data-testid="cover-warning"' in page.text


def test_cards_issue_print_lost_and_reissue(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        village = s.get(Village, shop.village_id)
        for i in range(9):  # twelve households: two sheets
            make_household(s, village, number=f"{i + 10:03d}", head="赵" + "一二三四五六七八九"[i] + "明")  # type: ignore[arg-type]
    csrf = login(client, "clerk1", PW)
    page = client.get(f"/villages/{shop.village_id}/cards")
    assert page.status_code == 200 and 'data-testid="without">12<' in page.text
    sheet = client.get(f"/villages/{shop.village_id}/cards/print")
    assert sheet.status_code == 200 and 'data-testid="zf-card"' not in sheet.text and "12 户还没有积分卡" in sheet.text
    r = client.post(f"/villages/{shop.village_id}/cards/issue", data={"csrf_token": csrf})
    assert r.status_code == 200 and "已为 12 户发放积分卡" in r.text
    r = client.post(f"/villages/{shop.village_id}/cards/issue", data={"csrf_token": csrf})
    assert "在册农户都已有积分卡" in r.text
    sheet = client.get(f"/villages/{shop.village_id}/cards/print")
    assert sheet.text.count('data-testid="card-sheet"') == 2
    sheets = sheet.text.split('data-testid="card-sheet"')[1:]
    assert [s.count('data-testid="zf-card"') for s in sheets] == [10, 2]
    assert sheet.text.count("<svg") == 12 and "振风超市积分卡" in sheet.text
    key = cards.card_key(TEST_SECRET)
    with db.read_txn() as s:
        card = cards.card_of(s, shop.households[0])
        assert card is not None
        code = cards.payload(key, card)
    assert code in sheet.text and "张*国" in sheet.text and "张建国" not in sheet.text  # the head's name masked
    one = client.get(f"/villages/{shop.village_id}/cards/print?household_id={shop.households[0]}")
    assert one.text.count('data-testid="zf-card"') == 1 and code in one.text
    # lost: the card stops; the household page says so and offers reissue
    r = client.post(f"/households/{shop.households[0]}/card/lost", data={"csrf_token": csrf, "reason": ""})
    assert r.status_code == 422 and "请写明原因" in r.text
    r = client.post(f"/households/{shop.households[0]}/card/lost", data={"csrf_token": csrf, "reason": "丢在地里"})
    assert r.status_code == 200 and "第 1 版积分卡已挂失" in r.text and code not in r.text
    sheet = client.get(f"/villages/{shop.village_id}/cards/print")
    assert sheet.text.count('data-testid="zf-card"') == 11 and "1 户的卡已挂失" in sheet.text
    r = client.post(f"/households/{shop.households[0]}/card/reissue", data={"csrf_token": csrf, "reason": "补办"})
    assert r.status_code == 200 and "已补办积分卡（第 2 版）" in r.text
    with db.read_txn() as s:
        card = s.execute(select(Card).where(Card.household_id == shop.households[0])).scalar_one()
        assert (card.version, card.status) == (2, "active")
        new_code = cards.payload(key, card)
    assert new_code != code and new_code in r.text and "丢在地里" in r.text  # the new QR and the card's events


def test_household_sees_its_card_and_what_it_can_afford(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        for name, points in (("食用油", 100), ("洗衣粉", 150)):
            item = stock.create_item(s, SYSTEM, shop.store_id, stock.ItemInput(name=name, unit="袋", points=points))
            stock.stocktake(s, SYSTEM, item.id, counted=5, reason="开业盘点")  # type: ignore[arg-type]
        stock.create_item(s, SYSTEM, shop.store_id, stock.ItemInput(name="下架品", unit="个", points=1, active=False))
        cards.ensure_cards(s, SYSTEM, [shop.households[0]])
    login(client, "home1", PW)
    page = client.get(f"/households/{shop.households[0]}/store")
    assert page.status_code == 200
    assert re.search(r'data-testid="balance">.*<strong>120</strong>', page.text)
    assert "够兑换" in page.text and "还差 30 分" in page.text and "下架品" not in page.text
    key = cards.card_key(TEST_SECRET)
    with db.read_txn() as s:
        code = cards.payload(key, cards.card_of(s, shop.households[0]))  # type: ignore[arg-type]
    assert code in page.text and "<svg" in page.text
    assert 'data-testid="lost-form"' not in page.text  # a household cannot report or reissue
    assert client.get(f"/households/{shop.households[1]}/store").status_code == 404
    assert client.post(f"/households/{shop.households[0]}/card/lost",
                       data={"csrf_token": "x", "reason": "x"}).status_code in (403, 404)
    # the store clerk sees the card's status, not its code
    login(client, "shop1", PW)
    page = client.get(f"/households/{shop.households[0]}/store")
    assert page.status_code == 200 and "第1版" in page.text and code not in page.text


@pytest.mark.parametrize("day", ["2026-13-01", "yesterday"])
def test_redemptions_page_survives_a_bad_day(client: TestClient, db: Database, day: str) -> None:
    shop = _shop(db)
    login(client, "clerk1", PW)
    r = client.get(f"/stores/{shop.store_id}/redemptions?day={day}")
    assert r.status_code == 200 and "日期格式不对" in r.text and "这一天没有兑换" in r.text


def test_redemptions_of_a_day_with_totals(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        item = stock.create_item(s, SYSTEM, shop.store_id, stock.ItemInput(name="酱油", unit="瓶", points=10))
        stock.stocktake(s, SYSTEM, item.id, counted=9, reason="开业盘点")  # type: ignore[arg-type]
        done = [counter.redeem(s, SYSTEM, store_id=shop.store_id, household_id=shop.households[0],
                               lines=[counter.Line(item.id, n)], identity_note="户主本人")  # type: ignore[arg-type]
                for n in (1, 2, 3)]
        counter.void(s, SYSTEM, done[1].redemption.id, reason="拿错了", any_day=True)  # type: ignore[arg-type]
    login(client, "shop1", PW)
    page = client.get(f"/stores/{shop.store_id}/redemptions")
    assert page.status_code == 200
    assert re.search(r'data-testid="day-points">40<', page.text)  # 10 + 30; the voided 20 is left out
    assert "拿错了" in page.text and "已作废" in page.text and "户号 001 张建国" in page.text
    assert all(f'href="/redemptions/{d.redemption.id}"' in page.text for d in done)
    other_day = client.get(f"/stores/{shop.store_id}/redemptions?day=2020-01-01")
    assert "这一天没有兑换" in other_day.text
    # the item page links the movement to its redemption
    item_page = client.get(f"/items/{item.id}")
    assert f'href="/redemptions/{done[0].redemption.id}"' in item_page.text and "兑换出库" in item_page.text
