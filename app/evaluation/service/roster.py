"""The roster of a month: the households a round rates. While the round is editable it is the village's households
of that month, read live; from submission on, the roster frozen in the round."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.clock import DISPLAY_ZONE, to_local
from app.core.month import month_start, next_month
from app.evaluation.models import EvalRound
from app.households.models import Household, HouseholdStatus
from app.org.models import Group


@dataclass(frozen=True)
class RosterEntry:
    household_id: int
    number: str
    head_name: str
    group_id: int | None
    group_name: str
    note: str  # "" | 本月新增 | 本月迁出 | 本月注销


def _local_date(ts: datetime) -> date:
    local = to_local(ts if ts.tzinfo else ts.replace(tzinfo=UTC), DISPLAY_ZONE)
    assert local is not None
    return local.date()


def _live_roster(session: Session, village_id: int, month: int) -> list[RosterEntry]:
    """The households of the village in that month: registered by its end, and not gone before it began. Those that
    joined or left during the month are rated and flagged."""
    start, end = month_start(month), month_start(next_month(month))
    groups = {g.id: g.name for g in session.execute(select(Group).where(Group.village_id == village_id)).scalars()}
    out = []
    rows = session.execute(select(Household.id, Household.number, Household.head_name, Household.group_id,
                                  Household.created_at, Household.updated_at, Household.status, Household.status_date)
                           .where(Household.village_id == village_id)
                           .order_by(Household.group_sort, Household.number_sort, Household.id)).tuples()
    for hid, number, head, group_id, created_at, updated_at, status, status_date in rows:
        joined = _local_date(created_at)
        if joined >= end:
            continue
        note = "本月新增" if joined >= start else ""
        if status != HouseholdStatus.ACTIVE.value:
            gone = status_date or _local_date(updated_at)
            if gone < start:
                continue
            if gone < end:
                note = "本月迁出" if status == HouseholdStatus.MOVED_OUT.value else "本月注销"
        out.append(RosterEntry(hid, number, head, group_id, groups.get(group_id, "") if group_id else "", note))
    return out


def roster(session: Session, rnd: EvalRound) -> list[RosterEntry]:
    if rnd.roster is None:
        return _live_roster(session, rnd.village_id, rnd.month)
    frozen = {int(e["household_id"]): str(e.get("note", "")) for e in rnd.roster}
    if not frozen:
        return []
    groups = {g.id: g.name for g in session.execute(select(Group).where(Group.village_id == rnd.village_id)).scalars()}
    rows = session.execute(select(Household.id, Household.number, Household.head_name, Household.group_id)
                           .where(Household.id.in_(list(frozen)))
                           .order_by(Household.group_sort, Household.number_sort, Household.id)).tuples()
    return [RosterEntry(hid, number, head, gid, groups.get(gid, "") if gid else "", frozen[hid])
            for hid, number, head, gid in rows]
