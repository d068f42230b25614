"""The engine's input and the round's results as they stand: the roster, the ratings that count, the upheld
objections' corrections, the passed determinations and the history; the engine's result, progress, simulation.
Nothing here saves anything."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import rules
from app.core.month import prev_month
from app.evaluation.models import EvalRound, Motion, Objection, Rating, RoundResult
from app.evaluation.service.reading import CONSENSUS, eligibility_of, round_of_month, ruleset_of
from app.evaluation.service.roster import roster
from app.rulesets import service as rulesets


@dataclass
class Corrections:
    """What upheld objections change in the input."""

    grades: dict[tuple[int, str], str] = field(default_factory=dict)  # (household, theme) -> corrected grade
    suppressed: set[tuple[int, str]] = field(default_factory=set)  # (household, posting code)
    voided: set[int] = field(default_factory=set)  # determinations (motion ids) set aside


def corrections(session: Session, round_id: int, *, excluding: int | None = None) -> Corrections:
    """The upheld objections' corrections (`excluding` one of them: to measure its own effect)."""
    c = Corrections()
    for o in session.execute(select(Objection).where(Objection.round_id == round_id, Objection.status == "upheld",
                                                     Objection.id != (excluding or 0))
                             .order_by(Objection.id)).scalars():
        if o.target == "rating" and o.theme and o.corrected_grade:
            c.grades[(o.household_id, o.theme)] = o.corrected_grade
        elif o.target == "posting" and o.posting_code:
            c.suppressed.add((o.household_id, o.posting_code))
        elif o.target == "determination" and o.motion_id:
            c.voided.add(o.motion_id)
    return c


def _history(session: Session, rnd: EvalRound, ruleset: rules.Ruleset, households: set[int]) -> list[rules.WorstRun]:
    """Consecutive months before this one in which each household's theme was graded at the scale's lowest rank
    (from the finalised results; a month without a finalised round ends every run)."""
    rules_by_theme = {w.theme: w for w in ruleset.black_policy.worst_grade}
    if not rules_by_theme:
        return []
    lowest = {th: ruleset.theme(th).scale()[0].code for th in rules_by_theme if ruleset.theme(th)}
    # a run posts once it reaches the rule's K months with this one: K - 1 months back decide it (a longer run is
    # counted as K - 1, which posts the same)
    depth = max(w.months for w in rules_by_theme.values()) - 1
    runs: dict[tuple[int, str], int] = {}
    alive = {(h, th) for h in households for th in lowest}
    month = prev_month(rnd.month)
    for _ in range(depth):
        if not alive:
            break
        past = round_of_month(session, rnd.village_id, month)
        if past is None or past.status != "finalised":
            break
        graded: dict[tuple[int, str], str] = {}
        for hid, grades in session.execute(select(RoundResult.household_id, RoundResult.grades).where(
                RoundResult.round_id == past.id)).tuples():
            for th, grade in grades.items():
                graded[(hid, th)] = grade
        for key in list(alive):
            if graded.get(key) == lowest[key[1]]:
                runs[key] = runs.get(key, 0) + 1
            else:
                alive.discard(key)
        month = prev_month(month)
    return [rules.WorstRun(h, th, n) for (h, th), n in sorted(runs.items())]


