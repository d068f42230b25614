"""Redemption at the counter (兑换): one household, a cart of goods, points only.

One redemption is one database transaction: the household's row is locked first (so two counters serving the same
household take turns, and the daily limit and the idempotency key are checked under the lock), then the items in id
order, then the ledger posts the spend (which locks the household's points account and refuses an overdraft). The
stock movements and the redemption's lines go in the same transaction. Any refusal rolls all of it back.

An idempotency key (one per cart, made when the counter page shows the household) makes a double click or a retried
request return the first redemption again; the same key with a different cart is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import to_local, utcnow
from app.core.context import Actor
from app.errors import Conflict, NotFound, ValidationFailed, get_or_not_found
from app.households.models import Household
from app.ledger import service as ledger
from app.org.models import Store
from app.store.models import Item, Redemption, RedemptionLine, StockMovement
from app.store.service import stock
from app.store.service.cards import Scanned
from app.store.service.stores import served_villages

MAX_LINE_QTY = 99  # one line of one cart; more is a slip of the finger at the counter
MAX_LINES = 40


@dataclass(frozen=True)
class Line:
    item_id: int
    quantity: int


@dataclass(frozen=True)
class Redeemed:
    redemption: Redemption
    lines: list[RedemptionLine]
    balance_after: int
    replayed: bool


def today(at: datetime | None = None) -> date:
    return (to_local(at or utcnow()) or utcnow()).date()


def clean_cart(lines: Sequence[Line]) -> list[Line]:
    """Quantities checked and the same item merged, in the order first seen."""
    merged: dict[int, int] = {}
    for ln in lines:
        if type(ln.item_id) is not int or ln.item_id <= 0:
            raise ValidationFailed("购物车里有无法识别的商品，请重新选择", code="unknown_item")
        if type(ln.quantity) is not int or ln.quantity <= 0:
            raise ValidationFailed("数量须为正整数（至少 1 件）", details={"item_id": ln.item_id})
        merged[ln.item_id] = merged.get(ln.item_id, 0) + ln.quantity
        if merged[ln.item_id] > MAX_LINE_QTY:
            raise ValidationFailed(f"一次最多兑换同一商品 {MAX_LINE_QTY} 件，请核对数量",
                                   details={"item_id": ln.item_id})
    if not merged:
        raise ValidationFailed("购物车是空的：请扫商品条码或点选商品", code="empty_cart")
    if len(merged) > MAX_LINES:
        raise ValidationFailed(f"一次最多兑换 {MAX_LINES} 种商品，请分两次兑换")
    return [Line(i, q) for i, q in merged.items()]


def _request_hash(store_id: int, household_id: int, lines: list[Line]) -> str:
    body = {"store": store_id, "household": household_id, "lines": sorted([ln.item_id, ln.quantity] for ln in lines)}
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


def _replay(session: Session, store_id: int, key: str, digest: str) -> Redeemed | None:
    r = session.execute(select(Redemption).where(Redemption.store_id == store_id,
                                                 Redemption.idempotency_key == key)).scalar_one_or_none()
    if r is None:
        return None
    if r.request_hash != digest:
        raise Conflict("这个兑换单号已用于另一份购物车：请刷新柜台页面后重新扫码", code="idempotency_key_reused")
    return Redeemed(r, lines_of(session, r.id), r.balance_after, True)


def _lock_household(session: Session, household_id: int) -> Household | None:
    stmt = select(Household).where(Household.id == household_id)
    if stock.is_pg(session):
        stmt = stmt.with_for_update()
    return session.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()


def check_served(session: Session, store: Store, household: Household | None, served: tuple[int, ...], *,
                 by_card: bool = False) -> Household:
    """The household, if this store may serve it. Asked by id, a household of a village the store does not serve
    answers exactly like one that does not exist (404, the same words), so a clerk cannot learn from the answer
    where any household id lives. Asked by a genuine card (its MAC checked), the household is standing at the
    counter: it is told to go to its own village's store, without naming that village."""
    if household is None or (household.village_id not in served and not by_card):
        raise NotFound()
    if household.village_id not in served:
        raise ValidationFailed("此卡的农户不属于本超市服务的村，不能在这里兑换：请到该户本村的振风超市兑换",
                               code="not_served")
    if household.status != "active":
        raise ValidationFailed("该户已迁出或注销，不能再兑换积分；如有疑问请联系村文书", code="household_inactive")
    if not store.active:
        raise ValidationFailed("本超市已停用，不能兑换")
    return household


def spent_today(session: Session, store_id: int, household_id: int, day: date) -> int:
    total = session.execute(select(func.coalesce(func.sum(Redemption.points), 0)).where(
        Redemption.household_id == household_id, Redemption.store_id == store_id, Redemption.day == day,
        Redemption.status == "done")).scalar_one()
    return int(total)


