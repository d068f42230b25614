"""The demo's village whose committee members rate every household separately (委员各自评分, panel rounds), so that
the fairness page (公平性提示) has something to show: one member, of the village's commonest clan, rates the
households of his surname two grades higher than the others do and the other households often a grade lower (far
from the other members, favouring one surname); the other members agree with each other up to an occasional grade;
and a few households are given 良 on every theme month after month (rated identically for many months)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.auth.models import User
from app.committee import service as committee
from app.core.context import Actor
from app.evaluation.service import rounds
from app.reports.service.fairness import surname_of

SCALE = ("优", "良", "中", "差")  # best first
OUTLIER = 4  # the member out of line: the committee's fifth (see app.demo.rounds.MEMBER_NAMES)
OUTLIER_GIVEN = "国强"
STEADY = 4  # households rated 良 on every theme every month
STEADY_GRADE = "良"
STRICT = 0.75  # how often the member out of line rates a household of another surname a grade lower
SLIP = 0.15  # how often any other member differs from the true grade by one


@dataclass(frozen=True)
class Plan:
    surname: str  # the clan the member out of line belongs to and favours
    home: int  # his household
    favoured: frozenset[int]  # households of that surname
    steady: frozenset[int]


def as_member(user: User) -> Actor:
    return Actor(user_id=user.id, name=f"{user.display_name}({user.login})", role="committee_member")


def plan(household_ids: Sequence[int], heads: Mapping[int, str]) -> Plan:
    """The clan: the commonest surname among the heads that has at most a fifth of the households (or two), the
    first household's on a tie; the member out of line lives in one of its households if it has two or more (so
    that he rates the others), else in the first household of another surname. The steady households are taken
    from the end of the roster."""
    surnames = [surname_of(heads.get(h, "")) for h in household_ids]
    counts = Counter(s for s in surnames if s)
    cap = max(2, len(household_ids) // 5)
    fit = [s for s in counts if counts[s] <= cap] or list(counts)
    clan = max(fit, key=lambda s: (counts[s], -surnames.index(s))) if fit else ""
    favoured = [h for h, s in zip(household_ids, surnames, strict=True) if s == clan]
    others = [h for h in household_ids if h not in favoured]
    home = favoured[0] if len(favoured) >= 2 or not others else others[0]
    rest = [h for h in others if h != home]
    steady = rest[len(rest) - STEADY:] if len(rest) > STEADY * 3 else []
    return Plan(clan, home, frozenset(favoured), frozenset(steady))


def member_names(p: Plan, names: Sequence[str]) -> list[str]:
    """The committee's names with the member out of line of the clan's surname."""
    out = list(names)
    out[OUTLIER] = (p.surname or "郑") + OUTLIER_GIVEN
    return out


def homes(p: Plan, household_ids: Sequence[int]) -> list[int]:
    """The households the committee members are linked to, in the order app.demo.rounds.make_committee takes them: the
    member out of line's own in his place."""
    rest = [h for h in household_ids if h != p.home]
    return [*rest[:OUTLIER], p.home, *rest[OUTLIER:]]


def _shift(grade: str, by: int) -> str:
    return SCALE[min(max(SCALE.index(grade) + by, 0), len(SCALE) - 1)]


def rate(session: Session, round_id: int, village_id: int, cells: Sequence[rounds.Cell], members: Sequence[User],
         p: Plan, rng: random.Random) -> None:
    """Each member's own grades for the cells (the committee's true grades), saved as that member, households the
    member may not rate left out."""
    elig = committee.eligibility(session, village_id)
    outlier = members[OUTLIER].id if len(members) > OUTLIER else None
    for u in members:
        assert u.id is not None
        mine = []
        for c in cells:
            if not c.grade or not elig.may_rate(u.id, c.household_id):
                continue
            grade = c.grade
            if c.household_id in p.steady:
                pass
            elif u.id == outlier:
                if c.household_id in p.favoured:
                    grade = _shift(grade, -2)
                elif rng.random() < STRICT:
                    grade = _shift(grade, 1)
            elif rng.random() < SLIP:
                grade = _shift(grade, rng.choice((-1, 1)))
            mine.append(rounds.Cell(c.household_id, c.theme, grade))
        rounds.save_ratings(session, as_member(u), round_id, mine, rater_id=u.id)
