"""Pages of the 振风超市 behind the counter: the stores one can see, a store's catalog and settings, an item with its
stock forms (purchase against a fund, donation, stock-take, transfer) and movements, the day's redemptions, a
village's supermarket finance with the funds received, the village's 积分卡 (issue, print ten to an A4 sheet, report
lost, reissue) and a household's own view: its balance, its card to show at the counter and what it can afford.

The counter itself, receipts and voids are in app/store/pages/counter.py. Every form posts plainly; a rejected form
shows its page again with the reason and what was typed, after the request's transaction has been rolled back.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from app.auth.deps import authorize, register_scope_resolver
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.masking import mask_name
from app.core.scope import EVERYTHING, Scope, ScopeFilter
from app.deps import DbSession, PostedForm
from app.errors import NotFound, ValidationFailed, form_errors
from app.households.models import HOUSEHOLD_STATUS_LABELS
from app.households.service import households as hh
from app.ledger import service as ledger
from app.org import service as org
from app.rulesets import service as evaluation
from app.store.service import cards, counter, stock
from app.store.service import stores as service
from app.web.templates import redirect, render

router = APIRouter(include_in_schema=False)


def scope_of_item(session: DbSession, item_id: int) -> Scope | None:
    """An item lives where its store lives."""
    try:
        item = stock.get_item(session, item_id)
    except NotFound:
        return None
    return service.scope_of_store(session, item.store_id)


register_scope_resolver("item_id", scope_of_item)
register_scope_resolver("fund_id", service.scope_of_fund)

View = Depends(authorize(Perm.STORE_VIEW))
Stock = Depends(authorize(Perm.STORE_STOCK))
Manage = Depends(authorize(Perm.STORE_MANAGE))
OrgManage = Depends(authorize(Perm.ORG_MANAGE))
Funds = Depends(authorize(Perm.FUNDS_MANAGE))
Cards = Depends(authorize(Perm.CARD_MANAGE))
Points = Depends(authorize(Perm.LEDGER_VIEW))
Public = Depends(authorize(Perm.PUBLIC))
Text = Annotated[str, Form(max_length=300)]
CARDS_PER_SHEET = 10  # CR80 cards, 2 columns x 5 rows on A4
MOVEMENTS_SHOWN = 200
CARD_STATUS = {"active": "正常", "lost": "已挂失"}
CARD_ACTIONS = {"issued": "发卡", "lost": "挂失", "reissued": "补办"}
LABELS = {"kind_labels": stock.KIND_LABELS, "sources": service.SOURCES, "categories": stock.CATEGORIES,
          "yuan": stock.yuan, "card_status": CARD_STATUS, "card_actions": CARD_ACTIONS,
          "household_status": HOUSEHOLD_STATUS_LABELS}


# ---- reading what was typed -----------------------------------------------------------------------------------------

def _plain(text: str | None) -> str:
    """Full-width digits and signs from a Chinese input method become ASCII; spaces around go."""
    return unicodedata.normalize("NFKC", text or "").strip()


def _int(text: str, label: str, *, blank: int | None = None) -> int:
    raw = _plain(text).replace(",", "")
    if not raw:
        if blank is not None:
            return blank
        raise ValidationFailed(f"请填写{label}（整数）", details={"field": label})
    digits = raw[1:] if raw[:1] in "+-" else raw
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 12:
        raise ValidationFailed(f"{label}须为整数，例如 10；填写的是“{raw[:20]}”", details={"field": label})
    return int(raw)


def _yuan(text: str, label: str, *, blank: int | None = None) -> int:
    raw = _plain(text)
    if not raw and blank is not None:
        return blank
    if len(raw) > 20:
        raise ValidationFailed(f"{label}须为金额，单位元，最多两位小数，例如 125.50", details={"field": label})
    return stock.parse_yuan(raw, label)


def _id(text: str, what: str) -> int:
    raw = _plain(text)
    if not raw:
        raise ValidationFailed(f"请选择{what}", details={"field": what})
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2**31:
        raise ValidationFailed(f"“{raw[:20]}”不是有效的{what}，请从列表中选择", details={"field": what})
    return int(raw)


def _date(text: str, label: str) -> date:
    raw = _plain(text)
    if not raw:
        return counter.today()
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{label}格式不对，应为 2026-05-01", details={"field": label}) from None
    if not 2000 <= day.year <= 2100:
        raise ValidationFailed(f"{label}不对：请填写 2000 年到 2100 年之间的日期", details={"field": label})
    return day


def _covers(p: Principal, perm: Perm, scope: Scope | None) -> bool:
    return scope is not None and p.covers(perm, scope)


def _village_scope(session: DbSession, village_id: int) -> Scope | None:
    return org.scope_of_village(session, village_id)


# ---- the stores one can see -----------------------------------------------------------------------------------------

@router.get("/stores")
def stores_index(request: Request, session: DbSession, p: Principal = View) -> Response:
    found = service.visible_stores(session, p.filter(Perm.STORE_VIEW))
    ids: list[int] = [s.id for s in found if s.id is not None]
    served = {sid: service.served_villages(session, sid) for sid in ids}
    names = service.village_names(session, sorted({v for vs in served.values() for v in vs}))
    scopes = {sid: service.scope_of_store(session, sid) for sid in ids}
    counter_ok = {sid: _covers(p, Perm.LEDGER_SPEND, scopes[sid]) for sid in ids}
    low: dict[int, int] = {}
    for it in stock.low_stock(session, ids):
        low[it.store_id] = low.get(it.store_id, 0) + 1
    village_scopes = {v: _village_scope(session, v) for v in names}
    mine = [s for s in found if s.id is not None and counter_ok[s.id] and s.active]
    if p.filter(Perm.LEDGER_SPEND).everything:  # the county: no store of its own
        mine = []
    first = mine[0] if len(mine) == 1 else None
    ordered = ([first] if first else []) + [s for s in found if s is not first]
    return render(request, "store/index.html", {
        "stores": ordered, "first": first, "served": served, "names": names, "totals": stock.stock_totals(session, ids),
        "low": low, "counter_ok": counter_ok,
        "finance_ok": {v: _covers(p, Perm.STORE_VIEW, sc) for v, sc in village_scopes.items()},
        "cards_ok": {v: _covers(p, Perm.CARD_MANAGE, sc) for v, sc in village_scopes.items()}, **LABELS})


# ---- a store: catalog, low stock, settings --------------------------------------------------------------------------

def _store_ctx(session: DbSession, p: Principal, store_id: int, **extra: Any) -> dict[str, Any]:
    store = service.get_store(session, store_id)
    scope = service.scope_of_store(session, store_id)
    served = service.served_villages(session, store_id)
    home = org.get_village(session, EVERYTHING, store.village_id)
    neighbours = [v for v in org.list_villages(session, EVERYTHING, township_id=home.township_id,
                                               include_inactive=False) if v.id != home.id]
    units, value = stock.stock_totals(session, [store_id]).get(store_id, (0, 0))
    return {"store": store, "home": home, "served": served, "names": service.village_names(session, served),
            "items": stock.items(session, store_id), "low_items": stock.low_stock(session, [store_id]),
            "units": units, "value": value, "neighbours": neighbours,
            "can_stock": _covers(p, Perm.STORE_STOCK, scope), "can_manage": _covers(p, Perm.STORE_MANAGE, scope),
            "can_counter": _covers(p, Perm.LEDGER_SPEND, scope), "can_org": _covers(p, Perm.ORG_MANAGE, scope),
            "nav_active": "/stores", **LABELS, **extra}


@router.get("/stores/{store_id}")
def store_page(request: Request, session: DbSession, store_id: int, p: Principal = View) -> Response:
    return render(request, "store/store.html", _store_ctx(session, p, store_id))


def _item_input(name: str, unit: str, category: str, points: str, cost: str, barcode: str, low_stock: str,
                active: bool) -> stock.ItemInput:
    return stock.ItemInput(name=name, unit=unit, category=category, points=_int(points, "兑换积分"),
                           cost_fen=_yuan(cost, "进价", blank=0), barcode=barcode or None,
                           low_stock=_int(low_stock, "库存预警数", blank=5), active=active)


@router.post("/stores/{store_id}/items")
def item_create(request: Request, session: DbSession, store_id: int, p: Principal = Stock,
                name: Text = "", unit: Text = "", category: Text = "", points: Text = "", cost: Text = "",
                barcode: Text = "", low_stock: Text = "") -> Response:
    typed = {"name": name, "unit": unit, "category": category, "points": points, "cost": cost, "barcode": barcode,
             "low_stock": low_stock}
    with form_errors("store/store.html", lambda s: _store_ctx(s, p, store_id, new_item=typed)):
        item = stock.create_item(session, p.actor(), store_id,
                                 _item_input(name, unit, category, points, cost, barcode, low_stock, True))
    return redirect(f"/items/{item.id}", request, f"已新增商品“{item.name}”：请登记入库")


@router.post("/stores/{store_id}/settings")
def store_settings(request: Request, session: DbSession, store_id: int, p: Principal = Manage,
                   daily_limit: Text = "") -> Response:
    limit_text = daily_limit[:20]
    typed = {"daily_limit": limit_text}
    with form_errors("store/store.html", lambda s: _store_ctx(s, p, store_id, settings=typed)):
        limit = _int(limit_text, "每户每日兑换上限") if _plain(limit_text) else None
        store = service.update_settings(session, p.actor(), store_id, daily_limit=limit)
    words = f"每户每日最多兑换 {store.daily_limit} 分" if store.daily_limit else "每日兑换不限"
    return redirect(f"/stores/{store_id}", request, f"已保存超市设置：{words}")


@router.post("/stores/{store_id}/villages")
def store_villages(request: Request, session: DbSession, form: PostedForm, store_id: int,
                   p: Principal = OrgManage) -> Response:
    """Which other villages of the township the store serves: the county administrator's decision."""
    chosen = [str(v)[:12] for v in form.getlist("villages")][:200]
    with form_errors("store/store.html", lambda s: _store_ctx(s, p, store_id, villages_typed=chosen)):
        service.set_served_villages(session, p.actor(), store_id, [_id(v, "村") for v in chosen])
    return redirect(f"/stores/{store_id}", request, f"已保存：本超市同时服务本乡镇其他 {len(chosen)} 个村")


