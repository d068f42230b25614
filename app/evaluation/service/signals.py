"""Review signals (复核提示): what a township reviewer may want to look at in a village's monthly round.

Signals point at something unusual; they are never verdicts. Wording is neutral ("请留意…", "可能…"): a village where
every household keeps its yard clean legitimately grades everyone 优.

Pure: the rules engine's output plus plain mappings the caller builds; no database, no web. Deterministic: the same
input gives the same list in the same order, whatever the iteration order of the mappings.

Signals, in display order (within a level):
- uniform_theme (notice): every household rated on a theme (at least 5) got the same combined grade; one per theme.
- uniform_village (look): every rated household (at least 5) has the same total.
- rater_far: in a panel round, a committee member's grades are on average far from the median of the other members'
  grades for the same household and theme (distance in scale positions, worst = 1 … best = n). Counted over the
  member's comparable grades only (cells where at least 2 other members graded), and only for a member with at least
  10 of them. Mean distance >= 1 → look, >= 0.6 → notice.
- rater_lenient: the same comparison, signed: on average at least 0.8 position above (or below) the others
  (look from 1 position).
- jump: households whose total moved from last month's by at least max(20, half of last month's total), either way;
  look when more than 10 % of the households compared moved that much.
- skipped: households without any points line, and the round's problems (missing ratings, no quorum …): look.
- unchanged (notice): households with exactly the same grades on every theme for at least 6 months running.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Final

from app.rules.combine import round_half_up
from app.rules.model import HouseholdResult, RoundResult
from app.rules.schema import Ruleset

__all__ = ["KINDS", "LEVELS", "Signal", "review_signals"]

KINDS: Final = ("uniform_theme", "uniform_village", "rater_far", "rater_lenient", "jump", "skipped", "unchanged")
LEVELS: Final = ("look", "notice")  # look = worth a closer look; listed first

MIN_UNIFORM_HOUSEHOLDS: Final = 5
MIN_RATER_GRADES: Final = 10
MIN_OTHER_RATERS: Final = 2
FAR_LOOK: Final = Fraction(1)
FAR_NOTICE: Final = Fraction(3, 5)
LENIENT: Final = Fraction(4, 5)
JUMP_MIN_POINTS: Final = 20
JUMP_LOOK_SHARE: Final = Fraction(1, 10)
UNCHANGED_MONTHS: Final = 6
MAX_LISTED: Final = 10


@dataclass(frozen=True)
class Signal:
    """Something to look at. `kind` is one of KINDS, `level` one of LEVELS; `message` is Chinese with the numbers."""

    kind: str
    level: str
    message: str
    household_ids: tuple[int, ...] = ()
    rater_id: int | None = None
    theme: str | None = None


def review_signals(
    result: RoundResult,
    ruleset: Ruleset,
    *,
    panel: Mapping[tuple[int, str], Mapping[int, str]] | None = None,
    previous_totals: Mapping[int, int] | None = None,
    member_names: Mapping[int, str] | None = None,
    household_labels: Mapping[int, str] | None = None,
    identical_months: Mapping[int, int] | None = None,
) -> list[Signal]:
    """The round's review signals, "look" first, then in KINDS order.

    `panel`: (household id, theme code) -> {committee member id: grade code}, for a panel round (grades of unknown
    themes or outside the scale are ignored). `previous_totals`: household id -> last month's total.
    `identical_months`: household id -> consecutive months with exactly the same grade on every theme (this month
    included). `member_names` / `household_labels` are used in the messages (else "委员 #id" / "户 #id")."""
    labels = household_labels or {}
    names = member_names or {}
    out: list[Signal] = []
    out += _uniform_themes(result, ruleset)
    out += _uniform_village(result)
    if panel:
        out += _raters(panel, ruleset, names)
    if previous_totals:
        out += _jumps(result, previous_totals, labels)
    out += _skipped(result)
    if identical_months:
        out += _unchanged(identical_months, labels)
    return sorted(out, key=lambda s: (LEVELS.index(s.level), KINDS.index(s.kind)))  # stable: generation order within


# --- helpers --------------------------------------------------------------------------------------------------------


def _num(x: Fraction) -> str:
    """A number for a message: at most two decimals, halves upward, no trailing zeros (2, 0.6, 0.67)."""
    hundredths = round_half_up(x * 100)
    sign = "-" if hundredths < 0 else ""
    whole, frac = divmod(abs(hundredths), 100)
    return f"{sign}{whole}" if not frac else f"{sign}{whole}.{frac:02d}".rstrip("0")


def _household(hid: int, labels: Mapping[int, str]) -> str:
    label = labels.get(hid)
    return label if label else f"户 #{hid}"


def _listed(items: list[str], total: int) -> str:
    """Up to MAX_LISTED items joined with 、, and "等 N 户" when there are more."""
    text = "、".join(items[:MAX_LISTED])
    return text if total <= MAX_LISTED else f"{text}等 {total} 户"


def _theme_lines(h: HouseholdResult) -> dict[str, str]:
    """Theme code -> combined grade code of the household's theme lines."""
    return {line.code: line.grade for line in h.lines if line.kind == "theme" and line.grade is not None}


