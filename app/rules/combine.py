"""Combining a panel's grades into one grade, with the Chinese explanation of how.

Grades are compared by rank only. Arithmetic uses each grade's position on the theme's scale (worst = 1, next = 2 ...,
best = n), so ranks such as 1/2/3/4 and 0/10/50/100 combine alike. Averages are exact fractions rounded half up to
the nearest position ("round half up to the nearest grade by rank"):
- median: the middle grade; with an even count the midpoint of the two middle grades, rounded half up (so 良,优 -> 优
  and 中,优 -> 良);
- mean: the average position, rounded half up;
- trimmed_mean: with three or more grades, one highest and one lowest are dropped first, then the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from app.rules.schema import Combine, Grade

HALF = Fraction(1, 2)


def round_half_up(x: Fraction) -> int:
    """The nearest integer, halves upward (2.5 -> 3)."""
    return math.floor(x + HALF)


def decimal2(x: Fraction) -> str:
    """Exact two-decimal display, halves upward: 11/3 -> "3.67"."""
    hundredths = round_half_up(x * 100)
    sign = "-" if hundredths < 0 else ""
    whole, frac = divmod(abs(hundredths), 100)
    return f"{sign}{whole}.{frac:02d}"


def labels(grades: Sequence[Grade]) -> str:
    """"优,优,良": the grades' labels, comma separated."""
    return ",".join(g.label for g in grades)


def scale_note(scale: Sequence[Grade]) -> str:
    """"差=1…优=4": how positions are numbered, for an explanation."""
    return f"{scale[0].label}=1…{scale[-1].label}={len(scale)}"


def combine(scale: Sequence[Grade], given: Sequence[Grade], method: Combine) -> tuple[Grade, str]:
    """The combined grade of `given` (non-empty) on `scale` (worst to best), and the explanation fragment that
    follows "委员评分 优,优,良" (e.g. " → 中位数 优")."""
    position = {g.code: i for i, g in enumerate(scale, 1)}
    ordered = sorted(given, key=lambda g: position[g.code], reverse=True)
    if len(ordered) == 1:
        return ordered[0], ""
    if method == "median":
        return _median(scale, ordered, position)
    if method == "trimmed_mean":
        return _trimmed_mean(scale, ordered, position)
    return _mean(scale, ordered, position, "平均")


def _median(scale: Sequence[Grade], ordered: Sequence[Grade], position: dict[str, int]) -> tuple[Grade, str]:
    n = len(ordered)
    if n % 2:
        mid = ordered[n // 2]
        return mid, f" → 中位数 {mid.label}"
    high, low = ordered[n // 2 - 1], ordered[n // 2]
    if high.code == low.code:
        return high, f" → 中位数 {high.label}"
    chosen = scale[round_half_up(Fraction(position[high.code] + position[low.code], 2)) - 1]
    return chosen, f" → 中位数在 {low.label} 与 {high.label} 之间，按等级顺序四舍五入为 {chosen.label}"


def _mean(scale: Sequence[Grade], ordered: Sequence[Grade], position: dict[str, int], what: str) -> tuple[Grade, str]:
    avg = Fraction(sum(position[g.code] for g in ordered), len(ordered))
    chosen = scale[round_half_up(avg) - 1]
    return chosen, f" → {what} {decimal2(avg)}（{scale_note(scale)}）→ 四舍五入为 {chosen.label}"


def _trimmed_mean(scale: Sequence[Grade], ordered: Sequence[Grade], position: dict[str, int]) -> tuple[Grade, str]:
    if len(ordered) < 3:
        grade, text = _mean(scale, ordered, position, "平均")
        return grade, " → 不足 3 人，不去掉最高最低" + text
    kept = ordered[1:-1]
    grade, text = _mean(scale, kept, position, "平均")
    return grade, f" → 去掉一个最高、一个最低后 {labels(kept)}" + text
