"""The counter (柜台兑换), receipts, a redemption's page and its void.

Made for a cheap PC or phone with a USB scanner: the cursor waits in the scan field; a scanned card (or a typed
household number or name) shows the household, its balance and what expires soon; the catalog is the cart (a
quantity per item, so the plain form works without script; counter.js adds barcode scanning, +/- buttons and the
running total); confirming redeems once (the form's one-time key) and shows the receipt, ready to print on a 58 mm or
80 mm thermal printer or A4.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize, register_scope_resolver
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import format_local
from app.core.masking import mask_name
from app.core.scope import Scope, ScopeFilter
from app.deps import DbSession
from app.errors import AppError, FormRejected, NotFound, ValidationFailed, form_errors
from app.households.service import households as hh
from app.ledger import service as ledger
from app.store.service import cards, counter, stock, stores
from app.web.templates import redirect, render

router = APIRouter(include_in_schema=False)
Counter = Depends(authorize(Perm.LEDGER_SPEND))
View = Depends(authorize(Perm.STORE_VIEW))
Manage = Depends(authorize(Perm.STORE_MANAGE))
Text = Annotated[str, Form(max_length=300)]
PAPERS = {"58": "58 mm", "80": "80 mm", "a4": "A4"}


def scope_of_redemption(session: Any, redemption_id: int) -> Scope | None:
    try:
        r = counter.get(session, redemption_id)
    except NotFound:
        return None
    return stores.scope_of_store(session, r.store_id)


register_scope_resolver("redemption_id", scope_of_redemption)


def _key(request: Request) -> bytes:
    return cards.card_key(request.app.state.settings.secret_key)


def _household_panel(session: DbSession, store_id: int, household_id: int, *, scanned: cards.Scanned | None,
                     payload: str = "") -> dict[str, Any]:
    store = stores.get_store(session, store_id)
    served = stores.served_villages(session, store_id)
    h = counter.check_served(session, store, hh.get_household(session, household_id), served,
                             by_card=scanned is not None)
    today = counter.today()
    return {"h": h, "village_name": stores.village_names(session, [h.village_id]).get(h.village_id, ""),
            "balance": ledger.balance(session, household_id), "expiring": ledger.expiring(session, household_id)[:3],
            "scanned": scanned, "payload": payload,
            "spent_today": counter.spent_today(session, store_id, household_id, today),
            "card": scanned.card if scanned else cards.card_of(session, household_id),
            "form_key": "cart-" + secrets.token_urlsafe(18)}


def _ctx(session: DbSession, p: Principal, store_id: int, *, panel: dict[str, Any] | None = None,
         candidates: list[Any] | None = None, code: str = "", quantities: dict[int, int] | None = None,
         identity_note: str = "") -> dict[str, Any]:
    store = stores.get_store(session, store_id)
    served = stores.served_villages(session, store_id)
    items = counter.items_for(session, store_id)
    return {"store": store, "villages": stores.village_names(session, list(served)), "items": items,
            "categories": sorted({i.category for i in items}, key=lambda c: [*stock.CATEGORIES, c].index(c)),
            "panel": panel, "candidates": candidates, "code": code, "quantities": quantities or {},
            "identity_note": identity_note, "today": counter.recent(session, store_id, day=counter.today(), limit=12),
            "format_local": format_local, "yuan": stock.yuan, "nav_active": "/stores"}


@router.get("/stores/{store_id}/counter")
def counter_page(request: Request, session: DbSession, store_id: int, p: Principal = Counter,
                 household_id: Annotated[int | None, Query(ge=1, le=2**31)] = None) -> Response:
    panel = None
    error = None
    if household_id is not None:
        try:
            panel = _household_panel(session, store_id, household_id, scanned=None)
        except AppError as e:
            error = e.message
    return render(request, "store/counter.html", {**_ctx(session, p, store_id, panel=panel), "error": error})


@router.post("/stores/{store_id}/counter/scan")
def counter_scan(request: Request, session: DbSession, store_id: int, p: Principal = Counter,
                 code: Text = "") -> Response:
    """A card's payload shows its household; anything else is looked up as a household number or name among the
    villages the store serves (one exact number: that household; otherwise a list to pick from)."""
    raw = code.strip()
    with form_errors("store/counter.html", lambda s: _ctx(s, p, store_id, code=raw)):
        if not raw:
            raise ValidationFailed("请扫积分卡，或输入户号、户主姓名")
        if cards.looks_like_card(raw):
            scanned = cards.read(session, p.actor(), _key(request), raw, store_id=store_id)
            panel = _household_panel(session, store_id, scanned.household.id, scanned=scanned,
                                     payload=cards.normalise(raw))
            return render(request, "store/counter.html", _ctx(session, p, store_id, panel=panel))
        served = stores.served_villages(session, store_id)
        found = hh.search(session, ScopeFilter(village_ids=frozenset(served)), q=raw, status="active", limit=30,
                          id_scope=p.filter(Perm.HOUSEHOLD_FULL)).rows  # no guessing ID numbers at the counter
        exact = [h for h in found if h.number == raw]
        if len(exact) == 1 or len(found) == 1:
            one = exact[0] if len(exact) == 1 else found[0]
            panel = _household_panel(session, store_id, one.id, scanned=None)
            return render(request, "store/counter.html", _ctx(session, p, store_id, panel=panel, code=raw))
        if not found:
            raise ValidationFailed(f"没有找到“{raw[:30]}”：请核对户号或姓名，或重新扫卡", code="not_found")
    names = stores.village_names(session, list(served))
    return render(request, "store/counter.html",
                  _ctx(session, p, store_id, candidates=[(h, names.get(h.village_id, "")) for h in found], code=raw))


def _cart(item: list[str], qty: list[str], price: list[str]) -> tuple[list[counter.Line], dict[int, int], int | None]:
    """The cart the form posted: one (item, quantity, price shown) per catalog row; empty or 0 quantities skipped.
    Returns the lines, the quantities as typed (to show them again) and the total the page showed (None when the
    page sent no prices)."""
    if len(item) != len(qty) or (price and len(price) != len(item)):
        raise ValidationFailed("购物车内容不完整，请刷新页面后重新选择")
    lines: list[counter.Line] = []
    shown: dict[int, int] = {}
    expected = 0
    for n, (i, q) in enumerate(zip(item, qty, strict=True)):
        q = unicodedata.normalize("NFKC", q).strip()
        if not q or q == "0":
            continue
        if not re.fullmatch(r"[0-9]{1,10}", i.strip()):
            raise ValidationFailed("购物车里有无法识别的商品，请刷新页面后重新选择", code="unknown_item")
        if not re.fullmatch(r"-?[0-9]{1,6}", q):
            raise ValidationFailed(f"数量“{q[:10]}”不是整数，请重新输入")
        item_id, count = int(i), int(q)
        shown[item_id] = count
        lines.append(counter.Line(item_id, count))
        if price:
            if not re.fullmatch(r"[0-9]{1,9}", price[n].strip()):
                raise ValidationFailed("购物车内容不完整，请刷新页面后重新选择")
            expected += int(price[n]) * count
    return lines, shown, (expected if price else None)


@router.post("/stores/{store_id}/counter/redeem")
def counter_redeem(request: Request, session: DbSession, store_id: int, p: Principal = Counter,
                   household_id: Annotated[int, Form(ge=1, le=2**31)] = 0, card: Text = "", identity_note: Text = "",
                   form_key: Text = "", item: Annotated[list[str] | None, Form(max_length=200)] = None,
                   qty: Annotated[list[str] | None, Form(max_length=200)] = None,
                   price: Annotated[list[str] | None, Form(max_length=200)] = None) -> Response:
    shown: dict[int, int] = {}
    scanned: cards.Scanned | None = None
    try:
        lines, shown, expected = _cart(item or [], qty or [], price or [])
        scanned = cards.read(session, p.actor(), _key(request), card, store_id=store_id) if card.strip() else None
        done = counter.redeem(session, p.actor(), store_id=store_id, household_id=household_id, lines=lines,
                              scanned=scanned, identity_note=identity_note, idempotency_key=form_key or None,
                              expected_points=expected)
    except AppError as e:
        card_ok = bool(card.strip()) and e.code not in ("card_revoked", "card_forged", "card_unreadable")

        def again(s: Any) -> dict[str, Any]:
            try:
                panel = _household_panel(s, store_id, household_id, scanned=None, payload="")
                panel["form_key"] = form_key or panel["form_key"]
                if card_ok:
                    panel["payload"] = card.strip()
                    panel["scanned"] = True
            except AppError:
                panel = None
            return _ctx(s, p, store_id, panel=panel, quantities=shown, identity_note=identity_note)
        raise FormRejected(e, "store/counter.html", again) from e
    r = done.redemption
    if not done.replayed:
        message = f"已兑换 {r.points} 分，余额 {done.balance_after} 分"
    elif r.status == "voided":
        message = "这份购物车已经兑换过，并且后来已作废（没有重复扣分）：请不要再交付商品，如需兑换请重新扫码"
    else:
        message = "这份购物车已经兑换过了（没有重复扣分），这是当时的小票"
    return redirect(f"/redemptions/{r.id}/receipt?from=counter", request, message)


def _redemption_ctx(session: DbSession, p: Principal, redemption_id: int) -> dict[str, Any]:
    r = counter.get(session, redemption_id)
    store = stores.get_store(session, r.store_id)
    h = hh.get_household(session, r.household_id)
    rid = redemption_id
    scope = stores.scope_of_store(session, r.store_id) or Scope()
    same_day = r.day == counter.today()
    return {"r": r, "store": store, "h": h, "lines": counter.lines_of(session, rid),
            "village_name": stores.village_names(session, [h.village_id]).get(h.village_id, ""),
            "movements": counter.movements_of(session, rid), "balance": ledger.balance(session, r.household_id),
            "kind_labels": stock.KIND_LABELS, "format_local": format_local, "yuan": stock.yuan,
            "can_void_today": same_day and p.covers(Perm.LEDGER_SPEND, scope),
            "can_void_late": p.covers(Perm.STORE_MANAGE, scope), "same_day": same_day,
            "can_counter": p.covers(Perm.LEDGER_SPEND, scope), "nav_active": "/stores"}


@router.get("/redemptions/{redemption_id}/receipt")
def receipt(request: Request, session: DbSession, redemption_id: int, p: Principal = View,
            paper: Annotated[str, Query(pattern="^(58|80|a4)$")] = "58",
            from_: Annotated[str, Query(alias="from", max_length=20)] = "") -> Response:
    ctx = _redemption_ctx(session, p, redemption_id)
    return render(request, "store/receipt.html", {**ctx, "paper": paper, "papers": PAPERS,
                                                  "from_counter": from_ == "counter",
                                                  "masked": mask_head(ctx["h"].head_name)})


def mask_head(name: str) -> str:
    """A receipt leaves the shop in the household's hand, and sometimes on the floor: the head's name is masked."""
    return mask_name(name or "")


@router.get("/redemptions/{redemption_id}")
def redemption_page(request: Request, session: DbSession, redemption_id: int, p: Principal = View) -> Response:
    return render(request, "store/redemption.html", _redemption_ctx(session, p, redemption_id))


@router.post("/redemptions/{redemption_id}/void")
def void_today(request: Request, session: DbSession, redemption_id: int, p: Principal = Counter,
               reason: Text = "") -> Response:
    """At the counter, the same day (the household brought the goods back, or the clerk picked the wrong item)."""
    with form_errors("store/redemption.html", lambda s: _redemption_ctx(s, p, redemption_id)):
        r = counter.void(session, p.actor(), redemption_id, reason=reason, any_day=False)
    return redirect(f"/redemptions/{r.id}", request, f"已作废：退回 {r.points} 分，商品已回到库存")


@router.post("/redemptions/{redemption_id}/void-late")
def void_late(request: Request, session: DbSession, redemption_id: int, p: Principal = Manage,
              reason: Text = "") -> Response:
    """After the day: the village clerk, with the reason."""
    with form_errors("store/redemption.html", lambda s: _redemption_ctx(s, p, redemption_id)):
        r = counter.void(session, p.actor(), redemption_id, reason=reason, any_day=True)
    return redirect(f"/redemptions/{r.id}", request, f"已作废：退回 {r.points} 分，商品已回到库存")

