"""Stores (which villages each serves, its settings), funding (资金) and the proof that the books agree.

A store belongs to its village and may serve other villages of the same township. Funding is recorded per village
and year with the document's number; purchases draw on money funds (app.store.service.stock). The finance summary and
`verify` read the three books side by side: points (the ledger), stock (movements) and money (funds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.clock import local_day_start_utc
from app.core.context import Actor
from app.core.scope import Scope, ScopeFilter
from app.errors import NotFound, ValidationFailed, get_or_not_found
from app.ledger import service as ledger
from app.org import service as org
from app.org.models import Store, StoreVillage, Village
from app.store.models import Fund, Item, Redemption, RedemptionLine, StockMovement

SOURCES = {"county": "县级拨款", "township": "乡镇拨款", "village": "村集体资金", "donation": "社会捐赠"}
MAX_DAILY_LIMIT = 1_000_000


# ---- stores ----------------------------------------------------------------------------------------------------------

def get_store(session: Session, store_id: int) -> Store:
    s = get_or_not_found(session, Store, store_id, "没有这个超市")
    return s


def served_villages(session: Session, store_id: int) -> tuple[int, ...]:
    """The store's own village first, then the others it serves (read once per transaction)."""
    facts = org.store_facts(session, store_id)
    if facts is None:
        raise NotFound("没有这个超市")
    return facts.served


def stores_serving(session: Session, village_id: int) -> list[Store]:
    """Every active store a village's households may use: its own and those that serve it too."""
    extra = select(StoreVillage.store_id).where(StoreVillage.village_id == village_id)
    return list(session.execute(select(Store).where(Store.active.is_(True),
                                                    (Store.village_id == village_id) | Store.id.in_(extra))
                                .order_by(Store.id)).scalars())


def scope_of_store(session: Session, store_id: int) -> Scope | None:
    return org.scope_of_store(session, store_id)


def visible_stores(session: Session, flt: ScopeFilter) -> list[Store]:
    stmt = select(Store).order_by(Store.village_id, Store.id)
    if not flt.everything:
        extra = select(StoreVillage.store_id).where(StoreVillage.village_id.in_(flt.village_ids))
        stmt = stmt.join(Village, Village.id == Store.village_id).where(
            Store.id.in_(flt.store_ids) | Store.village_id.in_(flt.village_ids) | Store.id.in_(extra)
            | Village.township_id.in_(flt.township_ids))
    return list(session.execute(stmt).scalars())


def village_names(session: Session, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(Village.id, Village.name).where(Village.id.in_(list(ids)))).all())


def update_settings(session: Session, actor: Actor, store_id: int, *, daily_limit: int | None) -> Store:
    """The store's own settings (the village clerk's): the daily limit of points per household."""
    store = get_store(session, store_id)
    if daily_limit is not None and (type(daily_limit) is not int or not 1 <= daily_limit <= MAX_DAILY_LIMIT):
        raise ValidationFailed("每户每日兑换上限须为 1 到 1000000 之间的整数；不限请留空", details={"field": "daily_limit"})
    before = store.daily_limit
    store.daily_limit = daily_limit
    session.flush()
    if before != daily_limit:
        audit.record(session, actor, "store.settings", object_type="store", object_id=store_id,
                     before={"daily_limit": before}, after={"daily_limit": daily_limit})
    return store


def set_served_villages(session: Session, actor: Actor, store_id: int, other_villages: Sequence[int]) -> Store:
    """Which other villages of its township the store also serves. The county's decision, not the store's village's:
    it lets the store's clerk see those villages' rosters and points, and their households spend their points here
    (the goods are bought with the store's own village's funds)."""
    store = get_store(session, store_id)
    home = session.get(Village, store.village_id)
    wanted = sorted({v for v in other_villages if v != store.village_id})
    if wanted:
        found: dict[int, int] = dict(session.execute(select(Village.id, Village.township_id)
                                                     .where(Village.id.in_(wanted))).all())
        if any(found.get(v) != (home.township_id if home else None) for v in wanted):
            raise ValidationFailed("超市只能服务本乡镇的村，请重新选择", details={"field": "villages"})
    before = list(served_villages(session, store_id)[1:])
    org.forget_store(session, store_id)
    session.execute(delete(StoreVillage).where(StoreVillage.store_id == store_id))
    session.add_all([StoreVillage(store_id=store_id, village_id=v) for v in wanted])
    session.flush()
    if before != wanted:
        audit.record(session, actor, "store.villages", object_type="store", object_id=store_id,
                     before={"villages": before}, after={"villages": wanted})
    return store