# ---- an item: detail, edit, photo, stock in and adjustments ---------------------------------------------------------

def _fund_label(f: Any, names: dict[int, str], several: bool) -> str:
    what = f.document_no or f.donor or ""
    where = f"{names.get(f.village_id, '')} " if several else ""
    return f"{where}{f.received_on.isoformat()} {service.SOURCES.get(f.source, f.source)} {what}".strip()


def _item_ctx(session: DbSession, p: Principal, item_id: int, **extra: Any) -> dict[str, Any]:
    item = stock.get_item(session, item_id)
    store = service.get_store(session, item.store_id)
    scope = service.scope_of_store(session, item.store_id)
    served = service.served_villages(session, item.store_id)
    names = service.village_names(session, served)
    all_funds = service.funds(session, served)
    # purchases are paid from the store's own village's money (a store serving several villages too)
    spendable = [f for f in all_funds if f.form == "money" and f.amount_fen > f.spent_fen
                 and f.village_id == store.village_id]
    home = org.get_village(session, EVERYTHING, store.village_id)
    others = [s for s in service.visible_stores(session, ScopeFilter(township_ids=frozenset({home.township_id})))
              if s.id != store.id and s.active]
    several = len(served) > 1
    fund_labels = {f.id: _fund_label(f, names, several) for f in all_funds}
    return {"item": item, "store": store, "movements": stock.movements(session, store_id=item.store_id,
                                                                         item_id=item_id, limit=MOVEMENTS_SHOWN),
            "funds": spendable, "fund_labels": fund_labels, "other_stores": others,
            "store_names": {s.id: s.name for s in others}, "home": home, "today": counter.today(),
            "can_stock": _covers(p, Perm.STORE_STOCK, scope), "forms": {}, "nav_active": "/stores",
            **LABELS, **extra}


