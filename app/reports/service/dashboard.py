"""The township's and county's dashboard: per village, for a year up to now, how the scheme runs, and which villages
need attention (后进村) by explicit criteria, each with its reason.

Every figure comes from one grouped statement over all the villages shown (the domains' batched readers), never a
query per village.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from app.core.clock import to_local, utcnow
from app.core.month import month_of, month_start, next_month, prev_month
from app.evaluation.service import objections, rounds
from app.ledger import service as ledger
from app.lists import service as lists
from app.org.models import Village
from app.rulesets import service as rulesets
from app.store.service import stores

LATE_AFTER_DAYS = 20  # a month's round finalised after the 20th of the following month is late
LATE_MONTHS = 2  # this many late or missing months in the year make a village lag
QUIET_DAYS = 90  # no redemption for this long: the store is not being used
UPHELD_OBJECTIONS = 3  # this many upheld objections in the year: the committee's ratings need a look


@dataclass
class VillageRow:
    village: Village
    months_due: int
    finalised: int
    late: list[int]  # months late or missing
    open_state: str | None  # the newest round not finalised yet: its status
    rated: int  # households rated in the year's finalised rounds
    roster: int  # households on those rounds' rosters
    issued: int
    deducted: int
    redeemed: int
    outstanding: int
    coverage: lists.Coverage
    filed: int
    upheld: int
    redemptions: int
    last_redemption: date | None
    stock_value_fen: int
    reasons: list[str] = field(default_factory=list)

    @property
    def participation_pct(self) -> float:
        return 100.0 * self.rated / self.roster if self.roster else 0.0

    @property
    def lagging(self) -> bool:
        return bool(self.reasons)


def _deadline(month: int) -> date:
    return month_start(next_month(month)).replace(day=LATE_AFTER_DAYS)


@dataclass
class MonthTrend:
    """One month across every village shown: points, list households, rounds."""
    month: int
    issued: int
    redeemed: int
    red: int
    black: int
    finalised: int  # villages whose round of the month is finalised
    late: int  # villages late with it (finalised after the deadline, or not yet and past it)


@dataclass
class Board:
    first: int  # YYYYMM
    last: int
    rows: list[VillageRow]
    trends: list[MonthTrend]

    @property
    def year(self) -> int:
        return self.last // 100


SORTS = {  # the rankings the dashboard offers: key -> label
    "attention": "需要关注的先列", "coverage": "覆盖率", "participation": "参评率", "late": "延误月数",
    "issued": "发放积分", "redeemed": "兑换积分", "upheld": "异议成立",
}


def ranked(rows: list[VillageRow], sort: str) -> list[VillageRow]:
    """The rows in the order of a ranking: best first for coverage, participation and points; most late months or
    upheld objections first for those; lagging villages (most reasons) first by default."""
    keys = {
        "coverage": lambda r: (-r.coverage.share_pct, r.village.code),
        "participation": lambda r: (-r.participation_pct, r.village.code),
        "late": lambda r: (-len(r.late), r.village.code),
        "issued": lambda r: (-r.issued, r.village.code),
        "redeemed": lambda r: (-r.redeemed, r.village.code),
        "upheld": lambda r: (-r.upheld, r.village.code),
    }
    key = keys.get(sort, lambda r: (-len(r.reasons), r.village.code))
    return sorted(rows, key=key)


def dashboard(session: Session, villages: list[Village], year: int, *, now: datetime | None = None) -> list[VillageRow]:
    """The rows of the dashboard for `villages` in `year`, lagging villages first (most reasons first)."""
    return board(session, villages, year * 100 + 1, year * 100 + 12, now=now).rows


def board(session: Session, villages: list[Village], first: int, last: int, *,
          now: datetime | None = None) -> Board:
    """The dashboard for `villages` over the months `first` to `last` (within one year; coverage is the year's):
    one row per village, lagging villages first, and the months' trends across them."""
    if first // 100 != last // 100 or first > last:
        raise ValueError("a dashboard period lies within one year")
    year = last // 100
    local = to_local(now or utcnow()) or utcnow()
    today = local.date()
    this_month = month_of(local)
    due_until = min(last, prev_month(this_month))  # months whose rounds are due by now
    ids = [v.id for v in villages if v.id is not None]
    states = rounds.month_states(session, ids, first, last)
    money = ledger.kind_totals(session, ids, first, last)
    outstanding = ledger.village_totals(session, ids)
    cover = lists.coverage_many(session, rulesets.coverage_targets(session, ids, min(this_month, year * 100 + 12)),
                                year, as_of_month=this_month)
    objected = objections.counts(session, ids, first, last)
    activity = stores.village_activity(session, ids, month_start(first), _month_end(last))
    due_all = _months(first, due_until) if due_until >= first else []
    started = rounds.first_months(session, ids)  # a village that started mid-year owes no round before that
    out: list[VillageRow] = []
    late_by_month: dict[int, int] = {}
    for v in villages:
        vid = v.id
        assert vid is not None
        st = states.get(vid, {})
        due = [m for m in due_all if m >= started.get(vid, 0)]
        late = [m for m in due if _late(st.get(m), _deadline(m), today)]
        for m in late:
            late_by_month[m] = late_by_month.get(m, 0) + 1
        open_rounds = sorted((m for m, s in st.items() if s.status != "finalised"), reverse=True)
        done = [s for s in st.values() if s.status == "finalised"]
        kinds = money.get(vid, {})
        act = activity.get(vid)
        row = VillageRow(
            village=v, months_due=len(due), finalised=len(done), late=late,
            open_state=st[open_rounds[0]].status if open_rounds else None,
            rated=sum(s.households for s in done), roster=sum(s.roster for s in done),
            issued=kinds.get("award", 0), deducted=-kinds.get("penalty", 0), redeemed=-kinds.get("redemption", 0),
            outstanding=outstanding[vid].outstanding if vid in outstanding else 0, coverage=cover[vid],
            filed=objected.get(vid, (0, 0))[0], upheld=objected.get(vid, (0, 0))[1],
            redemptions=act.redemptions if act else 0, last_redemption=act.last_day if act else None,
            stock_value_fen=act.stock_value_fen if act else 0)
        row.reasons = _reasons(row, today)
        out.append(row)
    out.sort(key=lambda r: (-len(r.reasons), r.village.code))
    by_month = ledger.month_kind_totals(session, ids, first, last)
    listed = lists.month_counts(session, ids, first, last)
    finalised: dict[int, int] = {}
    for st in states.values():
        for m, s in st.items():
            if s.status == "finalised":
                finalised[m] = finalised.get(m, 0) + 1
    trends = [MonthTrend(m, by_month.get(m, {}).get("award", 0), -by_month.get(m, {}).get("redemption", 0),
                         listed.get(m, (0, 0))[0], listed.get(m, (0, 0))[1], finalised.get(m, 0),
                         late_by_month.get(m, 0)) for m in _months(first, last)]
    return Board(first, last, out, trends)


def _month_end(month: int) -> date:
    return month_start(next_month(month)) - timedelta(days=1)


def _late(state: rounds.MonthState | None, deadline: date, today: date) -> bool:
    """A month is late when its round was finalised after the deadline, or is still not finalised past it."""
    if state is None or state.status != "finalised" or state.finalised_at is None:
        return deadline < today
    finished = to_local(state.finalised_at)
    return finished is not None and finished.date() > deadline


def _months(first: int, last: int) -> list[int]:
    out, m = [], first
    while m <= last:
        out.append(m)
        m = next_month(m)
    return out


def _reasons(r: VillageRow, today: date) -> list[str]:
    """Why a village needs attention, each criterion stated with its numbers."""
    why = []
    if len(r.late) >= LATE_MONTHS:
        months = "、".join(f"{m % 100}月" for m in r.late[:6])
        why.append(f"{len(r.late)} 个月的评比没有按时完成（{months}），应在次月 {LATE_AFTER_DAYS} 日前完成")
    c = r.coverage
    if c.households and not c.on_track:
        why.append(f"红黑榜覆盖率 {c.share_pct:.0f}%，按目前进度全年约 {c.projected} 户，"
                   f"达不到目标 {c.target_pct}%（{c.target_households} 户），还需 {c.needed} 户")
    if r.last_redemption is None or (today - r.last_redemption) > timedelta(days=QUIET_DAYS):
        since = f"自 {r.last_redemption.isoformat()} 以来" if r.last_redemption else "一直"
        why.append(f"超市{since}没有兑换：积分没有变成实惠，请了解原因")
    if r.upheld >= UPHELD_OBJECTIONS:
        why.append(f"所选期间有 {r.upheld} 件异议成立（共 {r.filed} 件）：请关注评分是否公正")
    return why