# ---- funding ---------------------------------------------------------------------------------------------------------

def record_fund(session: Session, actor: Actor, *, village_id: int, source: str, amount_fen: int, received_on: date,
                document_no: str | None = None, donor: str | None = None, note: str | None = None) -> Fund:
    """Money received for the village's supermarket (goods given are recorded with the stock: app.store.service.stock)."""
    if source not in SOURCES:
        raise ValidationFailed("请选择资金来源：县级拨款、乡镇拨款、村集体资金或社会捐赠", details={"field": "source"})
    if type(amount_fen) is not int or not 0 < amount_fen <= 100_000_000_00:
        raise ValidationFailed("金额须大于 0（元，最多两位小数）", details={"field": "amount"})
    get_or_not_found(session, Village, village_id, "没有这个村")
    if not 2000 <= received_on.year <= 2100:
        raise ValidationFailed("到账日期不对：请填写实际到账的日期，例如 2026-03-15", details={"field": "received_on"})
    document_no = (document_no or "").strip() or None
    donor = (donor or "").strip() or None
    if source == "donation" and not donor:
        raise ValidationFailed("社会捐赠请填写捐赠人或单位", details={"field": "donor"})
    if source != "donation" and not document_no:
        raise ValidationFailed("拨款请填写拨款文件的文号，例如：振财〔2026〕12号", details={"field": "document_no"})
    if (document_no and len(document_no) > 60) or (donor and len(donor) > 60) or len(note or "") > 200:
        raise ValidationFailed("文号和捐赠人不超过 60 个字，备注不超过 200 个字")
    fund = Fund(village_id=village_id, year=received_on.year, source=source, form="money", amount_fen=amount_fen,
                document_no=document_no, donor=donor, received_on=received_on, note=(note or "").strip() or None,
                actor=actor.name[:80])
    session.add(fund)
    session.flush()
    audit.record(session, actor, "store.fund.record", object_type="fund", object_id=fund.id,
                 after={"village_id": village_id, "source": source, "amount_fen": amount_fen,
                        "document_no": document_no, "donor": donor})
    return fund


def funds(session: Session, village_ids: Sequence[int], *, year: int | None = None,
          money_only: bool = False) -> list[Fund]:
    if not village_ids:
        return []
    stmt = select(Fund).where(Fund.village_id.in_(list(village_ids)))
    if year is not None:
        stmt = stmt.where(Fund.year == year)
    if money_only:
        stmt = stmt.where(Fund.form == "money")
    return list(session.execute(stmt.order_by(Fund.received_on.desc(), Fund.id.desc())).scalars())


def scope_of_fund(session: Session, fund_id: int) -> Scope | None:
    f = session.get(Fund, fund_id)
    if f is None:
        return None
    v = session.get(Village, f.village_id)
    return Scope(township_id=v.township_id if v else None, village_id=f.village_id)


@dataclass
class Finance:
    village_id: int
    year: int
    money_in: dict[str, int] = field(default_factory=dict)  # by source, money only
    goods_donated_fen: int = 0
    purchased_fen: int = 0  # money spent on goods (all years' funds drawn on this year)
    redeemed_fen: int = 0  # goods out through redemptions, at cost, less voids
    redeemed_points: int = 0
    money_left_fen: int = 0  # every money fund of the village, all years: received less spent
    stock_units: int = 0
    stock_value_fen: int = 0  # the village's stores' shelves at cost
    outstanding_points: int = 0
    point_value_fen: int = 0
    stores: list[Store] = field(default_factory=list)

    @property
    def money_in_total(self) -> int:
        return sum(self.money_in.values())

    @property
    def liability_fen(self) -> int:
        return self.outstanding_points * self.point_value_fen

    @property
    def cover_fen(self) -> int:
        """Money left plus goods on the shelf, less what the households' points are worth: below zero, the village
        owes more goods than it can buy."""
        return self.money_left_fen + self.stock_value_fen - self.liability_fen


