"""The demo's supermarkets, through the real services: every village's store gets a catalog of everyday goods with
barcodes and point prices, the year's funding (county, township and village allocations with document numbers, a
donation of money and one of goods), opening purchases and monthly restocking against those funds, cards for every
household (one reported lost and reissued), and each month's redemptions at the counter, mostly by card, a few after
an identity check, one voided. One store also serves the next village of its township.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from app.core.clock import DISPLAY_ZONE
from app.core.context import Actor
from app.errors import AppError
from app.households.service import households
from app.ledger import service as ledger
from app.store.service import cards, counter, stock, stores

# name, unit, category, points, cost in fen (what a village shop pays), restock batch
CATALOG = [
    ("金龙鱼食用油 5L", "桶", "粮油", 70, 6490, 20), ("东北大米 10 斤", "袋", "粮油", 30, 2750, 30),
    ("挂面 1 kg", "包", "粮油", 6, 520, 40), ("海天酱油 500 ml", "瓶", "调味", 7, 620, 40),
    ("恒顺香醋 500 ml", "瓶", "调味", 6, 540, 30), ("加碘食盐 400 g", "袋", "调味", 2, 180, 60),
    ("立白洗衣粉 1.5 kg", "袋", "洗化", 12, 1150, 40), ("洗洁精 1.1 kg", "瓶", "洗化", 6, 560, 40),
    ("牙膏 120 g", "支", "洗化", 5, 430, 50), ("香皂", "块", "洗化", 3, 270, 60), ("纯棉毛巾", "条", "纺织", 6, 580, 40),
    ("卫生纸 10 卷", "提", "日用品", 16, 1490, 30), ("垃圾袋", "卷", "日用品", 3, 230, 60),
    ("竹扫帚", "把", "日用品", 9, 850, 15), ("学生作业本", "本", "文具", 2, 150, 80),
]
COUNTY_FUND_FEN = 3_000_000  # 30,000 yuan a year per village from the county
TOWNSHIP_FUND_FEN = 1_000_000
VILLAGE_FUND_FEN = 500_000
DAILY_LIMIT = 300


def _ean13(n: int) -> str:
    body = f"69{n:010d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=DISPLAY_ZONE)


@dataclass
class DemoStore:
    store_id: int
    village_id: int
    served: tuple[int, ...]
    items: list[int]
    funds: list[int]
    index: int
    funded_years: set[int] = field(default_factory=set)


def _fund_year(session: Session, actor: Actor, s: DemoStore, received: date, rng: random.Random) -> None:
    """The year's allocations from the three levels and a donation of money, newest first in the spending order."""
    year, i = received.year, s.index
    s.funded_years.add(year)
    for source, amount, doc, donor in (
            ("county", COUNTY_FUND_FEN, f"振财农〔{year}〕{10 + i}号", None),
            ("township", TOWNSHIP_FUND_FEN, f"乡财〔{year}〕{3 + i}号", None),
            ("village", VILLAGE_FUND_FEN, f"村务公开第{received.month}期", None),
            ("donation", 200_000 + rng.randrange(0, 5) * 50_000, f"收据 {year}-{i + 1:03d}", "县商会爱心基金")):
        fund = stores.record_fund(session, actor, village_id=s.village_id, source=source, amount_fen=amount,
                                  received_on=received, document_no=doc, donor=donor)
        s.funds.append(int(fund.id or 0))


