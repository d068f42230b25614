"""Fairness signals across months (公平性提示, answering 人情分): what a township reviewer may want to look at in a
village's ratings over a period (a year, or the last months).

Signals point at something unusual; they are never verdicts. Wording is neutral ("请留意…", "可能…"), and every
message says on how much data it rests. Nothing is flagged on too little data.

Pure: plain data in (the panel grades already turned into scale positions, the households, the finalised combined
grades), a report out; no database, no web. Deterministic: the same input gives the same report in the same order,
whatever the iteration order of the mappings.

Distances are in scale positions (worst grade = 1 … best = n), as in app.evaluation.service.signals. A *comparable cell* is
one household × theme × month of a panel round in which the member and at least 2 other members graded; the member's
distance there is his or her position minus the median of the others' positions.

Signals, in display order (look first, then by KINDS, then by member and value):
- rater_far: a member's mean |distance| over the period >= 0.6 (notice), >= 1 (look); at least 10 comparable cells.
- rater_lenient: the member's mean signed distance >= 0.8 positions above (or below) the others (look from 1).
- rater_favours: for a member and one 村民小组 or one surname (the head's first character) with at least 10 comparable
  cells, the member's mean signed distance there minus the member's mean signed distance overall is >= 0.8 positions
  either way (look from 1): the member rates that group or surname higher (lower) than he or she rates the others,
  measured against the other members.
- uniform_months (look): months in which every household (at least 5) got exactly the same grade on every theme.
- unchanged (notice): households with exactly the same grade on every theme for at least 6 consecutive months of the
  period (finalised results).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

from app.core.month import month_label, next_month
from app.evaluation.service.signals import median
from app.rules.combine import round_half_up

__all__ = ["KINDS", "LEVELS", "Bias", "HouseholdInfo", "MemberRow", "Report", "Signal", "fairness_report",
           "surname_of"]

KINDS: Final = ("rater_far", "rater_lenient", "rater_favours", "uniform_months", "unchanged")
LEVELS: Final = ("look", "notice")  # look = worth a closer look; listed first
DIMENSIONS: Final = ("group", "surname")
DIMENSION_LABELS: Final = {"group": "村民小组", "surname": "姓氏"}

MIN_OTHER_RATERS: Final = 2
MIN_CELLS: Final = 10  # comparable cells, for a member overall and for a member × group / surname
FAR_LOOK: Final = Fraction(1)
FAR_NOTICE: Final = Fraction(3, 5)
LENIENT: Final = Fraction(4, 5)
FAVOURS: Final = Fraction(4, 5)
FAVOURS_LOOK: Final = Fraction(1)
MIN_UNIFORM_HOUSEHOLDS: Final = 5
UNCHANGED_MONTHS: Final = 6
MAX_LISTED: Final = 10

PanelCells = Mapping[tuple[int, int, str], Mapping[int, int]]  # (month, household, theme) -> {member: position}
MonthGrades = Mapping[int, Mapping[int, Mapping[str, str]]]  # month -> household -> theme -> combined grade


@dataclass(frozen=True)
class HouseholdInfo:
    """What the report needs of a household: a label for messages, its 村民小组's name ("" without) and surname."""

    label: str
    group: str = ""
    surname: str = ""
    group_sort: int = 0  # the group's number: groups are listed in this order, then by name


@dataclass(frozen=True)
class Signal:
    """Something to look at. `kind` is one of KINDS, `level` one of LEVELS; `message` is Chinese with the numbers.
    `dimension` ("group" | "surname") and `value` (the group's name, the surname) for rater_favours."""

    kind: str
    level: str
    message: str
    rater_id: int | None = None
    household_ids: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    dimension: str | None = None
    value: str | None = None
    cells: int = 0


