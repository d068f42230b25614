"""The catalog and the stock: items, and every movement in and out.

An item's `stock` and `stock_value_fen` change only here, always together with a `stock_movements` row, under a lock
on the item rows (taken in id order, so two writers never wait on each other crosswise). Value leaves at the moving
average cost: the last unit out takes whatever value is left, so an empty shelf is worth exactly 0.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import utcnow
from app.core.context import Actor
from app.core.files import image_type
from app.errors import NotFound, ValidationFailed, get_or_not_found
from app.org.models import Store, Village
from app.store.models import Fund, Item, StockMovement

MAX_STOCK_QTY = 100_000  # one movement in; more than this is a typing error
MAX_FEN = 100_000_000_00  # one hundred million yuan
KIND_LABELS = {"purchase": "采购入库", "donation": "捐赠入库", "redemption": "兑换出库", "void": "作废退回",
               "stocktake": "盘点调整", "transfer_out": "调出", "transfer_in": "调入"}
CATEGORIES = ["粮油", "调味", "日用品", "洗化", "纺织", "文具", "其他"]
PHOTO_TYPES = {"image/jpeg", "image/png", "image/webp"}
MAX_PHOTO_BYTES = 2 * 1024 * 1024


def is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def lock_items(session: Session, item_ids: list[int]) -> dict[int, Item]:
    """The items, locked for the rest of the transaction (PostgreSQL; SQLite's writer is alone already), fresh."""
    if not item_ids:
        return {}
    stmt = select(Item).where(Item.id.in_(sorted(set(item_ids)))).order_by(Item.id)
    if is_pg(session):
        stmt = stmt.with_for_update()
    return {i.id: i for i in session.execute(stmt.execution_options(populate_existing=True)).scalars()}


def value_out(item: Item, quantity: int) -> int:
    """What `quantity` units leaving take of the stock's value (moving average; the last unit takes the rest)."""
    if quantity >= item.stock:
        return item.stock_value_fen
    return item.stock_value_fen * quantity // item.stock


def apply(session: Session, item: Item, *, kind: str, quantity: int, value_fen: int, actor: Actor,
          at: datetime | None = None, **extra: object) -> StockMovement:
    """One movement of a locked item: the kept figures and the movement row, together. Never below zero."""
    stock, value = item.stock + quantity, item.stock_value_fen + value_fen
    if stock < 0:
        raise ValidationFailed(f"库存不足：{item.name} 只剩 {item.stock} {item.unit}", code="stock_short",
                               details={"item_id": item.id, "stock": item.stock})
    if stock == 0 or value < 0:  # an empty shelf is worth nothing; value never goes below zero
        value = 0
    now = at or utcnow()
    moved = value - item.stock_value_fen
    item.stock, item.stock_value_fen, item.updated_at = stock, value, now
    m = StockMovement(store_id=item.store_id, item_id=item.id, kind=kind, quantity=quantity,
                      value_fen=moved, stock_after=stock, actor=actor.name[:80], occurred_at=now, **extra)
    session.add(m)
    return m


# ---- the catalog -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ItemInput:
    name: str
    unit: str
    category: str = "日用品"
    points: int = 0
    cost_fen: int = 0
    barcode: str | None = None
    low_stock: int = 5
    active: bool = True


def _clean(data: ItemInput) -> ItemInput:
    name, unit = (data.name or "").strip(), (data.unit or "").strip()
    if not name or len(name) > 40:
        raise ValidationFailed("请填写商品名称（不超过 40 个字），例如：金龙鱼食用油 5L", details={"field": "name"})
    if not unit or len(unit) > 8:
        raise ValidationFailed("请填写单位（不超过 8 个字），例如：桶、袋、瓶", details={"field": "unit"})
    if type(data.points) is not int or not 1 <= data.points <= 100_000:
        raise ValidationFailed("兑换积分须为 1 到 100000 之间的整数", details={"field": "points"})
    if type(data.cost_fen) is not int or not 0 <= data.cost_fen <= MAX_FEN:
        raise ValidationFailed("进价须为不小于 0 的金额（元，最多两位小数）", details={"field": "cost"})
    if type(data.low_stock) is not int or not 0 <= data.low_stock <= MAX_STOCK_QTY:
        raise ValidationFailed("库存预警数须为不小于 0 的整数", details={"field": "low_stock"})
    category = (data.category or "").strip() or "其他"
    if len(category) > 12:
        raise ValidationFailed("分类不超过 12 个字", details={"field": "category"})
    barcode = (data.barcode or "").strip().upper() or None
    if barcode is not None and (len(barcode) > 32 or not barcode.isascii() or not barcode.replace("-", "").isalnum()):
        raise ValidationFailed("条码只能是字母和数字（不超过 32 位），请用扫码枪扫商品包装上的条码",
                               details={"field": "barcode"})
    return ItemInput(name, unit, category, data.points, data.cost_fen, barcode, data.low_stock, data.active)


def _barcode_free(session: Session, store_id: int, barcode: str | None, item_id: int | None = None) -> None:
    if barcode is None:
        return
    other = session.execute(select(Item.id, Item.name).where(Item.store_id == store_id, Item.barcode == barcode)).first()
    if other is not None and other.id != item_id:
        raise ValidationFailed(f"条码 {barcode} 已用于本店的“{other.name}”", details={"field": "barcode"})


def create_item(session: Session, actor: Actor, store_id: int, data: ItemInput) -> Item:
    data = _clean(data)
    get_or_not_found(session, Store, store_id, "没有这个超市")
    _barcode_free(session, store_id, data.barcode)
    item = Item(store_id=store_id, name=data.name, unit=data.unit, category=data.category, points=data.points,
                cost_fen=data.cost_fen, barcode=data.barcode, low_stock=data.low_stock, active=data.active)
    session.add(item)
    session.flush()
    audit.record(session, actor, "store.item.create", object_type="store_item", object_id=item.id,
                 after={"store_id": store_id, "name": item.name, "points": item.points})
    return item


def update_item(session: Session, actor: Actor, item_id: int, data: ItemInput) -> Item:
    data = _clean(data)
    item = get_item(session, item_id)
    _barcode_free(session, item.store_id, data.barcode, item.id)
    before = {"name": item.name, "unit": item.unit, "points": item.points, "cost_fen": item.cost_fen,
              "active": item.active, "barcode": item.barcode, "category": item.category, "low_stock": item.low_stock}
    item.name, item.unit, item.category, item.points = data.name, data.unit, data.category, data.points
    item.cost_fen, item.barcode, item.low_stock, item.active = data.cost_fen, data.barcode, data.low_stock, data.active
    item.updated_at = utcnow()
    session.flush()
    after = {"name": item.name, "unit": item.unit, "points": item.points, "cost_fen": item.cost_fen,
             "active": item.active, "barcode": item.barcode, "category": item.category, "low_stock": item.low_stock}
    changed = {k: v for k, v in after.items() if before[k] != v}
    if changed:
        audit.record(session, actor, "store.item.update", object_type="store_item", object_id=item.id,
                     before={k: before[k] for k in changed}, after=changed)
    return item


def set_photo(session: Session, actor: Actor, item_id: int, content: bytes, content_type: str) -> Item:
    """The photo's type is read from its first bytes, never taken from the browser's Content-Type (content_type is
    only a hint, unused): a page or a script sent as "image/png" is refused, and the stored type is the true one."""
    if not content or len(content) > MAX_PHOTO_BYTES:
        raise ValidationFailed("照片不能为空，也不能超过 2 MB：请用手机拍照后选“压缩”或截图再上传",
                               details={"field": "photo"})
    found = photo_type(content)
    if found is None:
        raise ValidationFailed("照片须为 JPG、PNG 或 WebP 图片：这个文件的内容不是（可能是改了扩展名的其他文件）。"
                               "请用手机拍照或截图，保存为 JPG 或 PNG 后再上传", details={"field": "photo"})
    item = get_item(session, item_id)
    item.photo, item.photo_type, item.updated_at = content, found, utcnow()
    session.flush()
    audit.record(session, actor, "store.item.photo", object_type="store_item", object_id=item.id,
                 after={"bytes": len(content)})
    return item


def photo_type(content: bytes) -> str | None:
    """The image type the bytes themselves say (JPEG, PNG or WebP magic numbers), or None."""
    return image_type(content)


def get_item(session: Session, item_id: int) -> Item:
    item = get_or_not_found(session, Item, item_id, "没有这个商品")
    return item


def items(session: Session, store_id: int, *, active_only: bool = False) -> list[Item]:
    stmt = select(Item).where(Item.store_id == store_id)
    if active_only:
        stmt = stmt.where(Item.active.is_(True))
    return list(session.execute(stmt.order_by(Item.category, Item.points, Item.id)).scalars())


def low_stock(session: Session, store_ids: list[int]) -> list[Item]:
    if not store_ids:
        return []
    return list(session.execute(
        select(Item).where(Item.store_id.in_(store_ids), Item.active.is_(True),
                           Item.stock <= Item.low_stock).order_by(Item.store_id, Item.stock, Item.name)).scalars())


def movements(session: Session, *, store_id: int, item_id: int | None = None, kind: str | None = None,
              limit: int = 200) -> list[StockMovement]:
    stmt = select(StockMovement).where(StockMovement.store_id == store_id)
    if item_id is not None:
        stmt = stmt.where(StockMovement.item_id == item_id)
    if kind:
        stmt = stmt.where(StockMovement.kind == kind)
    return list(session.execute(stmt.order_by(StockMovement.id.desc()).limit(limit)).scalars())


# ---- movements in and adjustments ------------------------------------------------------------------------------------

def _qty(quantity: object, *, allow_zero: bool = False) -> int:
    lo = 0 if allow_zero else 1
    if type(quantity) is not int or not lo <= quantity <= MAX_STOCK_QTY:
        raise ValidationFailed(f"数量须为 {lo} 到 {MAX_STOCK_QTY} 之间的整数", details={"field": "quantity"})
    return quantity


def _fen(amount: object, label: str, *, positive: bool = False) -> int:
    if type(amount) is not int or amount < (1 if positive else 0) or amount > MAX_FEN:
        need = "大于 0" if positive else "不小于 0"
        raise ValidationFailed(f"{label}须为{need}的金额（元，最多两位小数）", details={"field": label})
    return amount


def _locked(session: Session, item_id: int) -> Item:
    item = lock_items(session, [item_id]).get(item_id)
    if item is None:
        raise NotFound("没有这个商品")
    return item


def _reason(reason: str | None, example: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > 200:
        raise ValidationFailed(f"请写明原因（不超过 200 个字），例如：{example}", details={"field": "reason"})
    return reason


def purchase(session: Session, actor: Actor, item_id: int, *, quantity: int, cost_fen: int, fund_id: int,
             note: str | None = None, at: datetime | None = None) -> StockMovement:
    """Goods bought with money from a fund of the store's own village (a store that also serves other villages still
    buys with its village's money); the fund's money left must cover the cost (a conditional update, so two
    purchases never overdraw it together)."""
    quantity, cost_fen = _qty(quantity), _fen(cost_fen, "采购金额")
    fund = session.get(Fund, fund_id)
    store = session.get(Store, get_item(session, item_id).store_id)
    if fund is None or store is None or fund.village_id != store.village_id:
        raise ValidationFailed("请选择本超市所在村的一笔资金", details={"field": "fund_id"})
    if fund.form != "money":
        raise ValidationFailed("捐赠的物品不能用来付款：请选择一笔资金（县、乡镇、村拨款或捐款）",
                               details={"field": "fund_id"})
    item = _locked(session, item_id)
    if cost_fen:
        done = session.execute(update(Fund).where(Fund.id == fund_id, Fund.amount_fen - Fund.spent_fen >= cost_fen)
                               .values(spent_fen=Fund.spent_fen + cost_fen))
        if done.rowcount != 1:
            session.refresh(fund)
            left = fund.amount_fen - fund.spent_fen
            raise ValidationFailed(f"这笔资金只剩 {yuan(left)} 元，不够支付 {yuan(cost_fen)} 元：请分开入库或选择另一笔资金",
                                   code="fund_short", details={"field": "fund_id", "left_fen": left})
    m = apply(session, item, kind="purchase", quantity=quantity, value_fen=cost_fen, actor=actor, fund_id=fund_id,
              reason=(note or "").strip()[:200] or None, at=at)
    session.flush()
    audit.record(session, actor, "store.stock.purchase", object_type="store_item", object_id=item.id,
                 after={"quantity": quantity, "cost_fen": cost_fen, "fund_id": fund_id, "movement_id": m.id})
    return m


def donation_in(session: Session, actor: Actor, item_id: int, *, quantity: int, value_fen: int, donor: str,
                village_id: int, received_on: date, document_no: str | None = None,
                at: datetime | None = None) -> StockMovement:
    """Goods given: a funding record (a donation of goods, spent as it arrives) and the stock, together."""
    quantity, value_fen = _qty(quantity), _fen(value_fen, "估价", positive=True)
    donor = (donor or "").strip()
    if not donor or len(donor) > 60:
        raise ValidationFailed("请填写捐赠人或单位（不超过 60 个字）", details={"field": "donor"})
    item = _locked(session, item_id)
    fund = Fund(village_id=village_id, year=received_on.year, source="donation", form="goods", amount_fen=value_fen,
                spent_fen=value_fen, donor=donor, received_on=received_on, actor=actor.name[:80],
                document_no=(document_no or "").strip()[:60] or None, note=f"捐赠物品：{item.name} {quantity} {item.unit}")
    session.add(fund)
    session.flush()
    m = apply(session, item, kind="donation", quantity=quantity, value_fen=value_fen, actor=actor, fund_id=fund.id,
              donor=donor, at=at)
    session.flush()
    audit.record(session, actor, "store.stock.donation", object_type="store_item", object_id=item.id,
                 after={"quantity": quantity, "value_fen": value_fen, "donor": donor, "fund_id": fund.id})
    return m


def stocktake(session: Session, actor: Actor, item_id: int, *, counted: int, reason: str) -> StockMovement | None:
    """The shelf was counted: the difference becomes a movement with the reason (a gain enters at the usual cost,
    a loss leaves at the average cost). Nothing is written when the count agrees."""
    counted = _qty(counted, allow_zero=True)
    reason = _reason(reason, "月底盘点，破损 2 袋")
    item = _locked(session, item_id)
    diff = counted - item.stock
    if diff == 0:
        return None
    value = -value_out(item, -diff) if diff < 0 else diff * item.cost_fen
    m = apply(session, item, kind="stocktake", quantity=diff, value_fen=value, actor=actor, reason=reason)
    session.flush()
    audit.record(session, actor, "store.stock.take", object_type="store_item", object_id=item.id,
                 after={"counted": counted, "difference": diff, "reason": reason})
    return m


def transfer(session: Session, actor: Actor, item_id: int, *, to_store_id: int, quantity: int,
             reason: str) -> tuple[StockMovement, StockMovement]:
    """Goods moved to another store of the township: out of this item, into the same goods there (matched by name
    and unit, added to that store's catalog, inactive, if it has none)."""
    quantity = _qty(quantity)
    reason = _reason(reason, "邻村超市缺货，调拨 10 袋")
    source = get_item(session, item_id)
    target_store = session.get(Store, to_store_id)
    towns: dict[int, int] = dict(session.execute(
        select(Store.id, Village.township_id).join(Village, Village.id == Store.village_id)
        .where(Store.id.in_([source.store_id, to_store_id]))).all())
    # one answer for a store that does not exist, is closed, or is in another township: ids tell nothing
    if (target_store is None or to_store_id == source.store_id or not target_store.active
            or towns.get(source.store_id) != towns.get(to_store_id)):
        raise ValidationFailed("只能调拨给本乡镇另一家在用的超市，请从列表中选择", details={"field": "to_store_id"})
    twin = session.execute(select(Item).where(Item.store_id == to_store_id, Item.name == source.name,
                                              Item.unit == source.unit)).scalars().first()
    if twin is None:
        twin = Item(store_id=to_store_id, name=source.name, unit=source.unit, category=source.category,
                    points=source.points, cost_fen=source.cost_fen, low_stock=source.low_stock, active=False)
        session.add(twin)
        session.flush()
    locked = lock_items(session, [source.id, twin.id])
    src, dst = locked[source.id], locked[twin.id]
    value = value_out(src, quantity)
    out = apply(session, src, kind="transfer_out", quantity=-quantity, value_fen=-value, actor=actor, reason=reason)
    session.flush()
    into = apply(session, dst, kind="transfer_in", quantity=quantity, value_fen=value, actor=actor, reason=reason,
                 transfer_of=out.id)
    session.flush()
    audit.record(session, actor, "store.stock.transfer", object_type="store_item", object_id=src.id,
                 after={"to_store_id": to_store_id, "to_item_id": dst.id, "quantity": quantity, "value_fen": value})
    return out, into


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100:,}.{fen % 100:02d}"


def parse_yuan(text: str, label: str) -> int:
    """'12.5' -> 1250 fen. Exact (no float): at most two decimals."""
    raw = unicodedata.normalize("NFKC", text or "").strip().replace(",", "").replace("元", "").replace("¥", "")
    m = re.fullmatch(r"([0-9]{1,10})(?:\.([0-9]{0,2}))?", raw)
    if m is None:
        raise ValidationFailed(f"{label}须为金额，单位元，最多两位小数，例如 125.50", details={"field": label})
    return int(m.group(1)) * 100 + int(((m.group(2) or "") + "00")[:2])


def stock_totals(session: Session, store_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Per store: (units on hand, their value at cost)."""
    if not store_ids:
        return {}
    rows = session.execute(select(Item.store_id, func.sum(Item.stock), func.sum(Item.stock_value_fen))
                           .where(Item.store_id.in_(store_ids)).group_by(Item.store_id))
    return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}