def finance(session: Session, village_id: int, year: int, *, point_value_fen: int) -> Finance:
    """The village's supermarket books for a year. Stores are counted by their own village (a store serving several
    villages shows under its home village); the points liability is the village's households'."""
    f = Finance(village_id, year, point_value_fen=point_value_fen)
    for source, total in session.execute(select(Fund.source, func.sum(Fund.amount_fen)).where(
            Fund.village_id == village_id, Fund.year == year, Fund.form == "money").group_by(Fund.source)):
        f.money_in[source] = int(total)
    f.goods_donated_fen = int(session.execute(select(func.coalesce(func.sum(Fund.amount_fen), 0)).where(
        Fund.village_id == village_id, Fund.year == year, Fund.form == "goods")).scalar_one())
    f.money_left_fen = int(session.execute(select(func.coalesce(func.sum(Fund.amount_fen - Fund.spent_fen), 0))
                                           .where(Fund.village_id == village_id, Fund.form == "money")).scalar_one())
    f.stores = list(session.execute(select(Store).where(Store.village_id == village_id).order_by(Store.id)).scalars())
    store_ids = [s.id for s in f.stores]
    if store_ids:
        lo, hi = date(year, 1, 1), date(year, 12, 31)
        start, end = local_day_start_utc(lo), local_day_start_utc(date(year + 1, 1, 1))
        f.purchased_fen = int(session.execute(select(func.coalesce(func.sum(StockMovement.value_fen), 0)).where(
            StockMovement.store_id.in_(store_ids), StockMovement.kind == "purchase",
            StockMovement.occurred_at >= start, StockMovement.occurred_at < end)).scalar_one())
        f.redeemed_fen = -int(session.execute(select(func.coalesce(func.sum(StockMovement.value_fen), 0)).where(
            StockMovement.store_id.in_(store_ids), StockMovement.kind.in_(["redemption", "void"]),
            StockMovement.occurred_at >= start, StockMovement.occurred_at < end)).scalar_one())
        f.redeemed_points = int(session.execute(select(func.coalesce(func.sum(Redemption.points), 0)).where(
            Redemption.store_id.in_(store_ids), Redemption.status == "done", Redemption.day >= lo,
            Redemption.day <= hi)).scalar_one())
        units, value = session.execute(select(func.coalesce(func.sum(Item.stock), 0),
                                              func.coalesce(func.sum(Item.stock_value_fen), 0))
                                       .where(Item.store_id.in_(store_ids))).one()
        f.stock_units, f.stock_value_fen = int(units), int(value)
    f.outstanding_points = ledger.village_totals(session, [village_id])[village_id].outstanding
    return f


# ---- proof -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    kind: str
    message: str


