"""The credit grade rule (信用等级规则) of a ruleset: which grade (AAA, AA, A ...) a household's year earns, from its
points earned and deducted and its red and black postings. Plain data and pure functions, ints only.

A household's year is graded by the first grade, best first, whose conditions it meets; one meeting none gets the
fallback grade (不评级). A grade's conditions:
- `min_red`: at least this many red-list postings in the year (None: no condition);
- `min_net`: at least this many points earned net (earned minus deducted; None: no condition);
- `red_or_net`: with both of the above set, meeting either is enough (default: both are needed);
- `max_black`: at most this many black-list postings left standing (not lifted through rectification);
- `lifted_black_counts`: a black posting lifted through rectification counts toward `max_black` too.
With `ungraded_without_points`, a year without any points earned gets the fallback whatever else it holds.

The defaults are the county's rule as it stood before it became part of the ruleset: AAA = 2 red postings and 100
points net; AA = 1 red posting or 60 points net; A = net points above zero; each with no black posting left standing
(a lifted one does not count); no points earned = 不评级.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

FALLBACK: Final = "不评级"


@dataclass(frozen=True)
class CreditRecord:
    """A household's year as the rule sees it. `black`: black postings left standing (not lifted, not voided);
    `lifted`: black postings lifted through rectification."""

    earned: int
    deducted: int
    red: int
    black: int
    lifted: int = 0

    @property
    def net(self) -> int:
        return self.earned - self.deducted


@dataclass(frozen=True)
class CreditGrade:
    """One credit grade and the conditions a household's year must meet for it (see the module's docstring)."""

    code: str
    min_red: int | None = None
    min_net: int | None = None
    red_or_net: bool = False
    max_black: int = 0
    lifted_black_counts: bool = False

    def met_by(self, rec: CreditRecord) -> bool:
        """Does the year meet every condition of this grade?"""
        black = rec.black + (rec.lifted if self.lifted_black_counts else 0)
        if black > self.max_black:
            return False
        red_ok = self.min_red is None or rec.red >= self.min_red
        net_ok = self.min_net is None or rec.net >= self.min_net
        if self.red_or_net and self.min_red is not None and self.min_net is not None:
            return red_ok or net_ok
        return red_ok and net_ok

    def describe(self) -> str:
        """The conditions in words, e.g. 全年上红榜至少 2 次，且净得积分至少 100 分；没有未移出的黑榜."""
        red = f"全年上红榜至少 {self.min_red} 次" if self.min_red else ""
        net = f"净得积分至少 {self.min_net} 分" if self.min_net is not None else ""
        joined = "，".join(x for x in (red, net) if x)
        if red and net:
            joined = f"{red}{'或' if self.red_or_net else '，且'}{net}"
        if self.lifted_black_counts:
            black = ("全年没有上过黑榜（经整改移出的也算）" if self.max_black == 0
                     else f"全年上黑榜不超过 {self.max_black} 次（经整改移出的也算）")
        else:
            black = ("没有未移出的黑榜（经整改移出的不计）" if self.max_black == 0
                     else f"未移出的黑榜不超过 {self.max_black} 次（经整改移出的不计）")
        return f"{joined}；{black}" if joined else black


def _default_grades() -> tuple[CreditGrade, ...]:
    return (CreditGrade("AAA", min_red=2, min_net=100),
            CreditGrade("AA", min_red=1, min_net=60, red_or_net=True),
            CreditGrade("A", min_net=1))


@dataclass(frozen=True)
class CreditRule:
    """The ordered grades (best first), the fallback grade and whether a year without points earned is not graded."""

    grades: tuple[CreditGrade, ...] = field(default_factory=_default_grades)
    fallback: str = FALLBACK
    ungraded_without_points: bool = True

    def grade(self, rec: CreditRecord) -> str:
        """The code of the first grade the year meets, or the fallback."""
        if self.ungraded_without_points and rec.earned == 0:
            return self.fallback
        return next((g.code for g in self.grades if g.met_by(rec)), self.fallback)

    def codes(self) -> tuple[str, ...]:
        """Every grade a year can get, best first, the fallback last."""
        return (*(g.code for g in self.grades), self.fallback)

    def describe(self) -> list[tuple[str, str]]:
        """(grade, conditions in words) for each grade and the fallback: the rule as a page shows it."""
        out = [(g.code, g.describe()) for g in self.grades]
        last = "达不到以上任何一级" if self.grades else "所有农户"
        if self.ungraded_without_points and self.fallback == FALLBACK:
            last += "；全年没有得到积分的也不评级"
        elif self.ungraded_without_points:
            last += f"；全年没有得到积分的也评为“{self.fallback}”"
        out.append((self.fallback, last))
        return out

    def unreachable(self) -> list[tuple[int, int]]:
        """(earlier, later) grade positions (from 0) where every year meeting the later grade also meets the earlier
        one, so the later is never given: grades out of order. Each later grade once, with the first such earlier."""
        out = []
        for j, later in enumerate(self.grades):
            i = next((i for i, earlier in enumerate(self.grades[:j]) if _implies(later, earlier)), None)
            if i is not None:
                out.append((i, j))
        return out


_LOW: Final = -(10**12)  # "no net condition": below any net a year can have


def _corners(g: CreditGrade) -> list[tuple[int, int]]:
    """The least (red, net) points of the set of years meeting the red and net conditions (the set is upward
    closed: a year with more red postings or more points meets them too)."""
    red, net = g.min_red or 0, _LOW if g.min_net is None else g.min_net
    if g.red_or_net and g.min_red is not None and g.min_net is not None:
        return [(red, _LOW), (0, net)]
    return [(red, net)]


def _implies(a: CreditGrade, b: CreditGrade) -> bool:
    """Does every year meeting `a` meet `b`? Red and net points are independent of the black postings, so `a`'s
    red/net set must lie in `b`'s and its black set in `b`'s."""
    for red, net in _corners(a):
        probe = CreditRecord(earned=max(net, 0), deducted=max(net, 0) - net, red=red, black=0)
        if not b.met_by(probe):
            return False
    return a.max_black <= b.max_black and (a.lifted_black_counts or not b.lifted_black_counts)
