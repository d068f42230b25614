"""A round's results as they are stored (the lines and postings as JSON) and as the pages show them: stored once
finalised, else computed as the round stands; the month before, a household's rounds, the grades repeated."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import rules
from app.core.month import prev_month
from app.errors import NotFound
from app.evaluation.models import EvalRound, RoundResult
from app.evaluation.service.compute import compute
from app.evaluation.service.reading import round_of_month
from app.evaluation.service.roster import roster
from app.households.models import Household

_LINE_FIELDS = tuple(f.name for f in dataclasses.fields(rules.PointsLine))
_POSTING_FIELDS = tuple(f.name for f in dataclasses.fields(rules.ListPosting))


def _line_dict(line: rules.PointsLine) -> dict[str, Any]:
    """A line as stored (JSON): empty fields left out. (Not dataclasses.asdict: it deep-copies, 30x slower.)"""
    d = {k: getattr(line, k) for k in _LINE_FIELDS}
    d["raters"] = list(line.raters)
    return {k: v for k, v in d.items() if v is not None and v != "" and v != []}


def _posting_dict(p: rules.ListPosting) -> dict[str, Any]:
    return {k: v for k in _POSTING_FIELDS if (v := getattr(p, k)) is not None and v != ""}


def grades_of(lines: Iterable[rules.PointsLine]) -> dict[str, str]:
    """The combined grade of each theme line."""
    return {ln.code: ln.grade for ln in lines if ln.kind == "theme" and ln.grade}


def stored_results(session: Session, round_id: int) -> dict[int, RoundResult]:
    return {r.household_id: r for r in session.execute(select(RoundResult).where(
        RoundResult.round_id == round_id)).scalars()}


def previous_totals(session: Session, rnd: EvalRound) -> dict[int, int]:
    past = round_of_month(session, rnd.village_id, prev_month(rnd.month))
    if past is None or past.status != "finalised":
        return {}
    return {hid: total for hid, total in session.execute(select(RoundResult.household_id, RoundResult.total).where(
        RoundResult.round_id == past.id)).tuples()}


def household_rounds(session: Session, household_id: int, *, public_only: bool) -> list[tuple[EvalRound, RoundResult | None]]:
    """The rounds of a household's village that include it, newest first; for the household itself only the rounds
    made public (publicised or finalised)."""
    h = session.get(Household, household_id)
    if h is None:
        raise NotFound()
    q = select(EvalRound).where(EvalRound.village_id == h.village_id)
    if public_only:
        q = q.where(EvalRound.status.in_(["publicised", "finalised"]))
    found = list(session.execute(q.order_by(EvalRound.month.desc())).scalars())
    results = {r.round_id: r for r in session.execute(select(RoundResult).where(
        RoundResult.household_id == household_id, RoundResult.round_id.in_([r.id for r in found]))).scalars()}
    return [(rnd, results.get(rnd.id)) for rnd in found]


# ---- what the pages show -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HouseholdView:
    household_id: int
    total: int
    lines: list[dict[str, Any]]
    postings: list[dict[str, Any]]
    note: str = ""
    problems: tuple[str, ...] = ()
    ledger_tx_id: int | None = None
    stored: bool = False  # finalised: read from the stored results


def _views_from_result(result: rules.RoundResult, notes: dict[int, str]) -> dict[int, HouseholdView]:
    problems: dict[int, list[str]] = defaultdict(list)
    for p in result.problems:
        problems[p.household_id].append(p.message)
    views = {h.household_id: HouseholdView(h.household_id, h.total, [_line_dict(ln) for ln in h.lines],
                                           [_posting_dict(p) for p in h.postings], notes.get(h.household_id, ""),
                                           tuple(problems.get(h.household_id, ())))
             for h in result.households}
    for sk in result.skipped:
        views[sk.household_id] = HouseholdView(sk.household_id, 0, [], [], notes.get(sk.household_id, ""),
                                               tuple(problems.get(sk.household_id, ())) or (sk.reason,))
    return views


def views(session: Session, rnd: EvalRound, result: rules.RoundResult | None = None) -> dict[int, HouseholdView]:
    """Every household's result: stored once finalised, else computed as it stands."""
    if rnd.status == "finalised":
        return {r.household_id: HouseholdView(r.household_id, r.total, list(r.lines), list(r.postings), r.note,
                                              (), r.ledger_tx_id, True)
                for r in stored_results(session, rnd.id).values()}
    notes = {e.household_id: e.note for e in roster(session, rnd)}
    return _views_from_result(result or compute(session, rnd), notes)


def household_view(session: Session, rnd: EvalRound, household_id: int) -> HouseholdView | None:
    return views(session, rnd).get(household_id)


def identical_months(session: Session, rnd: EvalRound, result: rules.RoundResult | None = None,
                     depth: int = 12) -> dict[int, int]:
    """Per household: how many months running (this one included, then the finalised rounds before it) it got
    exactly the same grade on every theme. `result`: the round's, when the caller has computed it."""
    current = {h.household_id: tuple(sorted((ln["code"], ln["grade"]) for ln in h.lines
                                            if ln.get("kind") == "theme" and ln.get("grade")))
               for h in views(session, rnd, result).values()}
    count = {hid: 1 for hid, g in current.items() if g}
    alive = set(count)
    month = prev_month(rnd.month)
    for _ in range(depth):
        past = round_of_month(session, rnd.village_id, month)
        if past is None or past.status != "finalised" or not alive:
            break
        seen = set()
        for hid, stored in session.execute(select(RoundResult.household_id, RoundResult.grades).where(
                RoundResult.round_id == past.id, RoundResult.household_id.in_(list(alive)))).tuples():
            seen.add(hid)
            if tuple(sorted(stored.items())) == current[hid]:
                count[hid] += 1
            else:
                alive.discard(hid)
        alive &= seen
        month = prev_month(month)
    return count


@dataclass(frozen=True)
class StoredTotals:
    """A finalised round's figures, from its stored results (as corrected)."""

    households_eligible: int
    points_issued: int
    points_deducted: int
    red_households: int
    black_households: int


def stored_totals(results: Iterable[HouseholdView]) -> StoredTotals:
    rows = list(results)
    return StoredTotals(
        households_eligible=len(rows),
        points_issued=sum(ln["points"] for v in rows for ln in v.lines if ln.get("points", 0) > 0),
        points_deducted=-sum(ln["points"] for v in rows for ln in v.lines if ln.get("points", 0) < 0),
        red_households=sum(1 for v in rows if any(p.get("list") == "red" for p in v.postings)),
        black_households=sum(1 for v in rows if any(p.get("list") == "black" for p in v.postings)))