def verify(session: Session) -> tuple[list[Problem], dict[str, int]]:
    """Prove the three books agree: each item's stock and value = the sums of its movements, and no movement left
    the shelf below zero; each fund's spent money = its purchases; each redemption has its ledger transaction (a
    redemption of the same points into the same store), its stock movements (one per line, the line's quantity) and,
    if voided, the reversal of that transaction and the goods back; every redemption in the ledger has its
    redemption. Returns the problems and what was checked."""
    out: list[Problem] = []
    sums = dict((r[0], (int(r[1]), int(r[2]), int(r[3]))) for r in session.execute(
        select(StockMovement.item_id, func.sum(StockMovement.quantity), func.sum(StockMovement.value_fen),
               func.count()).group_by(StockMovement.item_id)))
    items = session.execute(select(Item.id, Item.name, Item.stock, Item.stock_value_fen)).all()
    for it in items:
        q, v, _ = sums.get(it.id, (0, 0, 0))
        if q != it.stock or v != it.stock_value_fen:
            out.append(Problem("stock_mismatch", f"商品 {it.id}（{it.name}）记载库存 {it.stock}、价值 {it.stock_value_fen} 分，"
                                                 f"而出入库合计为 {q}、{v} 分"))
    for m in session.execute(select(StockMovement.id, StockMovement.item_id).where(StockMovement.stock_after < 0)):
        out.append(Problem("negative_stock", f"出入库记录 {m.id} 之后商品 {m.item_id} 的库存小于零"))
    for m in session.execute(select(StockMovement.id, StockMovement.store_id, Item.store_id.label("item_store"))
                             .join(Item, Item.id == StockMovement.item_id)
                             .where(StockMovement.store_id != Item.store_id).limit(50)):
        out.append(Problem("store_mismatch", f"出入库记录 {m.id} 记在超市 {m.store_id}，而商品属于超市 {m.item_store}"))
    for m in session.execute(select(StockMovement.id, Fund.form, Fund.village_id, Store.village_id.label("home"))
                             .join(Fund, Fund.id == StockMovement.fund_id)
                             .join(Store, Store.id == StockMovement.store_id)
                             .where(StockMovement.kind == "purchase",
                                    (Fund.form != "money") | (Fund.village_id != Store.village_id)).limit(50)):
        out.append(Problem("fund_mismatch", f"采购 {m.id} 用的资金不是本超市所在村的资金（{m.form}，村 {m.village_id}）"))
    running = (select(StockMovement.id, StockMovement.item_id, StockMovement.stock_after,
                      func.sum(StockMovement.quantity).over(partition_by=StockMovement.item_id,
                                                            order_by=StockMovement.id).label("run"))
               .subquery())
    for m in session.execute(select(running).where(running.c.run != running.c.stock_after).limit(50)):
        out.append(Problem("stock_chain", f"出入库记录 {m.id}：记载结存 {m.stock_after}，按顺序累计应为 {m.run}"))
    drawn = dict((r[0], int(r[1])) for r in session.execute(
        select(StockMovement.fund_id, func.sum(StockMovement.value_fen)).where(
            StockMovement.kind == "purchase", StockMovement.fund_id.is_not(None)).group_by(StockMovement.fund_id)))
    fund_rows = session.execute(select(Fund.id, Fund.form, Fund.amount_fen, Fund.spent_fen)).all()
    for f in fund_rows:
        expect = f.amount_fen if f.form == "goods" else drawn.get(f.id, 0)
        if f.spent_fen != expect:
            out.append(Problem("fund_mismatch", f"资金 {f.id} 记载已用 {f.spent_fen} 分，而采购合计为 {expect} 分"))
    reds = session.execute(select(Redemption.id, Redemption.store_id, Redemption.household_id, Redemption.points,
                                  Redemption.value_fen, Redemption.ledger_tx_id, Redemption.status,
                                  Redemption.void_tx_id)).all()
    txs = ledger.redemption_transactions(session)
    reversals = ledger.reversed_among(session, [r.ledger_tx_id for r in reds])
    lines: dict[int, dict[int, tuple[int, int, int]]] = {}
    for r in session.execute(select(RedemptionLine.redemption_id, RedemptionLine.item_id,
                                    func.sum(RedemptionLine.quantity), func.sum(RedemptionLine.points),
                                    func.sum(RedemptionLine.value_fen))
                             .group_by(RedemptionLine.redemption_id, RedemptionLine.item_id)):
        lines.setdefault(r[0], {})[r[1]] = (int(r[2]), int(r[3]), int(r[4]))
    for r in session.execute(select(RedemptionLine.id, RedemptionLine.redemption_id).where(
            RedemptionLine.points != RedemptionLine.points_each * RedemptionLine.quantity).limit(50)):
        out.append(Problem("lines_mismatch", f"兑换 {r.redemption_id} 的明细 {r.id}：积分不等于单价乘数量"))
    moved: dict[int, dict[str, dict[int, tuple[int, int]]]] = {}
    for r in session.execute(select(StockMovement.redemption_id, StockMovement.kind, StockMovement.item_id,
                                    func.sum(StockMovement.quantity), func.sum(StockMovement.value_fen))
                             .where(StockMovement.redemption_id.is_not(None))
                             .group_by(StockMovement.redemption_id, StockMovement.kind, StockMovement.item_id)):
        moved.setdefault(r[0], {}).setdefault(r[1], {})[r[2]] = (int(r[3]), int(r[4]))
    seen_tx: set[int] = set()
    for r in reds:
        seen_tx.add(r.ledger_tx_id)
        tx = txs.get(r.ledger_tx_id)
        if tx is None or tx != (r.store_id, r.points, r.household_id):
            out.append(Problem("ledger_mismatch", f"兑换 {r.id}（农户 {r.household_id}，{r.points} 分）在积分台账里没有"
                                                  f"对应的兑换交易（第 {r.ledger_tx_id} 号交易：{tx}）"))
        mine = lines.get(r.id, {})
        if sum(p for _, p, _ in mine.values()) != r.points or sum(v for _, _, v in mine.values()) != r.value_fen:
            out.append(Problem("lines_mismatch", f"兑换 {r.id} 的明细合计与总积分 {r.points}、成本 {r.value_fen} 分不符"))
        wanted = {i: (q, v) for i, (q, _, v) in mine.items()}
        out_moves = {i: (-q, -v) for i, (q, v) in moved.get(r.id, {}).get("redemption", {}).items()}
        if out_moves != wanted:
            out.append(Problem("movement_mismatch", f"兑换 {r.id} 的出库记录（数量、成本）与兑换明细不符"))
        back = moved.get(r.id, {}).get("void", {})
        if r.status == "voided":
            if reversals.get(r.ledger_tx_id) != r.void_tx_id or r.void_tx_id is None:
                out.append(Problem("void_mismatch", f"兑换 {r.id} 已作废，但积分台账里没有它的冲正交易"))
            if back != wanted:
                out.append(Problem("void_mismatch", f"兑换 {r.id} 已作废，但商品没有按原数量、原成本全部退回库存"))
        elif back or r.ledger_tx_id in reversals:
            out.append(Problem("void_mismatch", f"兑换 {r.id} 没有作废，却有退回库存或冲正交易"))
    for tx_id, (store_id, points, _household) in txs.items():
        if tx_id not in seen_tx:
            out.append(Problem("orphan_spend", f"第 {tx_id} 号交易在超市 {store_id} 用了 {points} 分，却没有兑换记录"))
    counts = {"items": len(items), "movements": sum(n for _, _, n in sums.values()), "funds": len(fund_rows),
              "redemptions": len(reds)}
    return out, counts