# --- uniform grades -------------------------------------------------------------------------------------------------


def _uniform_themes(result: RoundResult, ruleset: Ruleset) -> list[Signal]:
    graded = [_theme_lines(h) for h in result.households]
    out = []
    for theme in ruleset.themes:
        grades = [g[theme.code] for g in graded if theme.code in g]
        if len(grades) < MIN_UNIFORM_HOUSEHOLDS or len(set(grades)) != 1:
            continue
        grade = theme.grade(grades[0])
        label = grade.label if grade is not None else grades[0]
        out.append(Signal(
            kind="uniform_theme", level="notice", theme=theme.code,
            message=(f"请留意：{theme.name}一项，本月评分的 {len(grades)} 户全部评为“{label}”。"
                     "可能确实如此，也可能没有逐户区分，可抽查几户核实。"),
        ))
    return out


def _uniform_village(result: RoundResult) -> list[Signal]:
    totals = [h.total for h in result.households if _theme_lines(h)]
    if len(totals) < MIN_UNIFORM_HOUSEHOLDS or len(set(totals)) != 1:
        return []
    return [Signal(
        kind="uniform_village", level="look",
        message=(f"请留意：本月评分的 {len(totals)} 户总分全部为 {totals[0]} 分。"
                 "可能没有逐户区分评分，建议抽查几户核实。"),
    )]


# --- committee members compared with each other ---------------------------------------------------------------------