def redeem(session: Session, actor: Actor, *, store_id: int, household_id: int, lines: Sequence[Line],
           scanned: Scanned | None = None, identity_note: str | None = None,
           idempotency_key: str | None = None, expected_points: int | None = None,
           at: datetime | None = None) -> Redeemed:
    """Points out of the household, goods out of the stock, both or neither. `expected_points`: the total the clerk
    and the household saw; if a price changed since, nothing is redeemed and they are told."""
    cart = clean_cart(lines)
    key = (idempotency_key or "").strip() or None
    if key is not None and len(key) > 80:
        raise ValidationFailed("兑换单号太长（最多 80 个字符）")
    if scanned is not None and scanned.household.id != household_id:
        raise ValidationFailed("扫到的卡不是这一户的：请重新扫码", code="card_mismatch")
    note = (identity_note or "").strip()
    if scanned is None and not note:
        raise ValidationFailed("没有刷卡时，请写明如何核对了身份，例如：户主本人，核对身份证", code="identity_unchecked",
                               details={"field": "identity_note"})
    if len(note) > 100:
        raise ValidationFailed("身份核对说明不超过 100 个字", details={"field": "identity_note"})
    served = served_villages(session, store_id)  # (raises NotFound for no such store) and loads the store
    store = session.get(Store, store_id)
    assert store is not None
    digest = _request_hash(store_id, household_id, cart)
    home = check_served(session, store, _lock_household(session, household_id), served, by_card=scanned is not None)
    if key is not None:
        again = _replay(session, store_id, key, digest)
        if again is not None:
            return again
    items = stock.lock_items(session, [ln.item_id for ln in cart])
    total = 0
    for ln in cart:
        item = items.get(ln.item_id)
        if item is None or item.store_id != store_id:
            raise ValidationFailed("购物车里有本店没有的商品：请重新扫码或点选", code="unknown_item",
                                   details={"item_id": ln.item_id})
        if not item.active:
            raise ValidationFailed(f"“{item.name}”已下架，不能兑换", code="inactive_item", details={"item_id": item.id})
        if item.stock < ln.quantity:
            raise ValidationFailed(f"库存不足：{item.name} 只剩 {item.stock} {item.unit}，请减少数量",
                                   code="stock_short", details={"item_id": item.id, "stock": item.stock})
        total += item.points * ln.quantity
    if expected_points is not None and expected_points != total:
        raise ValidationFailed(f"商品积分价格刚刚有变动：这些商品现在共需 {total} 分（页面上是 {expected_points} 分）。"
                               "请和农户核对后重新确认", code="price_changed",
                               details={"needed": total, "shown": expected_points})
    when = at or utcnow()
    day = today(when)
    if store.daily_limit is not None:
        before = spent_today(session, store_id, household_id, day)
        if before + total > store.daily_limit:
            left = max(store.daily_limit - before, 0)
            raise ValidationFailed(f"超过本超市每户每日兑换上限 {store.daily_limit} 分：该户今天已兑换 {before} 分，"
                                   f"本次最多还能兑换 {left} 分", code="daily_limit")
    words = "、".join(f"{items[ln.item_id].name} {ln.quantity} {items[ln.item_id].unit}" for ln in cart)
    try:  # the ledger refuses an overdraft under its own lock; the clerk hears it in the counter's words
        posted = ledger.spend(session, actor, household_id=household_id, store_id=store_id, points=total,
                              memo=f"兑换：{words}"[:200], reference=f"store:{store_id}", served_villages=served,
                              occurred_at=at)
    except ledger.InsufficientPoints as exc:
        balance = int((exc.details or {}).get("balance", 0))
        short = f"还差 {total - balance} 分。" if balance >= 0 else "积分为负，须先得到积分。"
        raise ValidationFailed(f"积分不足：本次需 {total} 分，该户余额 {balance} 分，{short}"
                               "积分只能全额兑换，不能补现金", code="insufficient_points",
                               details={"needed": total, "balance": balance}) from None
    assert posted.tx is not None
    values = {ln.item_id: stock.value_out(items[ln.item_id], ln.quantity) for ln in cart}  # at cost, before moving
    after = next(e.balance_after for e in posted.tx.entries if e.balance_after is not None)
    red = Redemption(store_id=store_id, household_id=household_id, village_id=home.village_id,
                     card_id=scanned.card.id if scanned else None,
                     card_version=scanned.card.version if scanned else None,
                     identified_by="card" if scanned else "manual", identity_note=note or None, points=total,
                     value_fen=sum(values.values()), balance_after=after, ledger_tx_id=posted.tx.id, day=day,
                     idempotency_key=key, request_hash=digest, actor=actor.name[:80], created_at=when)
    session.add(red)
    try:
        session.flush()
    except IntegrityError:  # the same key at this store from another household's cart, in the same instant
        raise Conflict("这个兑换单号已被使用：请刷新柜台页面后重新扫码", code="idempotency_key_reused") from None
    out: list[RedemptionLine] = []
    for ln in cart:
        item = items[ln.item_id]
        stock.apply(session, item, kind="redemption", quantity=-ln.quantity, value_fen=-values[ln.item_id],
                    actor=actor, at=when, redemption_id=red.id)
        out.append(RedemptionLine(redemption_id=red.id, item_id=item.id, name=item.name, unit=item.unit,
                                  quantity=ln.quantity, points_each=item.points, points=item.points * ln.quantity,
                                  value_fen=values[ln.item_id]))
    session.add_all(out)
    session.flush()
    return Redeemed(red, out, after, False)


