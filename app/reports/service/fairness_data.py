"""Reading a village's ratings over a period for the fairness signals (app.reports.service.fairness).

Batched: one statement for the period's rounds, one for the rulesets they use, one for all the panel ratings of the
village in the period, one for the finalised results' grades and one for the households (with their groups); never a
query per round, household or member.

Counted: panel ratings of rounds sent to the township (submitted or later; drafts still change), eligible members
only (as frozen at submission); for the uniform and unchanged signals, the combined grades of finalised rounds.

Services flush, never commit (this one only reads).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.committee import service as committee
from app.core.month import add_months, current_month
from app.evaluation.models import EvalRound, Rating, RoundResult
from app.evaluation.service.rounds import CONSENSUS, EDITABLE
from app.households.models import Household
from app.org.models import Group
from app.reports.service import fairness
from app.rulesets import service as rulesets
from app.rulesets.models import RulesetVersion

MAX_MONTHS = 36


@dataclass(frozen=True)
class Period:
    first: int  # YYYYMM
    last: int  # YYYYMM

    @property
    def label(self) -> str:
        if self.first % 100 == 1 and self.last == self.first + 11:
            return f"{self.first // 100}年"
        return f"{fairness.month_label(self.first)}至{fairness.month_label(self.last)}"


def this_year() -> int:
    return current_month() // 100


def year_period(year: int) -> Period:
    return Period(year * 100 + 1, year * 100 + 12)


def last_months(n: int, *, now_month: int | None = None) -> Period:
    """The last `n` months up to and including this one."""
    last = now_month or current_month()
    n = max(1, min(n, MAX_MONTHS))
    return Period(add_months(last, -(n - 1)), last)


@dataclass(frozen=True)
class VillageFairness:
    village_id: int
    period: Period
    report: fairness.Report
    panel_rounds: int  # panel rounds counted (sent to the township)
    finalised_rounds: int
    rounds: int  # rounds of the period, any status and mode


def _positions(session: Session, rounds: list[EvalRound]) -> dict[tuple[str, int], dict[str, dict[str, int]]]:
    """(ruleset code, version) -> theme -> grade code -> scale position (worst = 1), in one statement."""
    keys = sorted({(r.ruleset_code, r.ruleset_version) for r in rounds})
    if not keys:
        return {}
    rows = session.execute(select(RulesetVersion.code, RulesetVersion.version, RulesetVersion.toml).where(
        or_(*(and_(RulesetVersion.code == c, RulesetVersion.version == v) for c, v in keys))))
    out = {}
    for code, version, toml in rows:
        rs = rulesets.parse(toml)
        out[(code, version)] = {t.code: {g.code: i for i, g in enumerate(t.scale(), 1)} for t in rs.themes}
    return out


def _households(session: Session, village_id: int) -> dict[int, fairness.HouseholdInfo]:
    rows = session.execute(select(Household.id, Household.number, Household.head_name, Group.name, Group.number)
                           .outerjoin(Group, Group.id == Household.group_id)
                           .where(Household.village_id == village_id))
    return {hid: fairness.HouseholdInfo(label=f"{number} {head}".strip(), group=group or "",
                                        surname=fairness.surname_of(head), group_sort=group_number or 0)
            for hid, number, head, group, group_number in rows}


def village_fairness(session: Session, village_id: int, period: Period) -> VillageFairness:
    """The village's fairness report over the period."""
    rounds = list(session.execute(select(EvalRound).where(
        EvalRound.village_id == village_id, EvalRound.month.between(period.first, period.last))
        .order_by(EvalRound.month)).scalars())
    panel_rounds = {int(r.id or 0): r for r in rounds if r.mode == "panel" and r.status not in EDITABLE}
    finalised = {int(r.id or 0): r for r in rounds if r.status == "finalised"}
    scales = _positions(session, list(panel_rounds.values()))
    names: dict[int, str] = {}
    elig: dict[int, committee.Eligibility | None] = {}
    for rid, r in sorted(panel_rounds.items(), key=lambda kv: kv[1].month):
        e = committee.Eligibility.from_snapshot(r.eligibility) if r.eligibility else None
        elig[rid] = e
        if e:
            names.update(e.members)  # the newest month's name wins
    panel: dict[tuple[int, int, str], dict[int, int]] = defaultdict(dict)
    if panel_rounds:
        rows = session.execute(select(Rating.round_id, Rating.household_id, Rating.theme, Rating.rater_id,
                                      Rating.grade)
                               .join(EvalRound, EvalRound.id == Rating.round_id)
                               .where(EvalRound.village_id == village_id,
                                      EvalRound.month.between(period.first, period.last),
                                      EvalRound.mode == "panel", Rating.rater_id != CONSENSUS))
        for rid, hid, theme, rater, grade in rows:
            rnd = panel_rounds.get(rid)
            if rnd is None:
                continue
            e = elig[rid]
            if e is not None and not e.may_rate(rater, hid):
                continue
            pos = scales.get((rnd.ruleset_code, rnd.ruleset_version), {}).get(theme, {}).get(grade)
            if pos is not None:
                panel[(rnd.month, hid, theme)][rater] = pos
    grades: dict[int, dict[int, dict[str, str]]] = defaultdict(dict)
    if finalised:
        for rid, hid, g in session.execute(select(RoundResult.round_id, RoundResult.household_id, RoundResult.grades)
                                           .where(RoundResult.round_id.in_(list(finalised)))):
            if g:
                grades[finalised[rid].month][hid] = {str(k): str(v) for k, v in g.items()}
    report = fairness.fairness_report(panel=panel, households=_households(session, village_id), grades=grades,
                                      member_names=names)
    return VillageFairness(village_id, period, report, len(panel_rounds), len(finalised), len(rounds))