def median(values: list[int]) -> Fraction:
    ordered = sorted(values)
    n = len(ordered)
    if n % 2:
        return Fraction(ordered[n // 2])
    return Fraction(ordered[n // 2 - 1] + ordered[n // 2], 2)


def _rater_differences(panel: Mapping[tuple[int, str], Mapping[int, str]], ruleset: Ruleset) -> dict[int, list[Fraction]]:
    """Member id -> signed differences (member's position minus the other members' median), one per comparable cell."""
    positions = {t.code: {g.code: i for i, g in enumerate(t.scale(), 1)} for t in ruleset.themes}
    diffs: dict[int, list[Fraction]] = {}
    for (_hid, theme), by_rater in sorted(panel.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        scale = positions.get(theme)
        if scale is None:
            continue
        placed = {rater: scale[code] for rater, code in by_rater.items() if code in scale}
        if len(placed) < MIN_OTHER_RATERS + 1:
            continue
        for rater, pos in sorted(placed.items()):
            others = [p for r, p in placed.items() if r != rater]
            diffs.setdefault(rater, []).append(pos - median(others))
    return diffs


def _raters(panel: Mapping[tuple[int, str], Mapping[int, str]], ruleset: Ruleset, names: Mapping[int, str]) -> list[Signal]:
    far: list[Signal] = []
    lenient: list[Signal] = []
    for rater, diffs in sorted(_rater_differences(panel, ruleset).items()):
        n = len(diffs)
        if n < MIN_RATER_GRADES:
            continue
        who = names.get(rater) or f"委员 #{rater}"
        distance = sum((abs(d) for d in diffs), Fraction(0)) / n
        apart = sum(1 for d in diffs if d)
        if distance >= FAR_NOTICE:
            far.append(Signal(
                kind="rater_far", level="look" if distance >= FAR_LOOK else "notice", rater_id=rater,
                message=(f"请留意：{who} 本月有 {n} 项评分可与其他委员对照，与其他委员评分的中位数平均相差 "
                         f"{_num(distance)} 个等级（{apart} 项不一致）。可能评分尺度与其他委员不同，可了解情况。"),
            ))
        signed = sum(diffs, Fraction(0)) / n
        if abs(signed) >= LENIENT:
            direction = "高" if signed > 0 else "低"
            lenient.append(Signal(
                kind="rater_lenient", level="look" if abs(signed) >= FAR_LOOK else "notice", rater_id=rater,
                message=(f"请留意：{who} 本月的 {n} 项评分平均比其他委员{direction} {_num(abs(signed))} 个等级。"
                         f"可能整体评得偏{direction}，可了解情况。"),
            ))
    return far + lenient


# --- month to month -------------------------------------------------------------------------------------------------


def _jumps(result: RoundResult, previous: Mapping[int, int], labels: Mapping[int, str]) -> list[Signal]:
    compared = [(h.household_id, previous[h.household_id], h.total) for h in result.households
                if h.household_id in previous]
    jumped = [(hid, before, now) for hid, before, now in compared
              if abs(now - before) >= JUMP_MIN_POINTS and 2 * abs(now - before) >= abs(before)]
    if not jumped:
        return []
    jumped.sort(key=lambda x: (-abs(x[2] - x[1]), x[0]))
    items = [f"{_household(hid, labels)} {before}→{now}（{now - before:+d}）" for hid, before, now in jumped]
    share = Fraction(len(jumped), len(compared))
    return [Signal(
        kind="jump", level="look" if share > JUMP_LOOK_SHARE else "notice",
        household_ids=tuple(hid for hid, _, _ in jumped),
        message=(f"请留意：与上月相比，{len(compared)} 户中有 {len(jumped)} 户总分变化较大"
                 f"（至少 {JUMP_MIN_POINTS} 分且至少为上月总分的一半）：{_listed(items, len(jumped))}。"
                 "可能情况确有变化，也可能评分口径有变，可核实。"),
    )]


def _unchanged(identical: Mapping[int, int], labels: Mapping[int, str]) -> list[Signal]:
    steady = sorted(((hid, m) for hid, m in identical.items() if m >= UNCHANGED_MONTHS), key=lambda x: (-x[1], x[0]))
    if not steady:
        return []
    items = [f"{_household(hid, labels)}（{m} 个月）" for hid, m in steady]
    return [Signal(
        kind="unchanged", level="notice", household_ids=tuple(hid for hid, _ in steady),
        message=(f"请留意：有 {len(steady)} 户已连续 {UNCHANGED_MONTHS} 个月以上各项等级完全相同："
                 f"{_listed(items, len(steady))}。可能情况稳定，也可能沿用了以往的评分，可抽查核实。"),
    )]


# --- incomplete rounds ----------------------------------------------------------------------------------------------


def _ids(items: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted(set(items)))


def _skipped(result: RoundResult) -> list[Signal]:
    if not result.skipped and not result.problems:
        return []
    parts = []
    if result.skipped:
        parts.append(f"{len(result.skipped)} 户本月没有任何计分项（未评分或评分人数不足）")
    if result.problems:
        affected = len({p.household_id for p in result.problems})
        parts.append(f"{len(result.problems)} 条评分问题（涉及 {affected} 户，如缺少评分、不足法定人数）")
    return [Signal(
        kind="skipped", level="look",
        household_ids=_ids([s.household_id for s in result.skipped] + [p.household_id for p in result.problems]),
        message=f"请留意：本月有 {'，另有 '.join(parts)}。这些户可能少计了积分，可核实是否需要补录。",
    )]