@dataclass(frozen=True)
class Activity:
    redemptions: int  # not voided, in the months
    points: int
    last_day: date | None  # the last redemption ever by the village's households
    stock_value_fen: int  # on the shelves of the village's own stores, now


def village_activity(session: Session, village_ids: Sequence[int], from_day: date, to_day: date) -> dict[int, Activity]:
    """Per village (the households' village): redemptions and points in the days, the last redemption, and the
    stock value of the village's stores: three grouped statements."""
    ids = list(village_ids)
    if not ids:
        return {}
    done = {r[0]: (int(r[1]), int(r[2] or 0)) for r in session.execute(
        select(Redemption.village_id, func.count(), func.sum(Redemption.points)).where(
            Redemption.village_id.in_(ids), Redemption.status == "done", Redemption.day.between(from_day, to_day))
        .group_by(Redemption.village_id))}
    last: dict[int, date] = dict(session.execute(select(Redemption.village_id, func.max(Redemption.day)).where(
        Redemption.village_id.in_(ids), Redemption.status == "done").group_by(Redemption.village_id)).all())
    value: dict[int, int] = dict(session.execute(select(Store.village_id, func.sum(Item.stock_value_fen))
                                 .join(Item, Item.store_id == Store.id).where(Store.village_id.in_(ids))
                                 .group_by(Store.village_id)).all())
    return {v: Activity(done.get(v, (0, 0))[0], done.get(v, (0, 0))[1], last.get(v), int(value.get(v) or 0))
            for v in ids}
