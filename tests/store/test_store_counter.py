"""Redemption at the counter: points and stock move together or not at all; cards are checked; voids reverse.

Each refusal test counts what could have moved (ledger transactions, stock movements, redemptions, the item's
stock, the household's balance) before and after: a refused redemption moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.audit.models import AuditEvent
from app.core.clock import utcnow
from app.core.context import Actor
from app.db import Database
from app.errors import AppError, Conflict, NotFound, ValidationFailed
from app.ledger import service as ledger
from app.org.models import Township, Village
from app.store.models import Fund, Item, Redemption, StockMovement
from app.store.service import cards, counter, stock, stores
from tests.support.factories import (
    make_grant,
    make_household,
    make_stocked_item,
    make_store,
    make_township,
    make_user,
    make_village,
)
from tests.support.web import csrf_from, login

CLERK = Actor(user_id=None, name="超市管理员（测试）", role="store_clerk")
KEY = cards.card_key("test-secret-" + "x" * 40)


@dataclass
class Shop:
    store_id: int
    village_id: int
    hid: int
    soap: int  # 10 points, 20 in stock
    oil: int  # 40 points, 3 in stock
    other_hid: int  # a household of another village (another township)


def _shop(db: Database, balance: int = 100) -> Shop:
    with db.write_txn() as s:
        v = make_village(s)
        store = make_store(s, v)
        h = make_household(s, v)
        soap = make_stocked_item(s, store, name="香皂", points=10, stock=20, barcode="6901234567892")
        oil = make_stocked_item(s, store, name="食用油", points=40, stock=3, unit="桶")
        if balance:
            ledger.award(s, CLERK, household_id=h.id, points=balance, memo="期初积分")  # type: ignore[arg-type]
        other = make_household(s, make_village(s, make_township(s)))
        return Shop(store.id, v.id, h.id, soap.id, oil.id, other.id)  # type: ignore[arg-type]


def _books(db: Database, shop: Shop) -> tuple[int, ...]:
    with db.read_txn() as s:
        return (ledger.transaction_count(s), s.execute(select(func.count()).select_from(StockMovement)).scalar_one(),
                s.execute(select(func.count()).select_from(Redemption)).scalar_one(),
                stock.get_item(s, shop.soap).stock, stock.get_item(s, shop.oil).stock, ledger.balance(s, shop.hid))


def _redeem(db: Database, shop: Shop, lines: list[tuple[int, int]], **kw: object) -> counter.Redeemed:
    with db.write_txn() as s:
        return counter.redeem(s, CLERK, store_id=kw.pop("store_id", shop.store_id),  # type: ignore[arg-type]
                              household_id=kw.pop("household_id", shop.hid),  # type: ignore[arg-type]
                              lines=[counter.Line(i, q) for i, q in lines],
                              identity_note=kw.pop("identity_note", "户主本人，核对身份证"), **kw)  # type: ignore[arg-type]


def _clean(db: Database) -> None:
    with db.read_txn() as s:
        problems, _counts = stores.verify(s)
        assert problems == [] and ledger.verify(s) == []


def test_a_redemption_moves_points_and_stock_together(db: Database) -> None:
    shop = _shop(db)
    done = _redeem(db, shop, [(shop.soap, 2), (shop.oil, 1), (shop.soap, 1)], idempotency_key="cart-1")
    assert done.redemption.points == 3 * 10 + 40 and done.balance_after == 30 and not done.replayed
    assert [(ln.name, ln.quantity) for ln in done.lines] == [("香皂", 3), ("食用油", 1)]  # the same item merged
    with db.read_txn() as s:
        assert stock.get_item(s, shop.soap).stock == 17 and stock.get_item(s, shop.oil).stock == 2
        tx = ledger.get_transaction(s, done.redemption.ledger_tx_id)
        assert tx.kind == "redemption" and "香皂 3 袋" in tx.memo and "食用油 1 桶" in tx.memo
        moved = counter.movements_of(s, done.redemption.id)  # type: ignore[arg-type]
        assert sorted((m.item_id, m.quantity) for m in moved) == sorted([(shop.soap, -3), (shop.oil, -1)])
        # the value leaves at cost: 500 fen a unit for both
        assert done.redemption.value_fen == 4 * 500 and sum(m.value_fen for m in moved) == -2000
    again = _redeem(db, shop, [(shop.soap, 3), (shop.oil, 1)], idempotency_key="cart-1")  # a double click
    assert again.replayed and again.redemption.id == done.redemption.id and again.balance_after == 30
    with pytest.raises(Conflict, match="另一份购物车"):
        _redeem(db, shop, [(shop.soap, 1)], idempotency_key="cart-1")
    assert _books(db, shop)[2] == 1
    _redeem(db, shop, [(shop.soap, 1)])  # later the household spends more: the first receipt still says 30
    assert _redeem(db, shop, [(shop.soap, 3), (shop.oil, 1)], idempotency_key="cart-1").balance_after == 30
    _clean(db)


@pytest.mark.parametrize(("case", "message"), [
    ("unknown", "本店没有的商品"), ("other_store_item", "本店没有的商品"), ("inactive", "已下架"),
    ("zero", "正整数"), ("negative", "正整数"), ("absurd", "最多兑换同一商品 99 件"), ("empty", "购物车是空的"),
    ("over_balance", "积分不足：本次需 120 分，该户余额 100 分，还差 20 分"), ("stock_short", "库存不足：食用油 只剩 3 桶"),
    ("other_village", "未找到该对象"), ("no_identity", "如何核对了身份"), ("daily_limit", "每户每日兑换上限 50 分"),
])
def test_bad_carts_are_refused_and_move_nothing(db: Database, case: str, message: str) -> None:
    shop = _shop(db)
    lines: list[tuple[int, int]] = [(shop.soap, 1)]
    kw: dict[str, object] = {}
    if case == "unknown":
        lines = [(987_654, 1)]
    elif case == "other_store_item":
        with db.write_txn() as s:
            elsewhere = make_stocked_item(s, make_store(s, make_village(s)), name="别家的酱油")
        lines = [(elsewhere.id, 1)]  # type: ignore[list-item]
    elif case == "inactive":
        with db.write_txn() as s:
            item = stock.get_item(s, shop.oil)
            stock.update_item(s, CLERK, shop.oil, stock.ItemInput(item.name, item.unit, points=40, active=False))
        lines = [(shop.oil, 1)]
    elif case in ("zero", "negative", "absurd"):
        lines = [(shop.soap, {"zero": 0, "negative": -2, "absurd": 100}[case])]
    elif case == "empty":
        lines = []
    elif case == "over_balance":
        lines = [(shop.oil, 3)]
    elif case == "stock_short":
        with db.write_txn() as s:
            ledger.award(s, CLERK, household_id=shop.hid, points=1000, memo="补发")
        lines = [(shop.oil, 4)]
    elif case == "other_village":
        with db.write_txn() as s:
            ledger.award(s, CLERK, household_id=shop.other_hid, points=100, memo="期初积分")
        kw["household_id"] = shop.other_hid
    elif case == "no_identity":
        kw["identity_note"] = "  "
    elif case == "daily_limit":
        with db.write_txn() as s:
            stores.update_settings(s, CLERK, shop.store_id, daily_limit=50)
        _redeem(db, shop, [(shop.soap, 3)])
        lines = [(shop.soap, 3)]  # 30 + 30 > 50
    before = _books(db, shop)
    with pytest.raises(AppError, match=message):
        _redeem(db, shop, lines, **kw)
    assert _books(db, shop) == before
    _clean(db)


def test_a_store_serving_two_villages_serves_both_and_no_other(db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        v = s.get(Village, shop.village_id)
        neighbour = make_village(s, s.get(Township, v.township_id))  # type: ignore[union-attr]
        nh = make_household(s, neighbour)
        ledger.award(s, CLERK, household_id=nh.id, points=50, memo="期初积分")  # type: ignore[arg-type]
        far = make_village(s, make_township(s))
    with pytest.raises(NotFound):  # asked by id: the same answer as for no such household
        _redeem(db, shop, [(shop.soap, 1)], household_id=nh.id)
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="本乡镇的村"):
        stores.set_served_villages(s, CLERK, shop.store_id, [far.id])  # type: ignore[list-item]
    with db.write_txn() as s:
        stores.set_served_villages(s, CLERK, shop.store_id, [neighbour.id])  # type: ignore[list-item]
    done = _redeem(db, shop, [(shop.soap, 2)], household_id=nh.id)
    assert done.balance_after == 30
    with db.read_txn() as s:  # counted in the household's own village
        assert ledger.get_transaction(s, done.redemption.ledger_tx_id).village_id == neighbour.id
    _clean(db)


# ---- cards -----------------------------------------------------------------------------------------------------------

def _card(db: Database, hid: int) -> str:
    with db.write_txn() as s:
        return cards.payload(KEY, cards.ensure_cards(s, CLERK, [hid])[hid])


def _read(db: Database, raw: str) -> cards.Scanned:
    with db.write_txn() as s:
        return cards.read(s, CLERK, KEY, raw)


def test_card_payloads_are_short_uppercase_and_signed(db: Database) -> None:
    shop = _shop(db)
    payload = _card(db, shop.hid)
    assert payload.isascii() and payload == payload.upper() and len(payload) <= 32
    assert _read(db, payload).household.id == shop.hid
    # what a scanner in Caps Lock, or a Chinese input method in full-width mode, types is still read
    assert _read(db, "  " + payload.lower() + "\n").household.id == shop.hid
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in payload)
    assert _read(db, wide).household.id == shop.hid


def test_forged_altered_revoked_and_replayed_cards_are_refused(db: Database) -> None:
    shop = _shop(db)
    payload = _card(db, shop.hid)
    prefix, card_id, version, mac = payload.split("-")
    other = _card(db, shop.other_hid)
    cases = {
        "garbage": ("HELLO", "无法识别的积分卡"),
        "forged_mac": (f"{prefix}-{card_id}-{version}-{'A' * 10 if mac != 'A' * 10 else 'B' * 10}", "校验失败"),
        "altered_id": (f"{prefix}-{other.split('-')[1]}-{version}-{mac}", "校验失败"),
        "altered_version": (f"{prefix}-{card_id}-{int(version) + 1}-{mac}", "校验失败"),
        "other_key": (cards.payload(cards.card_key("another-server-" + "y" * 40),
                                    _read(db, payload).card), "校验失败"),
    }
    for name, (raw, message) in cases.items():
        with pytest.raises(cards.CardRefused, match=message):
            _read(db, raw)
        assert name
    with db.write_txn() as s:
        cards.report_lost(s, CLERK, shop.hid, "农户报告丢失")
    with pytest.raises(cards.CardRefused, match="此卡已挂失，尚未补办新卡"):
        _read(db, payload)
    with db.write_txn() as s:
        assert cards.reissue(s, CLERK, shop.hid, "补办新卡").version == 2
    with pytest.raises(cards.CardRefused, match="此卡已挂失，请使用新卡（新卡为第 2 版）") as exc:
        _read(db, payload)  # the old card, replayed
    assert exc.value.code == "card_revoked"
    new = _card(db, shop.hid)
    assert new != payload and _read(db, new).card.version == 2


def test_a_revoked_card_at_the_counter_is_refused_audited_and_moves_nothing(client: TestClient, db: Database,
                                                                           settings: object) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        u = make_user(s, "till1")
        make_grant(s, u, "store_clerk", store_id=shop.store_id)
        key = cards.card_key(settings.secret_key)  # type: ignore[attr-defined]
        old = cards.payload(key, cards.ensure_cards(s, CLERK, [shop.hid])[shop.hid])
        cards.report_lost(s, CLERK, shop.hid, "丢失")
        cards.reissue(s, CLERK, shop.hid, "补办")
    login(client, "till1", "Passw0rd-test")
    page = client.get(f"/stores/{shop.store_id}/counter")
    token = csrf_from(page.text)
    r = client.post(f"/stores/{shop.store_id}/counter/scan", data={"csrf_token": token, "code": old})
    assert r.status_code == 422 and "此卡已挂失，请使用新卡" in r.text
    before = _books(db, shop)
    r = client.post(f"/stores/{shop.store_id}/counter/redeem",
                    data={"csrf_token": token, "household_id": shop.hid, "card": old, "form_key": "k1",
                          "item": [shop.soap], "qty": ["1"]})
    assert r.status_code == 422 and "此卡已挂失" in r.text
    assert _books(db, shop) == before
    api = client.post(f"/api/v1/stores/{shop.store_id}/redemptions", headers={"X-CSRF-Token": token},
                      json={"household_id": shop.hid, "card": old, "lines": [{"item_id": shop.soap, "quantity": 1}]})
    assert api.status_code == 422 and api.json()["error"]["code"] == "card_revoked"
    with db.read_txn() as s:
        refused = s.execute(select(AuditEvent).where(AuditEvent.action == "store.card.refused")).scalars().all()
    assert len(refused) == 3 and all(e.summary["after"]["why"] == "revoked" for e in refused)
    assert all(e.actor_name.startswith("用户") or "till1" in e.actor_name for e in refused)
    assert _books(db, shop) == before


# ---- voids -----------------------------------------------------------------------------------------------------------

def test_void_returns_points_and_goods_once(db: Database) -> None:
    shop = _shop(db)
    done = _redeem(db, shop, [(shop.soap, 2), (shop.oil, 1)])
    with db.write_txn() as s:
        r = counter.void(s, CLERK, done.redemption.id, reason="农户退回", any_day=False)  # type: ignore[arg-type]
    assert r.status == "voided" and r.void_tx_id is not None
    assert _books(db, shop)[3:] == (20, 3, 100)
    with db.write_txn() as s, pytest.raises(Conflict, match="已于"):
        counter.void(s, CLERK, done.redemption.id, reason="再来一次", any_day=True)  # type: ignore[arg-type]
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="作废原因"):
        counter.void(s, CLERK, done.redemption.id, reason=" ", any_day=True)  # type: ignore[arg-type]
    _clean(db)


def test_only_the_village_clerk_voids_an_earlier_day(db: Database) -> None:
    shop = _shop(db)
    done = _redeem(db, shop, [(shop.soap, 1)], at=utcnow() - timedelta(days=2))
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="只能作废当天"):
        counter.void(s, CLERK, done.redemption.id, reason="退货", any_day=False)  # type: ignore[arg-type]
    with db.write_txn() as s:
        counter.void(s, CLERK, done.redemption.id, reason="村文书核实后作废", any_day=True)  # type: ignore[arg-type]
    assert _books(db, shop)[5] == 100
    _clean(db)


@pytest.mark.parametrize(("tamper", "kind"), [
    ("stock", "stock_mismatch"), ("household", "ledger_mismatch"), ("value", "lines_mismatch"),
    ("status", "void_mismatch"), ("fund", "fund_mismatch"),
])
def test_store_verify_finds_a_broken_book(db: Database, tamper: str, kind: str) -> None:
    """The proof must be able to fail: a row changed behind the books' back is named."""
    shop = _shop(db)
    done = _redeem(db, shop, [(shop.soap, 1)])
    _clean(db)
    with db.write_txn() as s:
        if tamper == "stock":
            s.execute(update(Item).where(Item.id == shop.soap).values(stock=5))
        elif tamper == "household":  # the redemption says another household than the ledger took the points from
            s.execute(update(Redemption).where(Redemption.id == done.redemption.id).values(household_id=shop.other_hid))
        elif tamper == "value":
            s.execute(update(Redemption).where(Redemption.id == done.redemption.id).values(value_fen=1))
        elif tamper == "status":  # marked void without the reversal and the goods back
            s.execute(update(Redemption).where(Redemption.id == done.redemption.id).values(status="voided"))
        else:  # a fund's spent money no longer what its purchases drew
            s.execute(update(Fund).values(spent_fen=0))
    with db.read_txn() as s:
        problems, _ = stores.verify(s)
    assert kind in {p.kind for p in problems}, problems


