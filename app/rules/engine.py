"""The rules engine: `evaluate(round, ruleset)` turns a round's ratings and passed determinations into points lines
and proposed list postings, each explained in Chinese; `simulate(round, a, b)` compares two rulesets on one round.

Pure and deterministic: no database, no clock, no randomness; the output is sorted and does not depend on the order
of the input (households, ratings, raters within a rating, determinations, history).

Decisions the caller relies on:
- A theme without a rating, or whose rating has fewer eligible members than the quorum, gets no line (not zero) and
  a `Problem`; a household with no line at all is `Skipped` with the reason.
- Theme caps: the positive points of a theme's grade line and of the determinations linked to the theme are granted
  in line order (grade first, then determinations in ruleset order) until the monthly cap; negative points are never
  capped. The penalty policy is not applied here: totals may be negative, the ledger applies floor_at_zero.
- Red policy: see `RedPolicy`. Top N %: k = ceil(rated households x N / 100); a household's place is 1 + the number
  of rated households with a strictly higher total, and every household with place <= k and a total above zero
  qualifies, so ties at the boundary are all included (the list can be slightly longer than N %). "Rated" means at
  least one theme line; places count black-listed households too (they are then left out under `exclude_black`).
- Black policy: a theme graded at its lowest rank posts the rule's determination when the run (history + this month)
  reaches K, and again every month the run continues; no points are added (the grade already counted), and nothing
  is posted when a determination with the same code already posted for the household this month.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from app.rules.combine import combine, labels
from app.rules.errors import RoundInputInvalid, RulesError
from app.rules.model import (
    RED_POLICY_CODE,
    HouseholdChange,
    HouseholdResult,
    ListPosting,
    PassedDetermination,
    PointsLine,
    Problem,
    Rating,
    RoundInput,
    RoundResult,
    RoundTotals,
    Simulation,
    Skipped,
    TotalsChange,
    WorstRun,
)
from app.rules.schema import LIST_LABELS, Determination, Grade, Ruleset, Theme, WorstGradeRule
from app.rules.validate import check, valid_month

__all__ = ["check_input", "evaluate", "simulate"]


@dataclass(frozen=True)
class _Compiled:
    """Lookups built once per evaluation."""

    ruleset: Ruleset
    themes: dict[str, Theme]
    scales: dict[str, tuple[Grade, ...]]  # worst to best
    grades: dict[str, dict[str, Grade]]
    dets: dict[str, Determination]
    det_order: dict[str, int]
    worst: dict[str, WorstGradeRule]
    lines: dict[tuple[object, ...], PointsLine]  # theme lines by (theme, consensus, grades, raters): a line names no household


def _compile(r: Ruleset) -> _Compiled:
    return _Compiled(
        ruleset=r,
        themes={t.code: t for t in r.themes},
        scales={t.code: t.scale() for t in r.themes},
        grades={t.code: {g.code: g for g in t.grades} for t in r.themes},
        dets={d.code: d for d in r.determinations},
        det_order={d.code: i for i, d in enumerate(r.determinations)},
        worst={w.theme: w for w in r.black_policy.worst_grade},
        lines={},
    )


def pts(n: int) -> str:
    """Signed points for an explanation: +10, -5, 0."""
    return f"{n:+d}" if n else "0"


# --- input checks ---------------------------------------------------------------------------------------------------


def check_input(rnd: RoundInput, ruleset: Ruleset) -> list[str]:
    """Every problem of the input against the ruleset (Chinese); empty when the engine can run. These are errors
    (a grade outside the scale, an unknown theme ...), unlike missing ratings or quorum, which are reported in the
    result."""
    return _input_problems(rnd, _compile(ruleset))


def _input_problems(rnd: RoundInput, c: _Compiled) -> list[str]:
    out: list[str] = []
    if not valid_month(rnd.month):
        out.append(f"评比月份 {rnd.month} 无效：须为六位数 YYYYMM（如 202503）")
    seen: set[int] = set()
    for hid in sorted(rnd.households):
        if hid in seen:
            out.append(f"参评农户 {hid} 在名单中重复出现")
        seen.add(hid)
    out += _rating_problems(rnd.ratings, c)
    out += _determination_problems(rnd.determinations, c)
    out += _history_problems(rnd.history, c)
    return out


def _rating_problems(ratings: Sequence[Rating], c: _Compiled) -> list[str]:
    """Problems in household order; a quick pass first, since almost every round is clean."""
    keys = {(r.household_id, r.theme) for r in ratings}
    if len(keys) == len(ratings) and all(_rating_ok(r, c) for r in ratings):
        return []
    out: list[str] = []
    seen: set[tuple[int, str]] = set()
    for r in sorted(ratings, key=lambda r: (r.household_id, r.theme, r.grades, r.raters, r.consensus)):
        if (r.household_id, r.theme) in seen:
            out.append(f"农户 {r.household_id} 的“{r.theme}”评分录入了两次，请只保留一条")
        seen.add((r.household_id, r.theme))
        out += _rating_shape(r, c)
    return out


def _rating_ok(r: Rating, c: _Compiled) -> bool:
    scale = c.grades.get(r.theme)
    grades, raters = r.grades, r.raters
    if scale is None or not grades or len(grades) != (1 if r.consensus else len(raters)) or len(set(raters)) != len(raters):
        return False
    return grades[0] in scale if len(grades) == 1 else all(g in scale for g in grades)


def _rating_shape(r: Rating, c: _Compiled) -> list[str]:
    theme = c.themes.get(r.theme)
    if theme is None:
        known = "、".join(c.themes)
        return [f"农户 {r.household_id} 的评分项目“{r.theme}”不在细则 {c.ruleset.code} 中（可选：{known}）"]
    who = f"农户 {r.household_id} 的{theme.name}评分"
    scale = c.grades[r.theme]
    out = [f"{who}“{g}”不在评分等级中（可选：{'、'.join(scale)}）" for g in sorted(set(r.grades)) if g not in scale]
    if not r.grades:
        out.append(f"{who}是空的，请填写等级")
    if r.consensus and len(r.grades) > 1:
        out.append(f"{who}是委员会合议，只能有一个等级，现在有 {len(r.grades)} 个")
    if not r.consensus and len(r.grades) != len(r.raters):
        out.append(f"{who}有 {len(r.grades)} 个等级却对应 {len(r.raters)} 位委员，须一一对应")
    dup = sorted({m for m in r.raters if r.raters.count(m) > 1})
    if dup:
        out.append(f"{who}中委员 {'、'.join(map(str, dup))} 出现了不止一次")
    return out


def _determination_problems(dets: Sequence[PassedDetermination], c: _Compiled) -> list[str]:
    out: list[str] = []
    refs: set[int] = set()
    for d in sorted(dets, key=_det_key_plain):
        det = c.dets.get(d.code)
        if det is None:
            out.append(f"农户 {d.household_id} 的认定“{d.code}”不在细则 {c.ruleset.code} 中（可选：{'、'.join(c.dets) or '无'}）")
        elif det.names_member and not (d.member_name or "").strip():
            out.append(f"农户 {d.household_id} 的认定“{det.name}”须指明家庭成员姓名")
        if d.ref is not None:
            if d.ref in refs:
                out.append(f"认定记录 {d.ref} 重复出现，请只保留一条")
            refs.add(d.ref)
    return out


def _history_problems(history: Sequence[WorstRun], c: _Compiled) -> list[str]:
    out: list[str] = []
    seen: set[tuple[int, str]] = set()
    for w in sorted(history, key=lambda w: (w.household_id, w.theme, w.months)):
        if w.theme not in c.themes:
            out.append(f"农户 {w.household_id} 的历史记录项目“{w.theme}”不在细则中")
        if w.months < 0:
            out.append(f"农户 {w.household_id} 的{w.theme}连续最低等级月数不能为负（{w.months}）")
        if (w.household_id, w.theme) in seen:
            out.append(f"农户 {w.household_id} 的{w.theme}历史记录重复")
        seen.add((w.household_id, w.theme))
    return out


# --- evaluation -----------------------------------------------------------------------------------------------------


def evaluate(rnd: RoundInput, ruleset: Ruleset) -> RoundResult:
    """The round's result under the ruleset. Raises `RulesetInvalid` for an invalid ruleset and `RoundInputInvalid`
    for input that does not fit it (nothing is computed then)."""
    check(ruleset)
    c = _compile(ruleset)
    problems = _input_problems(rnd, c)
    if problems:
        raise RoundInputInvalid(problems)
    eligible = sorted(set(rnd.households))
    ratings = _ratings_by_household(rnd.ratings)
    dets = _determinations_by_household(rnd.determinations, c)
    runs = {(w.household_id, w.theme): w.months for w in rnd.history}
    round_problems = _ineligible(ratings, dets, set(eligible))
    results: list[HouseholdResult] = []
    skipped: list[Skipped] = []
    for hid in eligible:
        result, found = _household(c, hid, ratings.get(hid, {}), dets.get(hid, []), runs)
        round_problems += found
        if result.lines:
            results.append(result)
        else:
            skipped.append(Skipped(hid, _skip_reason(ratings.get(hid, {}))))
    results = _apply_red_policy(c, results)
    order = {t.code: i for i, t in enumerate(ruleset.themes)}
    round_problems.sort(key=lambda p: (p.household_id, order.get(p.theme or "", -1), p.message))
    totals = _totals(c.ruleset, len(eligible), results, len(skipped), len(round_problems))
    return RoundResult(rnd.village_id, rnd.month, ruleset.code, ruleset.version, tuple(results), tuple(skipped),
                       tuple(round_problems), totals)


def _det_key_plain(d: PassedDetermination) -> tuple[object, ...]:
    return (d.household_id, d.code, d.member_id is None, d.member_id or 0, d.member_name or "", d.ref is None,
            d.ref or 0, d.note)


def _ratings_by_household(ratings: Iterable[Rating]) -> dict[int, dict[str, Rating]]:
    out: dict[int, dict[str, Rating]] = {}
    for r in ratings:
        out.setdefault(r.household_id, {})[r.theme] = r
    return out


def _determinations_by_household(dets: Iterable[PassedDetermination], c: _Compiled) -> dict[int, list[PassedDetermination]]:
    out: dict[int, list[PassedDetermination]] = {}
    for d in dets:
        out.setdefault(d.household_id, []).append(d)
    for items in out.values():
        items.sort(key=lambda d: (c.det_order[d.code], *_det_key_plain(d)))
    return out


def _ineligible(ratings: dict[int, dict[str, Rating]], dets: dict[int, list[PassedDetermination]],
                eligible: set[int]) -> list[Problem]:
    out = []
    for hid in sorted((set(ratings) | set(dets)) - eligible):
        n, m = len(ratings.get(hid, {})), len(dets.get(hid, []))
        out.append(Problem(hid, None, f"农户 {hid} 不在本月参评名单中：其 {n} 条评分、{m} 条认定未计入"))
    return out


def _skip_reason(ratings: dict[str, Rating]) -> str:
    if not ratings:
        return "本月没有评分，也没有认定"
    return "本月各项评分均未达到法定人数，也没有认定"


def _household(c: _Compiled, hid: int, ratings: dict[str, Rating], dets: list[PassedDetermination],
               runs: dict[tuple[int, str], int]) -> tuple[HouseholdResult, list[Problem]]:
    """One household: theme lines (or problems), determination lines, caps, postings except the red policy's."""
    problems: list[Problem] = []
    theme_lines: dict[str, PointsLine] = {}
    worst_runs: list[WorstRun] = []
    for theme in c.ruleset.themes:
        rating = ratings.get(theme.code)
        problem = _rating_problem(c.ruleset.quorum, hid, theme, rating)
        if problem is not None:
            problems.append(problem)
        if problem is not None or rating is None:
            continue
        line = _cached_theme_line(c, theme, rating)
        theme_lines[theme.code] = line
        if line.grade == c.scales[theme.code][0].code:
            worst_runs.append(WorstRun(hid, theme.code, runs.get((hid, theme.code), 0) + 1))
    det_lines = [_determination_line(c, d) for d in dets]
    lines = _ordered_capped(c, theme_lines, det_lines)
    postings = _determination_postings(c, dets)
    postings += _worst_grade_postings(c, worst_runs, postings)
    result = HouseholdResult(hid, tuple(lines), sum(line.points for line in lines), _sorted(postings), tuple(worst_runs))
    return result, problems