@router.get("/items/{item_id}")
def item_page(request: Request, session: DbSession, item_id: int, p: Principal = View) -> Response:
    return render(request, "store/item.html", _item_ctx(session, p, item_id))


def _item_form(p: Principal, item_id: int, form: str, typed: dict[str, Any]) -> AbstractContextManager[None]:
    return form_errors("store/item.html", lambda s: _item_ctx(s, p, item_id, forms={form: typed}))


@router.post("/items/{item_id}")
def item_update(request: Request, session: DbSession, item_id: int, p: Principal = Stock,
                name: Text = "", unit: Text = "", category: Text = "", points: Text = "", cost: Text = "",
                barcode: Text = "", low_stock: Text = "", active: Text = "") -> Response:
    typed = {"name": name, "unit": unit, "category": category, "points": points, "cost": cost, "barcode": barcode,
             "low_stock": low_stock, "active": active == "1"}
    with _item_form(p, item_id, "edit", typed):
        item = stock.update_item(session, p.actor(), item_id,
                                 _item_input(name, unit, category, points, cost, barcode, low_stock, active == "1"))
    return redirect(f"/items/{item_id}", request, f"已保存商品“{item.name}”" + ("" if item.active else "（已下架）"))


@router.post("/items/{item_id}/photo")
def item_photo_upload(request: Request, session: DbSession, item_id: int, p: Principal = Stock,
                      photo: Annotated[UploadFile | None, File()] = None) -> Response:
    with _item_form(p, item_id, "photo", {}):
        if photo is None or not photo.filename:
            raise ValidationFailed("请选择商品照片（JPG、PNG 或 WebP，不超过 2 MB）", details={"field": "photo"})
        data = photo.file.read(stock.MAX_PHOTO_BYTES + 1)
        stock.set_photo(session, p.actor(), item_id, data, (photo.content_type or "").lower())
    return redirect(f"/items/{item_id}", request, "已更新商品照片")