def test_a_sold_out_item_on_the_page_does_not_break_the_cart(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        make_grant(s, make_user(s, "till3"), "store_clerk", store_id=shop.store_id)
        stock.stocktake(s, CLERK, shop.oil, counted=0, reason="盘点：全部卖完")
    token = login(client, "till3", "Passw0rd-test")
    page = client.get(f"/stores/{shop.store_id}/counter?household_id={shop.hid}")
    assert page.status_code == 200 and "readonly" in page.text and " disabled " not in page.text
    # what a browser posts: every row's item and price, and every quantity box (the sold-out one empty)
    form = {"csrf_token": token, "household_id": shop.hid, "identity_note": "户主本人", "form_key": "k-sold",
            "item": [shop.soap, shop.oil], "price": ["10", "40"], "qty": ["2", ""]}
    r = client.post(f"/stores/{shop.store_id}/counter/redeem", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert _books(db, shop)[3] == 18


def test_a_price_changed_since_the_page_was_shown_redeems_nothing(client: TestClient, db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        make_grant(s, make_user(s, "till4"), "store_clerk", store_id=shop.store_id)
        stock.update_item(s, CLERK, shop.soap, stock.ItemInput("香皂", "袋", points=12))  # was 10 on the page
    token = login(client, "till4", "Passw0rd-test")
    before = _books(db, shop)
    form = {"csrf_token": token, "household_id": shop.hid, "identity_note": "户主本人", "form_key": "k-price",
            "item": [shop.soap, shop.oil], "price": ["10", "40"], "qty": ["2", ""]}
    r = client.post(f"/stores/{shop.store_id}/counter/redeem", data=form)
    assert r.status_code == 422 and "现在共需 24 分（页面上是 20 分）" in r.text
    assert _books(db, shop) == before


def test_keys_are_per_store_and_a_voided_cart_replays_as_voided(db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        store2 = make_store(s, s.get(Village, shop.village_id))  # type: ignore[arg-type]
        soap2 = make_stocked_item(s, store2, name="香皂", points=10, stock=5)
    first = _redeem(db, shop, [(shop.soap, 1)], idempotency_key="till-1")
    other = _redeem(db, shop, [(soap2.id, 1)], idempotency_key="till-1", store_id=store2.id)  # another store's till
    assert not other.replayed and other.redemption.id != first.redemption.id
    with db.write_txn() as s:
        counter.void(s, CLERK, first.redemption.id, reason="退货", any_day=False)  # type: ignore[arg-type]
    again = _redeem(db, shop, [(shop.soap, 1)], idempotency_key="till-1")
    assert again.replayed and again.redemption.status == "voided"
    _clean(db)


def test_purchases_use_the_store_villages_money_and_transfers_stay_in_the_township(db: Database) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        v = s.get(Village, shop.village_id)
        neighbour = make_village(s, s.get(Township, v.township_id))  # type: ignore[union-attr]
        stores.set_served_villages(s, CLERK, shop.store_id, [neighbour.id])  # type: ignore[list-item]
        theirs = stores.record_fund(s, CLERK, village_id=neighbour.id, source="county", amount_fen=100_000,  # type: ignore[arg-type]
                                    received_on=date(2026, 3, 1), document_no="邻村〔2026〕1号")
        far_store = make_store(s, make_village(s, make_township(s)))
        near_store = make_store(s, neighbour)
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="本超市所在村的一笔资金"):
        stock.purchase(s, CLERK, shop.soap, quantity=1, cost_fen=500, fund_id=theirs.id)  # type: ignore[arg-type]
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="只能调拨给本乡镇另一家在用的超市"):
        stock.transfer(s, CLERK, shop.soap, to_store_id=far_store.id, quantity=1, reason="调拨")  # type: ignore[arg-type]
    with db.write_txn() as s, pytest.raises(ValidationFailed, match="只能调拨给本乡镇另一家在用的超市"):
        stock.transfer(s, CLERK, shop.soap, to_store_id=far_store.id + 999, quantity=1, reason="调拨")  # none: the same
    with db.write_txn() as s:
        stock.transfer(s, CLERK, shop.soap, to_store_id=near_store.id, quantity=2, reason="邻村缺货")  # type: ignore[arg-type]
    assert _books(db, shop)[3] == 18
    _clean(db)


# ---- the API ---------------------------------------------------------------------------------------------------------

def test_api_redemption_with_idempotency_key_and_scope(client: TestClient, db: Database, settings: object) -> None:
    shop = _shop(db)
    with db.write_txn() as s:
        u = make_user(s, "till2")
        make_grant(s, u, "store_clerk", store_id=shop.store_id)
        payload = cards.payload(cards.card_key(settings.secret_key),  # type: ignore[attr-defined]
                                cards.ensure_cards(s, CLERK, [shop.hid])[shop.hid])
        second = make_store(s, s.get(Village, shop.village_id))  # type: ignore[arg-type]  # another store of the same village: not this clerk's
    headers = {"X-CSRF-Token": login(client, "till2", "Passw0rd-test")}
    scan = client.post(f"/api/v1/stores/{shop.store_id}/scan", json={"code": payload}, headers=headers)
    assert scan.status_code == 200 and scan.json()["household_id"] == shop.hid and scan.json()["balance"] == 100
    body = {"household_id": shop.hid, "card": payload, "lines": [{"item_id": shop.soap, "quantity": 2}]}
    r = client.post(f"/api/v1/stores/{shop.store_id}/redemptions", json=body,
                    headers={**headers, "Idempotency-Key": "till-1"})
    assert r.status_code == 201, r.text
    assert r.json()["balance_after"] == 80 and r.json()["identified_by"] == "card"
    again = client.post(f"/api/v1/stores/{shop.store_id}/redemptions", json=body,
                        headers={**headers, "Idempotency-Key": "till-1"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == r.json()["id"]
    clash = client.post(f"/api/v1/stores/{shop.store_id}/redemptions",
                        json={**body, "lines": [{"item_id": shop.soap, "quantity": 1}]},
                        headers={**headers, "Idempotency-Key": "till-1"})
    assert clash.status_code == 409
    with db.write_txn() as s:  # a card from another village's household: refused, named, nothing moved
        far = cards.payload(cards.card_key(settings.secret_key),  # type: ignore[attr-defined]
                            cards.ensure_cards(s, CLERK, [shop.other_hid])[shop.other_hid])
    before = _books(db, shop)
    far_scan = client.post(f"/api/v1/stores/{shop.store_id}/scan", json={"code": far}, headers=headers)
    assert far_scan.status_code == 422 and "不属于本超市服务的村" in far_scan.json()["error"]["message"]
    far_buy = client.post(f"/api/v1/stores/{shop.store_id}/redemptions", headers=headers,
                          json={"household_id": shop.other_hid, "card": far,
                                "lines": [{"item_id": shop.soap, "quantity": 1}]})
    assert far_buy.status_code == 422 and far_buy.json()["error"]["code"] == "not_served"
    assert _books(db, shop) == before
    bad = client.post(f"/api/v1/stores/{shop.store_id}/redemptions",
                      json={**body, "lines": [{"item_id": shop.soap, "quantity": 0}]}, headers=headers)
    assert bad.status_code == 422
    outside = client.post(f"/api/v1/stores/{second.id}/redemptions", json=body, headers=headers)
    assert outside.status_code == 404  # a store clerk acting outside the store
    void = client.post(f"/api/v1/redemptions/{r.json()['id']}/void", json={"reason": "退货"}, headers=headers)
    assert void.status_code == 200 and void.json()["status"] == "voided" and void.json()["balance_after"] == 100
    _clean(db)


def test_not_served_answers_like_missing_household(client: TestClient, db: Database) -> None:
    """A store clerk probing household ids learns nothing: another village's household and no household at all get
    the same status and the same words, through the API and on the counter page."""
    shop = _shop(db)
    with db.write_txn() as s:
        u = make_user(s, "till3")
        make_grant(s, u, "store_clerk", store_id=shop.store_id)
        ledger.award(s, CLERK, household_id=shop.other_hid, points=100, memo="期初积分")
    headers = {"X-CSRF-Token": login(client, "till3", "Passw0rd-test")}
    missing = shop.other_hid + 10_000

    def api(hid: int) -> tuple[int, dict[str, object]]:
        r = client.post(f"/api/v1/stores/{shop.store_id}/redemptions", headers=headers,
                        json={"household_id": hid, "identity_note": "户主本人",
                              "lines": [{"item_id": shop.soap, "quantity": 1}]})
        err = dict(r.json()["error"])
        err.pop("request_id", None)
        return r.status_code, err

    before = _books(db, shop)
    assert api(shop.other_hid) == api(missing)
    assert api(missing)[0] == 404
    assert _books(db, shop) == before

    def page(hid: int) -> str:
        r = client.get(f"/stores/{shop.store_id}/counter", params={"household_id": hid})
        assert r.status_code == 200
        return r.text.split('class="flash', 1)[1].split("</", 1)[0] if 'class="flash' in r.text else r.text
    other, none = page(shop.other_hid), page(missing)
    assert other == none and "未找到" in other
    _clean(db)
