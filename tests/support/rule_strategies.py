"""Hypothesis strategies for the rules engine: valid rulesets (themes, grade scales, determinations, red and black
policies) and rounds to evaluate with them (`cases`: a ruleset, generated or the county default, and a round)."""

from __future__ import annotations

from hypothesis import strategies as st

from app.rules import (
    BlackPolicy,
    Determination,
    Grade,
    PassedDetermination,
    Rating,
    RedPolicy,
    RoundInput,
    Ruleset,
    Theme,
    WorstGradeRule,
    WorstRun,
    default_ruleset,
)

# --- generated valid rulesets ---------------------------------------------------------------------------------------

codes = st.from_regex(r"[A-Z][A-Z0-9_]{0,7}", fullmatch=True)
grade_codes = st.text(st.sampled_from("优良中差ABCDEabc12345★☆"), min_size=1, max_size=3)
name_chars = st.characters(codec="utf-8", categories=["L", "N", "P", "S"])
names = st.builds(lambda first, rest: (first + rest).rstrip(), name_chars, st.text(name_chars | st.just(" "), max_size=8))
descriptions = st.text(st.one_of(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]),
                                 st.sampled_from('\n\t"\\#')), max_size=30)


@st.composite
def grade_scales(draw: st.DrawFn) -> tuple[Grade, ...]:
    n = draw(st.integers(2, 5))
    gcodes = draw(st.lists(grade_codes, min_size=n, max_size=n, unique=True))
    labels = draw(st.lists(names, min_size=n, max_size=n, unique=True))
    ranks = draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n, unique=True))
    points = sorted(draw(st.lists(st.integers(-20, 30), min_size=n, max_size=n)))
    by_rank = sorted(range(n), key=lambda i: ranks[i])
    pts = {i: points[j] for j, i in enumerate(by_rank)}  # better rank, at least as many points
    return tuple(Grade(gcodes[i], labels[i][:16], pts[i], ranks[i]) for i in range(n))


@st.composite
def determinations(draw: st.DrawFn, code: str, name: str, themes: list[str]) -> Determination:
    lst = draw(st.sampled_from(["red", "black", "none"]))
    points = draw(st.integers(0, 40) if lst == "red" else st.integers(-40, 0) if lst == "black" else st.integers(-40, 40))
    months = draw(st.integers(1, 12) if lst != "none" else st.integers(0, 3))
    return Determination(code, name, lst, points, months, draw(st.booleans()),  # type: ignore[arg-type]
                         draw(st.sampled_from(["majority", "two_thirds", "unanimous"])), draw(st.booleans()),
                         draw(st.none() | st.sampled_from(themes)), draw(descriptions))


@st.composite
def rulesets(draw: st.DrawFn) -> Ruleset:
    nt = draw(st.integers(1, 4))
    tcodes = draw(st.lists(codes, min_size=nt, max_size=nt, unique=True))
    tnames = draw(st.lists(names, min_size=nt, max_size=nt, unique=True))
    themes = []
    for code, name in zip(tcodes, tnames, strict=True):
        scale = draw(grade_scales())
        best = max(scale, key=lambda g: g.rank).points
        themes.append(Theme(code, name, scale, max(0, best) + draw(st.just(0) | st.integers(0, 25)), draw(descriptions)))
    nd = draw(st.integers(0, 5))
    dcodes = draw(st.lists(codes, min_size=nd, max_size=nd, unique=True))
    dnames = draw(st.lists(names, min_size=nd, max_size=nd, unique=True))
    dets = tuple(draw(determinations(c, n, tcodes)) for c, n in zip(dcodes, dnames, strict=True))
    black_dets = [d.code for d in dets if d.list == "black" and not d.names_member]
    worst: list[WorstGradeRule] = []
    if black_dets:
        for t in draw(st.lists(st.sampled_from(tcodes), unique=True, max_size=nt)):
            worst.append(WorstGradeRule(t, draw(st.integers(1, 3)), draw(st.sampled_from(black_dets))))
    red = RedPolicy(draw(st.none() | st.integers(-20, 80)), draw(st.none() | st.integers(1, 100)),
                    draw(st.integers(1, 12)), draw(st.booleans()), draw(st.booleans()))
    return Ruleset(
        code=draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True)), name=draw(names),
        version=draw(st.integers(1, 99)), effective_from=draw(st.integers(2000, 2099)) * 100 + draw(st.integers(1, 12)),
        point_value_fen=draw(st.integers(1, 1000)), combine=draw(st.sampled_from(["median", "mean", "trimmed_mean"])),
        quorum=draw(st.integers(1, 4)), penalty_policy=draw(st.sampled_from(["floor_at_zero", "allow_debt"])),
        themes=tuple(themes), determinations=dets, red_policy=red,
        black_policy=BlackPolicy(draw(st.booleans()), tuple(worst)), coverage_target_pct=draw(st.integers(0, 100)),
    )


# --- generated rounds -----------------------------------------------------------------------------------------------


@st.composite
def rating_for(draw: st.DrawFn, hid: int, theme: Theme) -> Rating:
    grades = st.sampled_from([g.code for g in theme.grades]) | st.just(theme.scale()[0].code)  # lowest more often
    raters = draw(st.lists(st.integers(1, 9), unique=True, max_size=6))
    if draw(st.booleans()):
        return Rating.agreed(hid, theme.code, draw(grades), raters)
    raters = raters or [1]
    return Rating(hid, theme.code, tuple(draw(grades) for _ in raters), tuple(raters))


@st.composite
def rounds(draw: st.DrawFn, r: Ruleset) -> RoundInput:
    eligible = draw(st.lists(st.integers(1, 40), unique=True, max_size=14))
    outsiders = draw(st.lists(st.integers(41, 45), unique=True, max_size=2))
    ratings = [draw(rating_for(h, t)) for h in eligible + outsiders for t in r.themes if draw(st.integers(0, 9)) > 0]
    dets = []
    if r.determinations:
        for i in range(draw(st.integers(0, 8))):
            d = draw(st.sampled_from(r.determinations))
            hid = draw(st.sampled_from(eligible + outsiders)) if eligible + outsiders else 1
            member = draw(st.sampled_from(["张三", "李四", "王五"])) if d.names_member or draw(st.booleans()) else None
            dets.append(PassedDetermination(hid, d.code, draw(st.none() | st.integers(1, 3)), member, draw(descriptions), i))
    history = [WorstRun(h, t.code, draw(st.integers(0, 5))) for h in eligible for t in r.themes if draw(st.booleans())]
    return RoundInput(7, 202503, tuple(eligible), tuple(ratings), tuple(dets), tuple(history))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Ruleset, RoundInput]:
    r = draw(st.one_of(rulesets(), st.just(default_ruleset())))
    return r, draw(rounds(r))