def setup(session: Session, actor: Actor, households_of: dict[int, list[int]], *, start: date,
          seed: int) -> dict[int, DemoStore]:
    """Every village's store stocked and funded from `start`; cards for every household. Returns village -> store."""
    rng = random.Random(seed + 11)
    out: dict[int, DemoStore] = {}
    village_ids = list(households_of)
    for index, vid in enumerate(village_ids):
        store = stores.stores_serving(session, vid)[0]
        if index == 0:
            stores.update_settings(session, actor, store.id, daily_limit=DAILY_LIMIT)
        items: list[int] = []
        for k, (name, unit, category, points, cost, _batch) in enumerate(CATALOG):
            item = stock.create_item(session, actor, store.id, stock.ItemInput(
                name=name, unit=unit, category=category, points=points, cost_fen=cost,
                barcode=_ean13(vid * 1000 + k), low_stock=max(3, _batch // 5)))
            items.append(item.id)
        out[vid] = s = DemoStore(store.id, vid, (vid,), items, [], index)
        _fund_year(session, actor, s, start, rng)
        funds = s.funds
        day = _at(start, 9)
        for item_id, (_n, _u, _c, _p, cost, batch) in zip(items, CATALOG, strict=True):
            stock.purchase(session, actor, item_id, quantity=batch * 3, cost_fen=cost * batch * 3, fund_id=funds[0],
                           note="开业首批进货", at=day)
        stock.donation_in(session, actor, items[10], quantity=50, value_fen=50 * 580, donor="县纺织厂",
                          village_id=vid, received_on=start, document_no=f"捐赠登记 {index + 1}",
                          at=day + timedelta(hours=1))
        cards.ensure_cards(session, actor, households_of[vid])
    if len(village_ids) > 2:  # the second village's store also serves the third (same township in the demo)
        try:
            second, third = out[village_ids[1]], village_ids[2]
            stores.set_served_villages(session, actor, second.store_id, [third])
            second.served = (second.village_id, third)
        except AppError:  # different townships: leave it
            pass
    return out


def restock(session: Session, actor: Actor, s: DemoStore, day: date, rng: random.Random) -> None:
    """Buy back up to three batches of whatever ran low, from the first fund that still has the money (a new
    year's allocations arrive with its first month)."""
    if day.year not in s.funded_years:
        _fund_year(session, actor, s, day, rng)
    for item_id, (_n, _u, _c, _p, cost, batch) in zip(s.items, CATALOG, strict=True):
        item = stock.get_item(session, item_id)
        if item.stock < batch:
            qty = batch * 3 - item.stock
            for fund_id in s.funds:
                try:
                    stock.purchase(session, actor, item_id, quantity=qty, cost_fen=qty * cost, fund_id=fund_id,
                                   note="月初补货", at=_at(day, 9))
                    break
                except AppError:  # this fund has run out: the next one
                    continue


def redemptions(session: Session, actor: Actor, rng: random.Random, s: DemoStore, household_ids: list[int],
                day: date) -> None:
    """A day at the counter: about four households in ten come with their card (one in twenty without it), each
    taking one to three kinds of goods it can afford."""
    restock(session, actor, s, day.replace(day=1), rng)
    balance = ledger.balances(session, household_ids)
    have = cards.cards_of(session, household_ids)
    items = {int(i.id or 0): i for i in stock.items(session, s.store_id, active_only=True)}
    minute = 0
    for hid in household_ids:
        if rng.random() >= 0.4:
            continue
        budget = min(balance.get(hid, 0), DAILY_LIMIT)
        lines: list[counter.Line] = []
        for item_id in rng.sample(list(items), 3)[: rng.randint(1, 3)]:
            item = items[item_id]
            qty = rng.randint(1, 2)
            if item.points * qty <= budget and item.stock >= qty:
                lines.append(counter.Line(item_id, qty))
                budget -= item.points * qty
        if not lines:
            continue
        minute += rng.randint(1, 4)
        card = have.get(hid)
        by_card = card is not None and card.status == "active" and rng.random() > 0.05
        scanned = cards.Scanned(card, households.get_household(session, hid)) if by_card else None  # type: ignore[arg-type]
        try:
            counter.redeem(session, actor, store_id=s.store_id, household_id=hid, lines=lines, scanned=scanned,
                           identity_note=None if by_card else "户主本人，核对身份证",
                           at=_at(day, 8, 30) + timedelta(minutes=minute))
        except AppError:  # not enough points after all, or the stock ran out: the next household
            continue


def extras(session: Session, actor: Actor, clerk: Actor, s: DemoStore, household_ids: list[int]) -> None:
    """In the first village: a card reported lost and reissued, and one redemption voided by the village clerk."""
    if len(household_ids) > 3:
        cards.report_lost(session, clerk, household_ids[3], "农户报告卡片在集市上丢失")
        cards.reissue(session, clerk, household_ids[3], "挂失后补办新卡")
    done = counter.recent(session, s.store_id, limit=1)
    if done:
        counter.void(session, clerk, done[0][0].id, reason="农户发现洗衣粉包装破损，退回", any_day=True)