def _rating_problem(quorum: int, hid: int, theme: Theme, rating: Rating | None) -> Problem | None:
    if rating is None:
        return Problem(hid, theme.code, f"{theme.name}：本月没有评分，本项不计分，请补录")
    if len(rating.raters) >= quorum:
        return None
    if rating.consensus:
        text = f"{theme.name}：合议时到会的有资格委员只有 {len(rating.raters)} 人，不足法定人数 {quorum} 人，本项不计分"
    else:
        text = f"{theme.name}：只有 {len(rating.raters)} 位有资格的委员评分，不足法定人数 {quorum} 人，本项不计分，请补齐评分"
    return Problem(hid, theme.code, text)


def _cached_theme_line(c: _Compiled, theme: Theme, rating: Rating) -> PointsLine:
    """The same ratings give the same line (a village's consensus grades repeat a lot): built once per evaluation."""
    key = (theme.code, rating.consensus, rating.grades, rating.raters)  # unsorted: a miss only rebuilds the same line
    line = c.lines.get(key)
    if line is None:
        line = c.lines[key] = _theme_line(c, theme, rating)
    return line


def _theme_line(c: _Compiled, theme: Theme, rating: Rating) -> PointsLine:
    scale = c.scales[theme.code]
    given = sorted((c.grades[theme.code][g] for g in rating.grades), key=lambda g: g.rank, reverse=True)
    if rating.consensus:
        grade = given[0]
        how = f"委员会合议 {grade.label}（到会委员 {len(rating.raters)} 人）"
    else:
        grade, step = combine(scale, given, c.ruleset.combine)
        how = f"委员评分 {labels(given)}（{len(given)} 人）{step}"
    rule = f"{theme.code}-{grade.code}"
    return PointsLine(kind="theme", code=theme.code, rule=rule, points=grade.points, raw_points=grade.points,
                      capped=False, explanation=f"{theme.name}：{how} → 规则 {rule} → {pts(grade.points)}",
                      theme=theme.code, grade=grade.code, raters=tuple(sorted(rating.raters)))