NO_PHOTO = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 120 90" width="120" height="90">'
            '<rect width="120" height="90" fill="#f3efe9"/><text x="60" y="50" text-anchor="middle" font-size="12" '
            'fill="#888">暂无照片</text></svg>')


@router.get("/items/{item_id}/photo")
def item_photo(session: DbSession, item_id: int, p: Principal | None = Public) -> Response:
    """Item photos are not sensitive: anyone may load them (pages link them with ?v=<updated> so a new photo shows at
    once). An item without a photo answers a small placeholder, not 404: the address of an existing item works."""
    item = stock.get_item(session, item_id)
    if not item.photo or not item.photo_type:
        return Response(NO_PHOTO, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=300"})
    return Response(bytes(item.photo), media_type=item.photo_type,
                    headers={"Cache-Control": "public, max-age=86400"})


@router.post("/items/{item_id}/purchase")
def item_purchase(request: Request, session: DbSession, item_id: int, p: Principal = Stock,
                  quantity: Text = "", cost: Text = "", fund_id: Text = "", note: Text = "") -> Response:
    typed = {"quantity": quantity, "cost": cost, "fund_id": fund_id, "note": note}
    with _item_form(p, item_id, "purchase", typed):
        item = stock.get_item(session, item_id)
        m = stock.purchase(session, p.actor(), item_id, quantity=_int(quantity, "数量"), cost_fen=_yuan(cost, "采购金额"),
                           fund_id=_id(fund_id, "资金"),
                           note=note)
    return redirect(f"/items/{item_id}", request,
                    f"已采购入库 {m.quantity} {item.unit}，{stock.yuan(m.value_fen)} 元，库存 {m.stock_after} {item.unit}")


@router.post("/items/{item_id}/donation")
def item_donation(request: Request, session: DbSession, item_id: int, p: Principal = Stock,
                  quantity: Text = "", value: Text = "", donor: Text = "", document_no: Text = "",
                  received_on: Text = "") -> Response:
    typed = {"quantity": quantity, "value": value, "donor": donor, "document_no": document_no,
             "received_on": received_on}
    with _item_form(p, item_id, "donation", typed):
        item = stock.get_item(session, item_id)
        store = service.get_store(session, item.store_id)
        m = stock.donation_in(session, p.actor(), item_id, quantity=_int(quantity, "数量"), value_fen=_yuan(value, "估价"),
                              donor=donor, village_id=store.village_id, received_on=_date(received_on, "收到日期"),
                              document_no=document_no)
    return redirect(f"/items/{item_id}", request,
                    f"已登记捐赠入库 {m.quantity} {item.unit}（{m.donor}），库存 {m.stock_after} {item.unit}")


@router.post("/items/{item_id}/stocktake")
def item_stocktake(request: Request, session: DbSession, item_id: int, p: Principal = Stock,
                   counted: Text = "", reason: Text = "") -> Response:
    typed = {"counted": counted, "reason": reason}
    with _item_form(p, item_id, "stocktake", typed):
        item = stock.get_item(session, item_id)
        m = stock.stocktake(session, p.actor(), item_id, counted=_int(counted, "盘点数量"), reason=reason)
    if m is None:
        return redirect(f"/items/{item_id}", request, "盘点数与账面库存一致，没有调整")
    return redirect(f"/items/{item_id}", request,
                    f"已按盘点调整 {m.quantity:+d} {item.unit}，库存 {m.stock_after} {item.unit}")


@router.post("/items/{item_id}/transfer")
def item_transfer(request: Request, session: DbSession, item_id: int, p: Principal = Stock,
                  to_store_id: Text = "", quantity: Text = "", reason: Text = "") -> Response:
    typed = {"to_store_id": to_store_id, "quantity": quantity, "reason": reason}
    with _item_form(p, item_id, "transfer", typed):
        item = stock.get_item(session, item_id)
        out, into = stock.transfer(session, p.actor(), item_id, to_store_id=_id(to_store_id, "调入超市"),
                                   quantity=_int(quantity, "数量"), reason=reason)
        target = service.get_store(session, into.store_id)
    return redirect(f"/items/{item_id}", request,
                    f"已调出 {-out.quantity} {item.unit} 到{target.name}，本店库存 {out.stock_after} {item.unit}")


# ---- a store's movements and redemptions ----------------------------------------------------------------------------

@router.get("/stores/{store_id}/movements")
def store_movements(request: Request, session: DbSession, store_id: int, p: Principal = View,
                    kind: Annotated[str, Query(max_length=20)] = "") -> Response:
    store = service.get_store(session, store_id)
    kind = kind if kind in stock.KIND_LABELS else ""
    rows = stock.movements(session, store_id=store_id, kind=kind or None, limit=MOVEMENTS_SHOWN)
    served = service.served_villages(session, store_id)
    names = service.village_names(session, served)
    funds = service.funds(session, served)
    return render(request, "store/movements.html", {
        "store": store, "rows": rows, "kind": kind, "limit": MOVEMENTS_SHOWN,
        "item_names": {i.id: f"{i.name}（{i.unit}）" for i in stock.items(session, store_id)},
        "fund_labels": {f.id: _fund_label(f, names, len(served) > 1) for f in funds}, "nav_active": "/stores",
        **LABELS})


@router.get("/stores/{store_id}/redemptions")
def store_redemptions(request: Request, session: DbSession, store_id: int, p: Principal = View,
                      day: Annotated[str, Query(max_length=20)] = "") -> Response:
    store = service.get_store(session, store_id)
    error = None
    try:
        chosen = _date(day, "日期")
    except ValidationFailed as e:
        chosen, error = counter.today(), e.message
    rows = counter.recent(session, store_id, day=chosen, limit=2000)
    done = [r for r, _h in rows if r.status == "done"]
    scope = service.scope_of_store(session, store_id)
    return render(request, "store/redemptions.html", {
        "store": store, "rows": rows, "day": chosen, "prev_day": chosen - timedelta(days=1),
        "next_day": chosen + timedelta(days=1), "today": counter.today(), "count": len(done),
        "points": sum(r.points for r in done), "value": sum(r.value_fen for r in done),
        "voided": len(rows) - len(done), "can_counter": _covers(p, Perm.LEDGER_SPEND, scope), "error": error,
        "nav_active": "/stores", **LABELS})


# ---- a village's finance and funds ----------------------------------------------------------------------------------

def _finance_ctx(session: DbSession, p: Principal, village_id: int, year: int | None = None,
                 **extra: Any) -> dict[str, Any]:
    this_year = counter.today().year
    year = year or this_year
    village = org.get_village(session, EVERYTHING, village_id)
    point_value = evaluation.point_value(session, village_id, year)
    fin = service.finance(session, village_id, year, point_value_fen=point_value or 0)
    return {"village": village, "year": year, "fin": fin, "point_value": point_value,
            "funds": service.funds(session, [village_id], year=year),
            "years": list(range(this_year, this_year - 6, -1)), "today": counter.today(),
            "can_funds": _covers(p, Perm.FUNDS_MANAGE, _village_scope(session, village_id)),
            "nav_active": "/stores", **LABELS, **extra}


@router.get("/villages/{village_id}/finance")
def village_finance(request: Request, session: DbSession, village_id: int, p: Principal = View,
                    year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> Response:
    return render(request, "store/finance.html", _finance_ctx(session, p, village_id, year))


@router.post("/villages/{village_id}/funds")
def fund_record(request: Request, session: DbSession, village_id: int, p: Principal = Funds,
                source: Text = "", amount: Text = "", received_on: Text = "", document_no: Text = "",
                donor: Text = "", note: Text = "") -> Response:
    typed = {"source": source, "amount": amount, "received_on": received_on, "document_no": document_no,
             "donor": donor, "note": note}
    with form_errors("store/finance.html", lambda s: _finance_ctx(s, p, village_id, fund_form=typed)):
        fund = service.record_fund(session, p.actor(), village_id=village_id, source=source,
                                   amount_fen=_yuan(amount, "金额"), received_on=_date(received_on, "收到日期"),
                                   document_no=document_no, donor=donor, note=note)
    return redirect(f"/villages/{village_id}/finance?year={fund.year}", request,
                    f"已登记{service.SOURCES[fund.source]} {stock.yuan(fund.amount_fen)} 元")


# ---- a village's cards ----------------------------------------------------------------------------------------------

def _households(session: DbSession, p: Principal, village_id: int, *, group_id: int | None = None,
                active_only: bool = False) -> list[Any]:
    return hh.search(session, p.filter(Perm.HOUSEHOLD_VIEW), village_id=village_id, group_id=group_id,
                     status="active" if active_only else None, limit=100_000).rows


@router.get("/villages/{village_id}/cards")
def village_cards(request: Request, session: DbSession, village_id: int, p: Principal = Cards) -> Response:
    village = org.get_village(session, EVERYTHING, village_id)
    rows = _households(session, p, village_id)
    have = cards.cards_of(session, [h.id for h in rows if h.id is not None])
    active = [h for h in rows if h.status == "active"]
    groups = org.list_groups(session, village_id)
    return render(request, "store/cards.html", {
        "village": village, "rows": rows, "cards": have, "groups": groups,
        "group_names": {g.id: g.name for g in groups},
        "without": sum(1 for h in active if h.id not in have),
        "lost": sum(1 for h in active if h.id in have and have[h.id].status == "lost"),
        "printable": sum(1 for h in active if h.id in have and have[h.id].status == "active"),
        "nav_active": "/stores", **LABELS})


@router.post("/villages/{village_id}/cards/issue")
def cards_issue(request: Request, session: DbSession, village_id: int, p: Principal = Cards) -> Response:
    ids = [h.id for h in _households(session, p, village_id, active_only=True) if h.id is not None]
    before = len(cards.cards_of(session, ids))
    after = len(cards.ensure_cards(session, p.actor(), ids))
    message = f"已为 {after - before} 户发放积分卡，可以打印了" if after > before else "在册农户都已有积分卡，没有新发卡"
    return redirect(f"/villages/{village_id}/cards", request, message)


def _chunks(seq: Sequence[Any], n: int) -> list[list[Any]]:
    return [list(seq[i:i + n]) for i in range(0, len(seq), n)]


@router.get("/villages/{village_id}/cards/print")
def cards_print(request: Request, session: DbSession, village_id: int, p: Principal = Cards,
                group_id: Annotated[int | None, Query(ge=1, lt=2**31)] = None,
                household_id: Annotated[int | None, Query(ge=1, lt=2**31)] = None) -> Response:
    village = org.get_village(session, EVERYTHING, village_id)
    if household_id is not None:
        h = hh.get_household(session, household_id)
        if h.village_id != village_id:
            raise NotFound()
        rows = [h]
    else:
        rows = _households(session, p, village_id, group_id=group_id, active_only=True)
    have = cards.cards_of(session, [h.id for h in rows if h.id is not None])
    key = _key(request)
    groups = {g.id: g for g in org.list_groups(session, village_id)}
    entries = []
    for h in rows:
        card = have.get(h.id)
        if card is None or card.status != "active":
            continue
        code = cards.payload(key, card)
        entries.append({"h": h, "card": card, "payload": code, "svg": cards.qr_svg(code, size_mm=30),
                        "head": mask_name(h.head_name), "group": groups[h.group_id].name if h.group_id in groups
                        else None})
    return render(request, "store/cards_print.html", {
        "village": village, "sheets": _chunks(entries, CARDS_PER_SHEET), "count": len(entries),
        "without": sum(1 for h in rows if h.id not in have),
        "lost": sum(1 for h in rows if h.id in have and have[h.id].status == "lost"),
        "group": groups.get(group_id) if group_id else None, "household_id": household_id,
        "per_sheet": CARDS_PER_SHEET, "nav_active": "/stores", **LABELS})


# ---- a household: its card and its view of the stores ---------------------------------------------------------------

def _household_ctx(session: DbSession, p: Principal, household_id: int, key: bytes, **extra: Any) -> dict[str, Any]:
    """The household's page. Its card's QR is shown to the household itself (to show at the counter from its phone)
    and to whoever manages cards, not to everyone who may read the household's points."""
    h = hh.get_household(session, household_id)
    scope = hh.scope_of_household(session, household_id)
    can_cards = _covers(p, Perm.CARD_MANAGE, scope)
    own = household_id in p.filter(Perm.LEDGER_VIEW).household_ids
    card = cards.card_of(session, household_id)
    code = svg = None
    if card is not None and card.status == "active" and (own or can_cards):
        code = cards.payload(key, card)
        svg = cards.qr_svg(code, size_mm=45)
    stores = service.stores_serving(session, h.village_id)
    redemptions = counter.of_household(session, household_id, limit=20)
    store_names = {s.id: s.name for s in stores}
    for r in redemptions:
        if r.store_id not in store_names:
            store_names[r.store_id] = service.get_store(session, r.store_id).name
    return {"h": h, "village": org.get_village(session, EVERYTHING, h.village_id),
            "balance": ledger.balance(session, household_id), "expiring": ledger.expiring(session, household_id),
            "card": card, "payload": code, "svg": svg,
            "events": cards.events(session, card.id) if card is not None and can_cards else [],
            "can_cards": can_cards, "own": own, "redemptions": redemptions, "store_names": store_names,
            "catalog": [(s, counter.items_for(session, s.id)) for s in stores],
            "nav_active": "/points", **LABELS, **extra}


def _key(request: Request) -> bytes:
    return cards.card_key(request.app.state.settings.secret_key)


@router.get("/households/{household_id}/store")
def household_store(request: Request, session: DbSession, household_id: int, p: Principal = Points) -> Response:
    return render(request, "store/household.html", _household_ctx(session, p, household_id, _key(request)))


@router.post("/households/{household_id}/card/lost")
def card_lost(request: Request, session: DbSession, household_id: int, p: Principal = Cards,
              reason: Text = "") -> Response:
    with form_errors("store/household.html", lambda s: _household_ctx(
            s, p, household_id, _key(request), card_form={"action": "lost", "reason": reason})):
        card = cards.report_lost(session, p.actor(), household_id, reason)
    return redirect(f"/households/{household_id}/store", request,
                    f"第 {card.version} 版积分卡已挂失，立即停用：请为该户补办新卡")


@router.post("/households/{household_id}/card/reissue")
def card_reissue(request: Request, session: DbSession, household_id: int, p: Principal = Cards,
                 reason: Text = "") -> Response:
    with form_errors("store/household.html", lambda s: _household_ctx(
            s, p, household_id, _key(request), card_form={"action": "reissue", "reason": reason})):
        card = cards.reissue(session, p.actor(), household_id, reason)
    return redirect(f"/households/{household_id}/store", request,
                    f"已补办积分卡（第 {card.version} 版），旧卡从现在起不能使用：请打印新卡交给农户")
