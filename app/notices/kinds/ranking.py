"""积分排行: the year's ranking of the village's households by the points earned in the year (awards less penalties,
as the ledger holds them), ties sharing a rank (1, 1, 3). Each household's 村民小组 is printed beside it with its
place within the group, so one notice serves the village and each group alike; a summary per group heads it.

Redemptions, expiry and adjustments are not earnings and do not count; a reversal is left out too (it undoes a
redemption as often as an award). The households ranked: those on the roll now, and any that left during the year
with points earned in it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.masking import mask_name
from app.core.month import current_month
from app.errors import Conflict
from app.households.models import Household, HouseholdStatus
from app.ledger import service as ledger
from app.notices.kinds.common import Gathered, competition_ranks, sort_key
from app.org import service as org
from app.org.models import Village

NO_GROUP = "未分组"


@dataclass
class _Row:
    number: str
    name: str
    group: str
    awarded: int
    deducted: int
    points: int
    rank: int = 0
    group_rank: int = 0


def through(year: int) -> int:
    """The last month counted: December of a past year, this month of the current one."""
    return min(current_month(), year * 100 + 12)


def gather(session: Session, village: Village, period: int, *, masking: str, **_: object) -> Gathered:
    assert village.id is not None
    year = period // 100
    if year * 100 + 1 > current_month():
        raise Conflict(f"{year}年还没有开始，没有积分排行", code="year_not_started")
    last = through(year)
    totals = ledger.household_kind_totals(session, village.id, year * 100 + 1, last)
    groups = sorted(org.list_groups(session, village.id), key=lambda g: g.number)
    group_names = {g.id: g.name for g in groups}
    # only what the notice prints of a household is read: never its ID numbers or phones
    roll = session.execute(select(Household.id, Household.number, Household.head_name, Household.group_id,
                                  Household.status).where(Household.village_id == village.id)).all()
    rows: list[_Row] = []
    for hid, number, head, group_id, status in roll:
        kinds = totals.get(hid, {})
        awarded, deducted = kinds.get("award", 0), -kinds.get("penalty", 0)
        if status != HouseholdStatus.ACTIVE.value and not (awarded or deducted):
            continue  # left the village without earning anything this year
        rows.append(_Row(number, mask_name(head or "", masking), group_names.get(group_id, NO_GROUP),
                         awarded, deducted, awarded - deducted))
    rows.sort(key=lambda r: (-r.points, sort_key(r.number)))
    for r, rank in zip(rows, competition_ranks([r.points for r in rows]), strict=True):
        r.rank = rank
    by_group: dict[str, list[_Row]] = {}
    for r in rows:
        by_group.setdefault(r.group, []).append(r)
    order = [g.name for g in groups] + [NO_GROUP]
    summary = []
    for name in sorted(by_group, key=lambda n: order.index(n) if n in order else len(order)):
        members = by_group[name]
        for r, rank in zip(members, competition_ranks([m.points for m in members]), strict=True):
            r.group_rank = rank
        points = sum(m.points for m in members)
        summary.append({"group": name, "households": len(members), "points": points,
                        "best": members[0].points})
    content = {
        "year": year, "from_month": year * 100 + 1, "to_month": last, "rows": [asdict(r) for r in rows],
        "groups": summary, "grouped": len(summary) > 1,
        "totals": {"households": len(rows), "awarded": sum(r.awarded for r in rows),
                   "deducted": sum(r.deducted for r in rows), "points": sum(r.points for r in rows)},
    }
    return Gathered(f"{village.name}{year}年积分排行", content)