@dataclass(frozen=True)
class Bias:
    """A member's ratings of one group or surname against the others: `mean` is the member's mean signed distance
    there, `excess` that minus the member's overall mean; `enough` when there are at least MIN_CELLS cells."""

    dimension: str
    value: str
    cells: int
    households: int
    mean: Fraction
    excess: Fraction
    enough: bool
    flagged: bool


@dataclass(frozen=True)
class MemberRow:
    rater_id: int
    name: str
    cells: int  # comparable cells
    months: int  # months with at least one comparable cell
    apart: int  # cells where the member's position differs from the others' median
    mean_signed: Fraction
    mean_abs: Fraction
    enough: bool
    flagged: bool
    biases: tuple[Bias, ...] = ()


@dataclass(frozen=True)
class Report:
    signals: tuple[Signal, ...]
    members: tuple[MemberRow, ...]  # flagged first, then by rater id
    panel_months: tuple[int, ...]  # months with panel grades
    result_months: tuple[int, ...]  # months with finalised results
    households: int  # households seen in either
    thresholds: dict[str, str] = field(default_factory=dict)


def surname_of(head_name: str) -> str:
    """The surname as the first character of the head's name (compound surnames are rare; "" without a name)."""
    name = (head_name or "").strip()
    return name[0] if name else ""


def num(x: Fraction) -> str:
    """A number for a message: at most two decimals, halves upward, no trailing zeros (2, 0.6, 0.67, -0.5)."""
    hundredths = round_half_up(x * 100)
    sign = "-" if hundredths < 0 else ""
    whole, frac = divmod(abs(hundredths), 100)
    return f"{sign}{whole}" if not frac else f"{sign}{whole}.{frac:02d}".rstrip("0")


def signed(x: Fraction) -> str:
    """A signed number (+0.5, -1, 0)."""
    return ("+" if x > 0 else "") + num(x)


def _mean(values: Iterable[Fraction]) -> Fraction:
    items = list(values)
    return sum(items, Fraction(0)) / len(items) if items else Fraction(0)


def _household(hid: int, households: Mapping[int, HouseholdInfo]) -> str:
    info = households.get(hid)
    return info.label if info and info.label else f"户 #{hid}"


def _listed(items: list[str], total: int, unit: str = "户") -> str:
    text = "、".join(items[:MAX_LISTED])
    return text if total <= MAX_LISTED else f"{text}等 {total} {unit}"


# --- committee members against each other --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Diff:
    month: int
    household_id: int
    value: Fraction  # member's position minus the others' median


def _differences(panel: PanelCells) -> dict[int, list[_Diff]]:
    """Member id -> one signed difference per comparable cell, in (month, household, theme) order."""
    out: dict[int, list[_Diff]] = {}
    for (month, hid, _theme), by_rater in sorted(panel.items(), key=lambda kv: kv[0]):
        placed = {r: p for r, p in by_rater.items() if r > 0}
        if len(placed) < MIN_OTHER_RATERS + 1:
            continue
        for rater, pos in sorted(placed.items()):
            others = [p for r, p in placed.items() if r != rater]
            out.setdefault(rater, []).append(_Diff(month, hid, pos - median(others)))
    return out


def _biases(diffs: list[_Diff], overall: Fraction, households: Mapping[int, HouseholdInfo]) -> list[Bias]:
    out = []
    for dim in DIMENSIONS:
        by_value: dict[str, list[_Diff]] = {}
        order: dict[str, int] = {}
        for d in diffs:
            info = households.get(d.household_id)
            value = (info.group if dim == "group" else info.surname) if info else ""
            if info and value:
                by_value.setdefault(value, []).append(d)
                order[value] = info.group_sort if dim == "group" else 0
        if len(by_value) < 2:  # one group (surname) only: nothing to compare it with
            continue
        for value, ds in sorted(by_value.items(), key=lambda kv: (order[kv[0]], kv[0])):
            mean = _mean(d.value for d in ds)
            excess = mean - overall
            enough = len(ds) >= MIN_CELLS
            out.append(Bias(dim, value, len(ds), len({d.household_id for d in ds}), mean, excess, enough,
                            enough and abs(excess) >= FAVOURS))
    return out