def _member_note(c: _Compiled, det: Determination, d: PassedDetermination, *, with_theme: bool) -> str:
    parts = [f"家庭成员 {d.member_name}"] if det.names_member else []
    if with_theme and det.theme is not None:
        parts.append(f"计入{c.themes[det.theme].name}")
    return f"（{'，'.join(parts)}）" if parts else ""


def _determination_line(c: _Compiled, d: PassedDetermination) -> PointsLine:
    det = c.dets[d.code]
    member = _member_note(c, det, d, with_theme=True)
    return PointsLine(kind="determination", code=det.code, rule=det.code, points=det.points, raw_points=det.points,
                      capped=False, explanation=f"认定 {det.name}{member} → 规则 {det.code} → {pts(det.points)}",
                      theme=det.theme, member_id=d.member_id if det.names_member else None,
                      member_name=d.member_name if det.names_member else None, ref=d.ref, note=d.note)


def _ordered_capped(c: _Compiled, theme_lines: dict[str, PointsLine], det_lines: list[PointsLine]) -> list[PointsLine]:
    """Lines in ruleset order (each theme's grade line, then the determinations counted toward it; then the other
    determinations), each theme's positive points capped at its monthly cap."""
    if not det_lines:  # a grade alone never exceeds the cap (validation), and theme_lines is in ruleset order
        return list(theme_lines.values())
    out: list[PointsLine] = []
    for theme in c.ruleset.themes:
        group = [theme_lines[theme.code]] if theme.code in theme_lines else []
        group += [line for line in det_lines if line.theme == theme.code]
        out += _cap(theme, group)
    out += [line for line in det_lines if line.theme is None]
    return out