def void(session: Session, actor: Actor, redemption_id: int, *, reason: str, any_day: bool,
         at: datetime | None = None) -> Redemption:
    """Undo a redemption: a ledger reversal gives the points back and the goods go back on the shelf at the value they
    left with. A store clerk may void the same day; later, only the village clerk (`any_day`)."""
    reason = (reason or "").strip()
    if not reason or len(reason) > 200:
        raise ValidationFailed("请写明作废原因（不超过 200 个字），例如：农户退回商品，包装破损", details={"field": "reason"})
    red = get_or_not_found(session, Redemption, redemption_id, "没有这笔兑换")
    _lock_household(session, red.household_id)
    session.refresh(red)
    if red.status == "voided":
        raise Conflict(f"这笔兑换已于 {to_local(red.voided_at):%Y-%m-%d %H:%M} 作废", code="already_voided")
    when = at or utcnow()
    if not any_day and red.day != today(when):
        raise ValidationFailed("超市只能作废当天的兑换；往日的兑换请村文书作废", code="void_too_late")
    lines = lines_of(session, redemption_id)
    items = stock.lock_items(session, [ln.item_id for ln in lines])
    back = ledger.reverse(session, actor, red.ledger_tx_id, reason=f"兑换作废：{reason}",
                          idempotency_key=f"void:redemption:{red.id}", occurred_at=at, voiding_redemption=True)
    assert back.tx is not None
    for ln in lines:
        stock.apply(session, items[ln.item_id], kind="void", quantity=ln.quantity, value_fen=ln.value_fen, actor=actor,
                    at=when, redemption_id=red.id, reason=reason)
    red.status, red.voided_at, red.voided_by = "voided", when, actor.name[:80]
    red.void_reason, red.void_tx_id = reason, back.tx.id
    session.flush()
    audit.record(session, actor, "store.redemption.void", object_type="redemption", object_id=red.id,
                 after={"reason": reason, "reversal_tx_id": back.tx.id, "points": red.points})
    return red


# ---- reading ---------------------------------------------------------------------------------------------------------

def get(session: Session, redemption_id: int) -> Redemption:
    r = get_or_not_found(session, Redemption, redemption_id, "没有这笔兑换")
    return r


def lines_of(session: Session, redemption_id: int) -> list[RedemptionLine]:
    return list(session.execute(select(RedemptionLine).where(RedemptionLine.redemption_id == redemption_id)
                                .order_by(RedemptionLine.id)).scalars())


def recent(session: Session, store_id: int, *, day: date | None = None, household_id: int | None = None,
           limit: int = 100) -> list[tuple[Redemption, Household]]:
    stmt = (select(Redemption, Household).join(Household, Household.id == Redemption.household_id)
            .where(Redemption.store_id == store_id))
    if day is not None:
        stmt = stmt.where(Redemption.day == day)
    if household_id is not None:
        stmt = stmt.where(Redemption.household_id == household_id)
    return [(r, h) for r, h in session.execute(stmt.order_by(Redemption.id.desc()).limit(limit))]


def of_household(session: Session, household_id: int, limit: int = 50) -> list[Redemption]:
    return list(session.execute(select(Redemption).where(Redemption.household_id == household_id)
                                .order_by(Redemption.id.desc()).limit(limit)).scalars())


def movements_of(session: Session, redemption_id: int) -> list[StockMovement]:
    return list(session.execute(select(StockMovement).where(StockMovement.redemption_id == redemption_id)
                                .order_by(StockMovement.id)).scalars())


def items_for(session: Session, store_id: int) -> list[Item]:
    return stock.items(session, store_id, active_only=True)
