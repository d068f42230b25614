"""The engine's input and output: frozen dataclasses of plain values (ints, strings, tuples).

Ids are the caller's (households, committee members, family members, determination records); the engine only
compares and sorts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

# --- input ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rating:
    """The rating of one household on one theme this month.

    Panel (`consensus=False`): `grades[i]` is the grade given by eligible committee member `raters[i]`; the quorum
    counts the raters. Consensus (`consensus=True`): `grades` holds the one grade the committee agreed on and `raters`
    the eligible members present; the quorum counts those present. Recusal is the caller's job: pass eligible members
    only.
    """

    household_id: int
    theme: str
    grades: tuple[str, ...]
    raters: tuple[int, ...]
    consensus: bool = False

    @classmethod
    def panel(cls, household_id: int, theme: str, by_rater: Mapping[int, str]) -> Rating:
        """A panel rating from {rater id: grade code}."""
        items = sorted(by_rater.items())
        return cls(household_id, theme, tuple(g for _, g in items), tuple(r for r, _ in items))

    @classmethod
    def agreed(cls, household_id: int, theme: str, grade: str, present: Iterable[int]) -> Rating:
        """A consensus rating: the committee's agreed grade, entered with the eligible members present."""
        return cls(household_id, theme, (grade,), tuple(sorted(present)), consensus=True)


@dataclass(frozen=True)
class PassedDetermination:
    """A determination whose committee vote passed. `member_name` is required when the determination names a member
    (不孝儿女); it is ignored (never shown) otherwise. `ref` is the caller's record id, carried to lines and postings."""

    household_id: int
    code: str
    member_id: int | None = None
    member_name: str | None = None
    note: str = ""
    ref: int | None = None


@dataclass(frozen=True)
class WorstRun:
    """How many consecutive months a household's theme has been graded at the scale's lowest rank. As input: the
    months immediately before this one (a month without a rating ends a run). As output: including this month."""

    household_id: int
    theme: str
    months: int


@dataclass(frozen=True)
class RoundInput:
    """One village's month: the households eligible this month (joined before / left after, as the caller decides),
    their ratings, the passed determinations and the worst-grade history."""

    village_id: int
    month: int
    households: tuple[int, ...]
    ratings: tuple[Rating, ...] = ()
    determinations: tuple[PassedDetermination, ...] = ()
    history: tuple[WorstRun, ...] = ()


# --- output ---------------------------------------------------------------------------------------------------------

LineKind = Literal["theme", "determination"]
PostingList = Literal["red", "black"]
PostingSource = Literal["determination", "red_policy", "black_policy"]
RED_POLICY_CODE = "red_policy"


@dataclass(frozen=True)
class PointsLine:
    """One line of a household's points. `code` is the theme or determination code, `rule` the rule applied
    (ENV-优, UNFILIAL). `theme` is the theme whose monthly cap the line counts toward (None: no cap).
    `raw_points` is what the rule gives, `points` what counts after the cap (`capped` when they differ)."""

    kind: LineKind
    code: str
    rule: str
    points: int
    raw_points: int
    capped: bool
    explanation: str
    theme: str | None = None
    grade: str | None = None
    raters: tuple[int, ...] = ()
    member_id: int | None = None
    member_name: str | None = None
    ref: int | None = None
    note: str = ""


@dataclass(frozen=True)
class ListPosting:
    """A proposed red/black list posting. `source` and `code` name the rule that produced it: a determination
    (code = its code), the red policy (code = "red_policy") or the black policy's worst-grade rule (code = the
    determination it posts, `theme` = the theme graded lowest)."""

    household_id: int
    list: PostingList
    source: PostingSource
    code: str
    reason: str
    months_shown: int
    explanation: str
    theme: str | None = None
    member_id: int | None = None
    member_name: str | None = None
    ref: int | None = None

    def key(self) -> tuple[object, ...]:
        """What identifies the posting regardless of its wording (used to sort and to compare two rulesets)."""
        return (self.household_id, self.list, self.source, self.code, self.theme or "", self.member_id is not None,
                self.member_id or 0, self.member_name or "", self.ref is not None, self.ref or 0, self.months_shown)


@dataclass(frozen=True)
class Problem:
    """Something the committee should see: a theme without quorum or without any rating, input for a household
    not eligible this month. The affected line is absent, never silently zero."""

    household_id: int
    theme: str | None
    message: str


@dataclass(frozen=True)
class HouseholdResult:
    """One household's result: `total` is the sum of the lines' points."""

    household_id: int
    lines: tuple[PointsLine, ...]
    total: int
    postings: tuple[ListPosting, ...]
    worst_runs: tuple[WorstRun, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """An eligible household with no points line at all (no rating reached quorum, no determination)."""

    household_id: int
    reason: str


@dataclass(frozen=True)
class RoundTotals:
    """Round-level figures. `points_deducted` is positive. `listed_households` are on either list this round;
    `coverage_pct` is their share of the eligible households (the annual target is counted over a year elsewhere)."""

    households_eligible: int
    households_rated: int
    households_skipped: int
    points_issued: int
    points_deducted: int
    issued_fen: int
    red_postings: int
    black_postings: int
    red_households: int
    black_households: int
    listed_households: int
    problems: int

    @property
    def net_points(self) -> int:
        return self.points_issued - self.points_deducted

    @property
    def coverage_pct(self) -> float:
        if not self.households_eligible:
            return 0.0
        return round(100 * self.listed_households / self.households_eligible, 1)


@dataclass(frozen=True)
class RoundResult:
    """Everything the engine says about a round; all tuples sorted (households by id)."""

    village_id: int
    month: int
    ruleset_code: str
    ruleset_version: int
    households: tuple[HouseholdResult, ...]
    skipped: tuple[Skipped, ...]
    problems: tuple[Problem, ...]
    totals: RoundTotals

    def household(self, household_id: int) -> HouseholdResult | None:
        """One household's result, or None (skipped or not eligible)."""
        return next((h for h in self.households if h.household_id == household_id), None)


@dataclass(frozen=True)
class HouseholdChange:
    """How one household's result differs between ruleset A and ruleset B (skipped counts as total 0)."""

    household_id: int
    total_a: int
    total_b: int
    postings_removed: tuple[ListPosting, ...]
    postings_added: tuple[ListPosting, ...]
    lines_a: tuple[PointsLine, ...]
    lines_b: tuple[PointsLine, ...]

    @property
    def delta(self) -> int:
        return self.total_b - self.total_a


@dataclass(frozen=True)
class TotalsChange:
    """Round figures under A and under B, as (a, b) pairs."""

    points_issued: tuple[int, int]
    points_deducted: tuple[int, int]
    issued_fen: tuple[int, int]
    red_households: tuple[int, int]
    black_households: tuple[int, int]
    listed_households: tuple[int, int]
    coverage_pct: tuple[float, float]


@dataclass(frozen=True)
class Simulation:
    """Ruleset B applied to the same input as ruleset A: the households whose points or postings change, and the
    totals side by side. Nothing is saved."""

    a: RoundResult
    b: RoundResult
    changes: tuple[HouseholdChange, ...]
    totals: TotalsChange