def build_input(session: Session, rnd: EvalRound, ruleset: rules.Ruleset, *,
                fixes: Corrections | None = None) -> rules.RoundInput:
    """The round as the engine sees it: the roster, the ratings of eligible members only (panel), or the agreed
    grades with the eligible members present (consensus), upheld corrections, passed determinations, history."""
    entries = roster(session, rnd)
    hids = {e.household_id for e in entries}
    elig = eligibility_of(session, rnd)
    fixes = fixes if fixes is not None else corrections(session, rnd.id)
    ratings: list[rules.Rating] = []
    rows = session.execute(select(Rating.household_id, Rating.theme, Rating.rater_id, Rating.grade).where(
        Rating.round_id == rnd.id)).tuples().all()
    if rnd.mode == "consensus":
        present = list(rnd.present_member_ids or [])
        for hid, th, rater, grade in rows:
            if rater == CONSENSUS and hid in hids and (hid, th) not in fixes.grades:
                ratings.append(rules.Rating.agreed(hid, th, grade, elig.eligible_for(hid, present)))
    else:
        panel: dict[tuple[int, str], dict[int, str]] = defaultdict(dict)
        for hid, th, rater, grade in rows:
            if rater != CONSENSUS and hid in hids and elig.may_rate(rater, hid):
                panel[(hid, th)][rater] = grade
        for (hid, th), by_rater in panel.items():
            if (hid, th) not in fixes.grades:
                ratings.append(rules.Rating.panel(hid, th, by_rater))
    deciding = list(rnd.present_member_ids or []) if rnd.mode == "consensus" else None
    for (hid, th), grade in fixes.grades.items():  # the committee's decision on an objection, by those who decided
        if hid in hids:
            ratings.append(rules.Rating.agreed(hid, th, grade, elig.eligible_for(hid, deciding)))
    dets = []
    # a determination voided by an upheld objection counts when that objection is left out (`fixes` says)
    for m in session.execute(select(Motion).where(Motion.round_id == rnd.id, Motion.kind == "determination",
                                                  Motion.status.in_(["passed", "voided"]))).scalars():
        if m.household_id in hids and m.code and m.id not in fixes.voided:
            dets.append(rules.PassedDetermination(m.household_id, m.code, member_id=m.member_id,
                                                  member_name=m.member_name, note=m.description[:60], ref=m.id))
    return rules.RoundInput(village_id=rnd.village_id, month=rnd.month, households=tuple(sorted(hids)),
                            ratings=tuple(ratings), determinations=tuple(dets),
                            history=tuple(_history(session, rnd, ruleset, hids)))


def _suppress(result: rules.RoundResult, suppressed: set[tuple[int, str]]) -> rules.RoundResult:
    if not suppressed:
        return result
    households = tuple(dataclasses.replace(h, postings=tuple(p for p in h.postings
                                                             if (h.household_id, p.code) not in suppressed))
                       for h in result.households)
    return dataclasses.replace(result, households=households)


def compute(session: Session, rnd: EvalRound, *, ruleset: rules.Ruleset | None = None,
            fixes: Corrections | None = None) -> rules.RoundResult:
    """The round's results as they stand (nothing saved)."""
    ruleset = ruleset or ruleset_of(session, rnd)
    fixes = fixes if fixes is not None else corrections(session, rnd.id)
    engine_input = build_input(session, rnd, ruleset, fixes=fixes)
    with rulesets.engine_errors():
        return _suppress(rules.evaluate(engine_input, ruleset), fixes.suppressed)


@dataclass(frozen=True)
class Progress:
    households: int
    themes: int
    cells: int
    filled: int
    problems: tuple[rules.Problem, ...]
    open_motions: int

    @property
    def missing(self) -> int:
        return self.cells - self.filled


def progress(session: Session, rnd: EvalRound, result: rules.RoundResult | None = None) -> Progress:
    ruleset = ruleset_of(session, rnd)
    result = result or compute(session, rnd, ruleset=ruleset)
    n = len(result.households) + len(result.skipped)
    themes = len(ruleset.themes)
    missing_lines = sum(1 for p in result.problems if p.theme)
    open_motions = int(session.execute(select(func.count()).select_from(Motion).where(
        Motion.round_id == rnd.id, Motion.status == "proposed")).scalar_one())
    return Progress(n, themes, n * themes, n * themes - missing_lines, result.problems, open_motions)


def simulate(session: Session, rnd: EvalRound, draft: rules.Ruleset) -> rules.Simulation:
    """A draft ruleset applied to this round's input (ratings, determinations, corrections as they stand), next to
    the round's own ruleset. Nothing is saved."""
    current = ruleset_of(session, rnd)
    engine_input = build_input(session, rnd, current)
    with rulesets.engine_errors():
        return rules.simulate(engine_input, current, draft)