def _member_rows(panel: PanelCells, households: Mapping[int, HouseholdInfo],
                 names: Mapping[int, str]) -> list[MemberRow]:
    rows = []
    for rater, diffs in sorted(_differences(panel).items()):
        n = len(diffs)
        mean_signed = _mean(d.value for d in diffs)
        mean_abs = _mean(abs(d.value) for d in diffs)
        enough = n >= MIN_CELLS
        biases = tuple(_biases(diffs, mean_signed, households))
        flagged = (enough and (mean_abs >= FAR_NOTICE or abs(mean_signed) >= LENIENT)) or any(b.flagged for b in biases)
        rows.append(MemberRow(rater, names.get(rater) or f"委员 #{rater}", n, len({d.month for d in diffs}),
                              sum(1 for d in diffs if d.value), mean_signed, mean_abs, enough, flagged, biases))
    return rows


def _member_signals(rows: list[MemberRow]) -> list[Signal]:
    out = []
    for r in rows:
        if not r.enough:
            continue
        if r.mean_abs >= FAR_NOTICE:
            out.append(Signal(
                kind="rater_far", level="look" if r.mean_abs >= FAR_LOOK else "notice", rater_id=r.rater_id,
                cells=r.cells,
                message=(f"请留意：{r.name} 在所选期间 {r.months} 个月中有 {r.cells} 项评分可与其他委员对照，"
                         f"与其他委员评分的中位数平均相差 {num(r.mean_abs)} 个等级（{r.apart} 项不一致）。"
                         "可能评分尺度与其他委员不同，可了解情况。"),
            ))
        if abs(r.mean_signed) >= LENIENT:
            direction = "高" if r.mean_signed > 0 else "低"
            out.append(Signal(
                kind="rater_lenient", level="look" if abs(r.mean_signed) >= FAR_LOOK else "notice",
                rater_id=r.rater_id, cells=r.cells,
                message=(f"请留意：{r.name} 在所选期间的 {r.cells} 项可对照评分，平均比其他委员{direction} "
                         f"{num(abs(r.mean_signed))} 个等级。可能整体评得偏{direction}，可了解情况。"),
            ))
    return out


def _bias_signals(rows: list[MemberRow]) -> list[Signal]:
    out = []
    for r in rows:
        for b in r.biases:
            if not b.flagged:
                continue
            direction = "高" if b.excess > 0 else "低"
            what = f"村民小组“{b.value}”的户" if b.dimension == "group" else f"姓“{b.value}”的户"
            out.append(Signal(
                kind="rater_favours", level="look" if abs(b.excess) >= FAVOURS_LOOK else "notice",
                rater_id=r.rater_id, dimension=b.dimension, value=b.value, cells=b.cells,
                message=(f"请留意：{r.name} 对{what}（{b.households} 户，{b.cells} 项可对照评分）的评分与其他委员相比"
                         f"平均为 {signed(b.mean)} 个等级，而其全部 {r.cells} 项可对照评分平均为 {signed(r.mean_signed)} 个等级，"
                         f"即对这些户偏{direction} {num(abs(b.excess))} 个等级。"
                         "可能有具体原因（如这些户情况确有不同），也可能存在人情分，可了解情况。"),
            ))
    return out


# --- finalised results over the months -----------------------------------------------------------------------------


def _graded(month_grades: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((th, g) for th, g in month_grades.items() if g))