def _cap(theme: Theme, lines: list[PointsLine]) -> list[PointsLine]:
    out = []
    granted = 0
    for line in lines:
        if line.raw_points <= 0:
            out.append(line)
            continue
        allowed = max(0, min(line.raw_points, theme.monthly_cap - granted))
        if allowed != line.raw_points:
            note = f"；{theme.name}本月上限 {theme.monthly_cap} 分，此前已计 {granted} 分，本条只计 {pts(allowed)}"
            line = replace(line, points=allowed, capped=True, explanation=line.explanation + note)
        granted += allowed
        out.append(line)
    return out


def _determination_postings(c: _Compiled, dets: list[PassedDetermination]) -> list[ListPosting]:
    out = []
    r = c.ruleset
    for d in dets:
        det = c.dets[d.code]
        posts = (det.list == "red" and r.red_policy.commendations_count) or \
                (det.list == "black" and r.black_policy.determinations_count)
        if not posts or det.list == "none":
            continue
        member = _member_note(c, det, d, with_theme=False)
        text = f"认定 {det.name}{member} → 规则 {det.code} → 上{LIST_LABELS[det.list]} {det.months_shown} 个月"
        out.append(ListPosting(d.household_id, det.list, "determination", det.code, det.name, det.months_shown, text,
                               member_id=d.member_id if det.names_member else None,
                               member_name=d.member_name if det.names_member else None, ref=d.ref))
    return out


