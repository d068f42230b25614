"""超市收支公示: the village's supermarket accounts for the year so far, as the store's finance page keeps them
(`store.service.finance`): money received by source, goods donated, goods bought, goods redeemed, what is left in
money and on the shelves, the points the households still hold and what they are worth at the point value of the
ruleset in force. Money is printed in yuan with two decimals (the books keep fen).

The funds received in the year are listed by date, source, amount and document number; donors' names are not
printed (a donor may be a private person: the notice shows no more than its purpose needs)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.month import current_month
from app.errors import Conflict
from app.notices.kinds.common import Gathered, scrub
from app.org.models import Village
from app.rulesets import service as rulesets
from app.store.service import stores as store
from app.store.service.stock import yuan


def gather(session: Session, village: Village, period: int, *, masking: str, **_: object) -> Gathered:
    assert village.id is not None
    year = period // 100
    now = current_month()
    if year > now // 100:
        raise Conflict(f"{year}年还没有开始，没有收支可以公示", code="year_not_started")
    value = rulesets.point_value(session, village.id, year)
    f = store.finance(session, village.id, year, point_value_fen=value or 0)
    kept = store.funds(session, [village.id], year=year)
    if not (f.stores or kept or f.money_left_fen or f.outstanding_points):
        raise Conflict(f"本村还没有振风超市，{year}年也没有资金和积分，没有收支可以公示", code="no_accounts")
    money_in = [{"source": label, "amount": yuan(f.money_in.get(key, 0))} for key, label in store.SOURCES.items()]
    funds = [{"date": x.received_on.isoformat(), "source": store.SOURCES.get(x.source, x.source),
              "form": "物品" if x.form == "goods" else "资金", "amount": yuan(x.amount_fen),
              "document": scrub(x.document_no or "")}
             for x in sorted(kept, key=lambda x: (x.received_on, x.id or 0))]
    content = {
        "year": year, "to_month": min(now, year * 100 + 12), "stores": [s.name for s in f.stores],
        "money_in": money_in, "money_in_total": yuan(f.money_in_total), "goods_donated": yuan(f.goods_donated_fen),
        "purchased": yuan(f.purchased_fen), "redeemed": yuan(f.redeemed_fen), "redeemed_points": f.redeemed_points,
        "money_left": yuan(f.money_left_fen), "stock_units": f.stock_units, "stock_value": yuan(f.stock_value_fen),
        "outstanding_points": f.outstanding_points,
        "point_value": yuan(value) if value is not None else None,
        "liability": yuan(f.liability_fen) if value is not None else None,
        "cover": yuan(f.cover_fen) if value is not None else None, "cover_short": value is not None and f.cover_fen < 0,
        "funds": funds,
    }
    return Gathered(f"{village.name}{year}年振风超市收支公示", content)