def _uniform_months(grades: MonthGrades) -> list[Signal]:
    uniform = []
    for month in sorted(grades):
        rows = [_graded(g) for g in grades[month].values()]
        rows = [r for r in rows if r]
        if len(rows) >= MIN_UNIFORM_HOUSEHOLDS and len(set(rows)) == 1:
            uniform.append((month, len(rows), rows[0]))
    if not uniform:
        return []
    items = [f"{month_label(m)}（{n} 户，{'、'.join(sorted({g for _, g in row}))}）" for m, n, row in uniform]
    return [Signal(
        kind="uniform_months", level="look", months=tuple(m for m, _, _ in uniform),
        message=(f"请留意：所选期间有 {len(uniform)} 个月，全村评分的各户每个项目的等级完全相同："
                 f"{_listed(items, len(uniform), '个月')}。可能确实如此，也可能没有逐户区分评分，建议抽查核实。"),
    )]


def _runs(grades: MonthGrades) -> dict[int, tuple[int, int]]:
    """Household -> (longest run of consecutive months with exactly the same grades on every theme, its last month)."""
    best: dict[int, tuple[int, int]] = {}
    current: dict[int, tuple[tuple[tuple[str, str], ...], int, int]] = {}  # hid -> (grades, run, last month)
    for month in sorted(grades):
        for hid in sorted(grades[month]):
            g = _graded(grades[month][hid])
            if not g:
                current.pop(hid, None)
                continue
            prev = current.get(hid)
            run = prev[1] + 1 if prev and prev[0] == g and next_month(prev[2]) == month else 1
            current[hid] = (g, run, month)
            if run > best.get(hid, (0, 0))[0]:
                best[hid] = (run, month)
    return best


def _unchanged(grades: MonthGrades, households: Mapping[int, HouseholdInfo]) -> list[Signal]:
    steady = sorted(((hid, run, last) for hid, (run, last) in _runs(grades).items() if run >= UNCHANGED_MONTHS),
                    key=lambda x: (-x[1], x[0]))
    if not steady:
        return []
    items = [f"{_household(hid, households)}（{run} 个月，至{month_label(last)}）" for hid, run, last in steady]
    return [Signal(
        kind="unchanged", level="notice", household_ids=tuple(hid for hid, _, _ in steady),
        message=(f"请留意：所选期间有 {len(steady)} 户连续 {UNCHANGED_MONTHS} 个月以上各项等级完全相同："
                 f"{_listed(items, len(steady))}。可能情况稳定，也可能沿用了以往的评分，可抽查核实。"),
    )]


# --- the report -----------------------------------------------------------------------------------------------------


def fairness_report(*, panel: PanelCells, households: Mapping[int, HouseholdInfo],
                    grades: MonthGrades | None = None, member_names: Mapping[int, str] | None = None) -> Report:
    """The period's fairness report.

    `panel`: (month, household id, theme code) -> {committee member id: scale position (worst = 1)}, the panel rounds'
    grades of eligible members (ids <= 0, the committee's agreed grade, are ignored). `households`: id -> label,
    group and surname. `grades`: month -> household id -> theme -> combined grade, of the finalised rounds.
    `member_names`: used in the messages (else "委员 #id")."""
    grades = grades or {}
    rows = _member_rows(panel, households, member_names or {})
    signals = _member_signals(rows) + _bias_signals(rows) + _uniform_months(grades) + _unchanged(grades, households)
    signals.sort(key=lambda s: (LEVELS.index(s.level), KINDS.index(s.kind)))  # stable: generation order within
    rows.sort(key=lambda r: (not r.flagged, r.rater_id))
    seen = {hid for _, hid, _ in panel} | {hid for by_hid in grades.values() for hid in by_hid}
    return Report(
        signals=tuple(signals), members=tuple(rows),
        panel_months=tuple(sorted({m for m, _, _ in panel})),
        result_months=tuple(sorted(m for m, by_hid in grades.items() if by_hid)),
        households=len(seen),
        thresholds={"min_cells": str(MIN_CELLS), "far_notice": num(FAR_NOTICE), "far_look": num(FAR_LOOK),
                    "lenient": num(LENIENT), "favours": num(FAVOURS), "unchanged": str(UNCHANGED_MONTHS),
                    "uniform": str(MIN_UNIFORM_HOUSEHOLDS)},
    )