def _worst_grade_postings(c: _Compiled, runs: list[WorstRun], already: list[ListPosting]) -> list[ListPosting]:
    out = []
    posted = {p.code for p in already}
    for run in runs:
        rule = c.worst.get(run.theme)
        if rule is None or run.months < rule.months or rule.determination in posted:
            continue
        det, theme = c.dets[rule.determination], c.themes[run.theme]
        lowest = c.scales[run.theme][0].label
        text = (f"{theme.name}连续 {run.months} 个月评为 {lowest}（规则：连续 {rule.months} 个月最低等级）→ 黑榜规则 "
                f"{theme.code}-{rule.months} → {det.name}，上黑榜 {det.months_shown} 个月（不另扣分）")
        out.append(ListPosting(run.household_id, "black", "black_policy", det.code, det.name, det.months_shown, text,
                               theme=theme.code))
    return out


def _sorted(postings: Iterable[ListPosting]) -> tuple[ListPosting, ...]:
    return tuple(sorted(postings, key=ListPosting.key))


# --- red policy -----------------------------------------------------------------------------------------------------


def _is_rated(h: HouseholdResult) -> bool:
    return any(line.kind == "theme" for line in h.lines)


def _apply_red_policy(c: _Compiled, results: list[HouseholdResult]) -> list[HouseholdResult]:
    """Adds the red policy's postings (monthly total at or above the threshold / within the top N %)."""
    p = c.ruleset.red_policy
    if not p.has_criterion():
        return results
    rated = [h.total for h in results if _is_rated(h)]
    ascending = sorted(rated)
    n = len(rated)
    k = -(-n * p.top_percent // 100) if p.top_percent is not None else None
    out = []
    for h in results:
        place = 1 + n - bisect_right(ascending, h.total)
        posting = _red_posting(c, h, place, n, k) if _is_rated(h) else None
        out.append(replace(h, postings=_sorted([*h.postings, posting])) if posting else h)
    return out


def _red_posting(c: _Compiled, h: HouseholdResult, place: int, n: int, k: int | None) -> ListPosting | None:
    p = c.ruleset.red_policy
    if p.exclude_black and any(x.list == "black" for x in h.postings):
        return None
    why = [f"本月总分 {h.total} 分"]
    if p.threshold is not None:
        if h.total < p.threshold:
            return None
        why.append(f"达到红榜分数线 {p.threshold} 分")
    if k is not None:
        if place > k or h.total <= 0:
            return None
        why.append(f"在本村 {n} 户参评农户中排第 {place} 名（前 {p.top_percent}% 即前 {k} 名，同分并列）")
    text = "，".join(why) + f" → 红榜政策 → 上红榜 {p.months_shown} 个月"
    return ListPosting(h.household_id, "red", "red_policy", RED_POLICY_CODE, "月度评比红榜", p.months_shown, text)


# --- totals ---------------------------------------------------------------------------------------------------------


def _totals(r: Ruleset, eligible: int, results: list[HouseholdResult], skipped: int, problems: int) -> RoundTotals:
    points = [line.points for h in results for line in h.lines]
    issued = sum(x for x in points if x > 0)
    postings = [p for h in results for p in h.postings]
    return RoundTotals(
        households_eligible=eligible,
        households_rated=sum(1 for h in results if _is_rated(h)),
        households_skipped=skipped,
        points_issued=issued,
        points_deducted=-sum(x for x in points if x < 0),
        issued_fen=issued * r.point_value_fen,
        red_postings=sum(1 for p in postings if p.list == "red"),
        black_postings=sum(1 for p in postings if p.list == "black"),
        red_households=sum(1 for h in results if any(p.list == "red" for p in h.postings)),
        black_households=sum(1 for h in results if any(p.list == "black" for p in h.postings)),
        listed_households=sum(1 for h in results if h.postings),
        problems=problems,
    )


# --- simulation -----------------------------------------------------------------------------------------------------


def simulate(rnd: RoundInput, ruleset_a: Ruleset, ruleset_b: Ruleset) -> Simulation:
    """Both rulesets applied to the same round: per household what changes (total, postings, lines) and the totals
    side by side. Raises like `evaluate`, each message saying which ruleset it concerns."""
    a, b = _evaluate_named(rnd, ruleset_a), _evaluate_named(rnd, ruleset_b)
    ha = {h.household_id: h for h in a.households}
    hb = {h.household_id: h for h in b.households}
    changes = []
    for hid in sorted(set(rnd.households)):
        change = _household_change(hid, ha.get(hid), hb.get(hid))
        if change is not None:
            changes.append(change)
    return Simulation(a, b, tuple(changes), _totals_change(a.totals, b.totals))


def _evaluate_named(rnd: RoundInput, r: Ruleset) -> RoundResult:
    try:
        return evaluate(rnd, r)
    except RulesError as e:
        raise type(e)([f"按细则 {r.code} 第 {r.version} 版：{p}" for p in e.problems]) from None


def _line_key(line: PointsLine) -> tuple[object, ...]:
    return (line.kind, line.code, line.theme, line.grade, line.member_id, line.member_name, line.ref, line.points)


def _household_change(hid: int, a: HouseholdResult | None, b: HouseholdResult | None) -> HouseholdChange | None:
    lines_a, lines_b = (a.lines if a else ()), (b.lines if b else ())
    posts_a, posts_b = (a.postings if a else ()), (b.postings if b else ())
    keys_a, keys_b = {p.key() for p in posts_a}, {p.key() for p in posts_b}
    same_lines = [_line_key(x) for x in lines_a] == [_line_key(x) for x in lines_b]
    if same_lines and keys_a == keys_b:
        return None
    return HouseholdChange(
        household_id=hid,
        total_a=a.total if a else 0,
        total_b=b.total if b else 0,
        postings_removed=tuple(p for p in posts_a if p.key() not in keys_b),
        postings_added=tuple(p for p in posts_b if p.key() not in keys_a),
        lines_a=lines_a,
        lines_b=lines_b,
    )


def _totals_change(a: RoundTotals, b: RoundTotals) -> TotalsChange:
    return TotalsChange(
        points_issued=(a.points_issued, b.points_issued),
        points_deducted=(a.points_deducted, b.points_deducted),
        issued_fen=(a.issued_fen, b.issued_fen),
        red_households=(a.red_households, b.red_households),
        black_households=(a.black_households, b.black_households),
        listed_households=(a.listed_households, b.listed_households),
        coverage_pct=(a.coverage_pct, b.coverage_pct),
    )
