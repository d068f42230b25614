"""Review signals for the township reviewer: each signal firing and not firing, thresholds at their edges, order,
neutral wording, and (Hypothesis) never raising and deterministic on random small rounds. Pure: no database."""

from __future__ import annotations

import random
from collections.abc import Mapping

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import rules
from app.evaluation.service.signals import KINDS, LEVELS, Signal, review_signals
from tests.support.rule_strategies import cases

R = rules.default_ruleset()
THEMES = [t.code for t in R.themes]  # DILIGENT FILIAL CUSTOMS ENV LAW PUBLIC
PRESENT = [1, 2, 3]
VERDICTS = ("作弊", "舞弊", "违规", "造假", "错误", "问题户", "必须")


def agreed(grades: Mapping[int, Mapping[str, str]]) -> rules.RoundResult:
    """A consensus round: household id -> {theme: grade}; eligible = the households given."""
    ratings = tuple(rules.Rating.agreed(hid, theme, g, present=PRESENT) for hid, by in grades.items() for theme, g in by.items())
    return rules.evaluate(rules.RoundInput(1, 202503, tuple(grades), ratings), R)


def varied(hid: int, **fixed: str) -> dict[str, str]:
    """All six themes graded, cycling through 优良中差 so that no theme and no total is the same for everybody."""
    grades = {t: "优良中差"[(hid + i) % 4] for i, t in enumerate(THEMES)}
    return grades | fixed


def panel_round(panel: Mapping[tuple[int, str], Mapping[int, str]], households: tuple[int, ...] = ()) -> rules.RoundResult:
    ratings = tuple(rules.Rating.panel(hid, theme, by) for (hid, theme), by in panel.items())
    eligible = households or tuple(sorted({hid for hid, _ in panel}))
    return rules.evaluate(rules.RoundInput(1, 202503, eligible, ratings), R)


def of(signals: list[Signal], kind: str) -> list[Signal]:
    return [s for s in signals if s.kind == kind]


def kinds(signals: list[Signal]) -> list[str]:
    return [s.kind for s in signals]


# --- a quiet round and empty input ----------------------------------------------------------------------------------


def test_a_varied_complete_round_has_no_signals() -> None:
    result = agreed({h: varied(h) for h in range(1, 9)})
    assert not result.problems and not result.skipped
    assert len({h.total for h in result.households}) > 1
    assert review_signals(result, R) == []
    assert review_signals(result, R, panel={}, previous_totals={}, member_names={}, household_labels={},
                          identical_months={}) == []


def test_empty_inputs_do_not_crash() -> None:
    empty = rules.evaluate(rules.RoundInput(1, 202503, ()), R)
    assert review_signals(empty, R) == []
    assert review_signals(empty, R, panel={}, previous_totals={}, identical_months={}) == []
    # mappings about households or cells that are not in the round
    assert review_signals(empty, R, previous_totals={1: 50}, panel={(1, "ENV"): {1: "优"}}) == []


# --- uniform grades -------------------------------------------------------------------------------------------------


def test_five_households_all_good_on_env_is_a_uniform_theme() -> None:
    result = agreed({h: varied(h, ENV="良") for h in range(1, 6)})
    signals = review_signals(result, R)
    assert kinds(signals) == ["uniform_theme"]
    s = signals[0]
    assert s.theme == "ENV" and s.level == "notice" and s.household_ids == ()
    assert "环保卫生" in s.message and "5 户" in s.message and "“良”" in s.message


def test_four_households_are_too_few_for_a_uniform_theme() -> None:
    result = agreed({h: varied(h, ENV="良") for h in range(1, 5)})
    assert review_signals(result, R) == []


def test_one_different_grade_breaks_the_uniformity() -> None:
    grades = {h: varied(h, ENV="良") for h in range(1, 8)}
    grades[7]["ENV"] = "优"
    assert review_signals(agreed(grades), R) == []


def test_uniform_theme_counts_the_households_rated_on_the_theme() -> None:
    grades = {h: varied(h, ENV="良") for h in range(1, 6)}
    del grades[5]["ENV"]  # four rated on ENV, one missing (a problem, not a different grade)
    assert of(review_signals(agreed(grades), R), "uniform_theme") == []
    grades[6] = varied(6, ENV="良")  # five rated on ENV again, one still missing
    [s] = of(review_signals(agreed(grades), R), "uniform_theme")
    assert s.theme == "ENV" and "5 户" in s.message


def test_the_same_grades_everywhere_is_a_uniform_village() -> None:
    same = {t: "良" for t in THEMES}
    signals = review_signals(agreed({h: dict(same) for h in range(1, 6)}), R)
    assert kinds(signals) == ["uniform_village"] + ["uniform_theme"] * 6
    assert signals[0].level == "look" and "5 户" in signals[0].message and "36 分" in signals[0].message
    assert [s.theme for s in signals[1:]] == THEMES  # ruleset order
    assert review_signals(agreed({h: dict(same) for h in range(1, 5)}), R) == []


def test_uniform_village_leaves_out_households_with_determinations_only() -> None:
    same = {t: "良" for t in THEMES}
    rnd = rules.RoundInput(1, 202503, (1, 2, 3, 4, 5, 6),
                           tuple(rules.Rating.agreed(h, t, "良", PRESENT) for h in range(1, 6) for t in same),
                           (rules.PassedDetermination(6, "CIVILISED_FAMILY"),))
    [s] = of(review_signals(rules.evaluate(rnd, R), R), "uniform_village")
    assert "5 户" in s.message


def test_equal_totals_from_different_grades_are_a_uniform_village_only() -> None:
    # 优+中 = 良+良 = 12 on two themes, the other four varied the same way for everybody -> totals equal
    rest = {"CUSTOMS": "优", "ENV": "中", "LAW": "良", "PUBLIC": "差"}
    pairs = [("优", "中"), ("中", "优"), ("良", "良"), ("优", "中"), ("良", "良")]
    grades = {h: {"DILIGENT": a, "FILIAL": b} | rest for h, (a, b) in enumerate(pairs, 1)}
    signals = review_signals(agreed(grades), R)
    assert [s.kind for s in signals if s.theme in (None, "DILIGENT", "FILIAL")] == ["uniform_village"]


# --- committee members ----------------------------------------------------------------------------------------------


def cells(n: int, odd: list[str], *, others: str = "中", theme: str = "ENV") -> dict[tuple[int, str], dict[int, str]]:
    """n households graded on one theme by members 1, 2, 3 (always `others`) and member 4 (`odd[i]`)."""
    return {(h, theme): {1: others, 2: others, 3: others, 4: odd[h - 1]} for h in range(1, n + 1)}


def test_a_member_two_grades_above_the_others_is_far_and_lenient() -> None:
    panel = cells(12, ["优"] * 12)
    result = panel_round(panel)
    signals = review_signals(result, R, panel=panel, member_names={4: "张委员"})
    far, lenient = of(signals, "rater_far"), of(signals, "rater_lenient")
    assert [(s.rater_id, s.level) for s in far] == [(4, "look")]
    assert [(s.rater_id, s.level) for s in lenient] == [(4, "look")]
    assert "张委员" in far[0].message and "12 项" in far[0].message and "相差 2 个等级" in far[0].message
    assert "高 2 个等级" in lenient[0].message
    assert signals.index(far[0]) < signals.index(lenient[0])


def test_a_member_below_the_others_is_lenient_the_other_way() -> None:
    panel = cells(12, ["差"] * 12, others="良")
    signals = review_signals(panel_round(panel), R, panel=panel)
    [s] = of(signals, "rater_lenient")
    assert s.rater_id == 4 and "低 2 个等级" in s.message and "委员 #4" in s.message


def test_a_member_who_matches_the_others_raises_nothing() -> None:
    panel = cells(12, ["中"] * 12)
    signals = review_signals(panel_round(panel), R, panel=panel)
    assert of(signals, "rater_far") == of(signals, "rater_lenient") == []


def test_rater_thresholds() -> None:
    def rater_signals(odd: list[str]) -> list[tuple[str, str]]:
        panel = cells(len(odd), odd)
        return [(s.kind, s.level) for s in review_signals(panel_round(panel), R, panel=panel) if s.rater_id == 4]

    assert rater_signals(["良"] * 6 + ["中"] * 4) == [("rater_far", "notice")]  # 0.6: notice, not lenient
    assert rater_signals(["良"] * 5 + ["中"] * 5) == []  # 0.5
    assert rater_signals(["良"] * 8 + ["中"] * 2) == [("rater_far", "notice"), ("rater_lenient", "notice")]  # 0.8
    assert rater_signals(["良"] * 7 + ["差"] * 1 + ["中"] * 2) == [("rater_far", "notice")]  # far 0.8, signed 0.6
    assert rater_signals(["良"] * 10) == [("rater_far", "look"), ("rater_lenient", "look")]  # 1.0
    assert rater_signals(["良"] * 5 + ["差"] * 5) == [("rater_far", "look")]  # far 1.0, signed 0
    assert rater_signals(["优"] * 9) == []  # fewer than 10 comparable grades


def test_rater_comparisons_need_two_other_members() -> None:
    panel = {(h, "ENV"): {1: "中", 4: "优"} for h in range(1, 13)}  # one other member per cell
    signals = review_signals(panel_round(panel), R, panel=panel)
    assert of(signals, "rater_far") == of(signals, "rater_lenient") == []


def test_rater_distance_is_to_the_median_of_the_others() -> None:
    # others 差, 中, 优 -> median 中; member 4 gives 中 every time: distance 0 although 2 of 3 others differ
    panel = {(h, "ENV"): {1: "差", 2: "中", 3: "优", 4: "中"} for h in range(1, 13)}
    signals = review_signals(panel_round(panel), R, panel=panel)
    assert 4 not in {s.rater_id for s in signals}
    # others 良, 优 (even: the median is between them, 3.5) for member 3 who gives 差 (1): 2.5 positions
    panel = {(h, "ENV"): {1: "良", 2: "优", 3: "差"} for h in range(1, 13)}
    far = [s for s in of(review_signals(panel_round(panel), R, panel=panel), "rater_far") if s.rater_id == 3]
    assert len(far) == 1 and "相差 2.5 个等级" in far[0].message


def test_unknown_themes_and_grades_in_the_panel_are_ignored() -> None:
    panel = cells(12, ["优"] * 12, theme="NOPE") | {(h, "ENV"): {1: "中", 2: "中", 3: "中", 4: "X"} for h in range(1, 13)}
    result = panel_round(cells(12, ["中"] * 12))
    signals = review_signals(result, R, panel=panel)
    assert of(signals, "rater_far") == of(signals, "rater_lenient") == []


# --- month to month -------------------------------------------------------------------------------------------------

ALL_BEST = {t: "优" for t in THEMES}  # total 60


def test_jump_thresholds_are_inclusive() -> None:
    result = agreed({h: varied(h) for h in range(1, 9)} | {9: dict(ALL_BEST)})
    assert result.household(9).total == 60  # type: ignore[union-attr]
    others = {h.household_id: h.total for h in result.households if h.household_id != 9}

    def jumped(before: int) -> tuple[int, ...]:
        return tuple(h for s in of(review_signals(result, R, previous_totals=others | {9: before}), "jump")
                     for h in s.household_ids)

    assert jumped(40) == (9,)  # +20: both max(20, 20) reached
    assert jumped(41) == ()  # +19
    assert jumped(120) == (9,)  # -60, half of 120
    assert jumped(119) == ()  # -59 < 59.5
    assert jumped(60) == ()


def test_small_totals_need_twenty_points() -> None:
    result = agreed({h: varied(h) for h in range(1, 9)} | {9: dict(ALL_BEST)})
    previous = {h.household_id: h.total for h in result.households}
    assert of(review_signals(result, R, previous_totals=previous | {9: 41}), "jump") == []
    previous[9] = 0
    [s] = of(review_signals(result, R, previous_totals=previous), "jump")
    assert s.household_ids == (9,) and "户 #9 0→60（+60）" in s.message


def test_half_of_a_small_total_is_not_enough() -> None:
    result = agreed({h: varied(h) for h in range(1, 9)} | {9: {t: "中" for t in THEMES}})
    assert result.household(9).total == 12  # type: ignore[union-attr]
    previous = {h.household_id: h.total for h in result.households}
    assert of(review_signals(result, R, previous_totals=previous | {9: 0}), "jump") == []  # +12 >= 0 but < 20
    assert of(review_signals(result, R, previous_totals=previous | {9: 31}), "jump") == []  # -19
    [s] = of(review_signals(result, R, previous_totals=previous | {9: -8}), "jump")  # +20 (debt allowed elsewhere)
    assert s.household_ids == (9,)


def test_jump_level_depends_on_the_share_of_households() -> None:
    result = agreed({h: varied(h) for h in range(1, 11)})
    same = {h.household_id: h.total for h in result.households}
    one = same | {1: same[1] + 100}
    [s] = of(review_signals(result, R, previous_totals=one), "jump")
    assert s.level == "notice" and "10 户中有 1 户" in s.message  # exactly 10 %: not more
    two = one | {2: same[2] + 100}
    [s] = of(review_signals(result, R, previous_totals=two), "jump")
    assert s.level == "look" and s.household_ids == (1, 2)
    # a household without last month's total is not compared
    [s] = of(review_signals(result, R, previous_totals={1: same[1] + 100}), "jump")
    assert s.level == "look" and "1 户中有 1 户" in s.message


def test_jump_lists_ten_households_by_size_of_change() -> None:
    result = agreed({h: varied(h) for h in range(1, 13)})
    previous = {h.household_id: h.total + 100 + h.household_id for h in result.households}
    labels = {h: f"李家{h}号" for h in range(1, 12)}  # 12 has no label
    [s] = of(review_signals(result, R, previous_totals=previous, household_labels=labels), "jump")
    assert s.household_ids == tuple(range(12, 0, -1))
    assert "户 #12" in s.message and "李家3号" in s.message
    assert "李家2号" not in s.message and "李家1号" not in s.message and "等 12 户" in s.message
    assert s.message.index("户 #12") < s.message.index("李家11号") < s.message.index("李家3号")


def test_unchanged_grades_for_six_months() -> None:
    result = agreed({h: varied(h) for h in range(1, 9)})
    assert of(review_signals(result, R, identical_months={1: 5, 2: 1}), "unchanged") == []
    [s] = of(review_signals(result, R, identical_months={1: 6, 2: 5, 3: 9}, household_labels={3: "王家"}), "unchanged")
    assert s.level == "notice" and s.household_ids == (3, 1)
    assert "王家（9 个月）" in s.message and "户 #1（6 个月）" in s.message and "户 #2" not in s.message


# --- incomplete rounds ----------------------------------------------------------------------------------------------


def test_skipped_households_and_problems() -> None:
    grades: dict[int, dict[str, str]] = {h: varied(h) for h in range(1, 7)}
    grades[5] = {}  # no rating at all
    del grades[6]["ENV"]  # one theme missing
    [s] = of(review_signals(agreed(grades), R), "skipped")
    assert s.level == "look" and s.household_ids == (5, 6)
    assert "1 户" in s.message and "7 条" in s.message and "2 户" in s.message


def test_problems_without_skipped_households_still_raise_the_signal() -> None:
    grades = {h: varied(h) for h in range(1, 7)}
    del grades[6]["ENV"]
    [s] = of(review_signals(agreed(grades), R), "skipped")
    assert s.household_ids == (6,) and "1 条" in s.message and "没有任何计分项" not in s.message


def test_a_panel_without_quorum_is_a_skipped_household() -> None:
    panel = {(1, t): {1: "良", 2: "良"} for t in THEMES}  # two raters, quorum 3
    [s] = review_signals(panel_round(panel), R)
    assert s.kind == "skipped" and s.household_ids == (1,)


# --- order and wording ----------------------------------------------------------------------------------------------


def busy_round() -> tuple[rules.RoundResult, dict[str, object]]:
    panel = cells(12, ["优"] * 12)
    panel[(13, "ENV")] = {1: "中", 2: "中"}  # no quorum: a skipped household
    result = panel_round(panel)
    extras: dict[str, object] = {
        "panel": panel,
        "previous_totals": {h.household_id: h.total + 40 for h in result.households},
        "identical_months": {1: 7},
        "member_names": {4: "张委员"},
    }
    return result, extras


def test_look_first_then_kind_order() -> None:
    result, extras = busy_round()
    signals = review_signals(result, R, **extras)  # type: ignore[arg-type]
    assert [(s.level, s.kind) for s in signals] == [
        ("look", "uniform_village"), ("look", "rater_far"), ("look", "rater_lenient"), ("look", "jump"), ("look", "skipped"),
        ("notice", "uniform_theme"), ("notice", "unchanged"),
    ]
    assert signals == sorted(signals, key=lambda s: (LEVELS.index(s.level), KINDS.index(s.kind)))


def test_messages_are_neutral_chinese_with_numbers() -> None:
    result, extras = busy_round()
    signals = review_signals(result, R, **extras)  # type: ignore[arg-type]
    same = {t: "良" for t in THEMES}
    signals += review_signals(agreed({h: dict(same) for h in range(1, 6)}), R)
    assert {s.kind for s in signals} == set(KINDS)
    for s in signals:
        assert s.message.startswith("请留意：") and "可能" in s.message
        assert any(c.isdigit() for c in s.message)
        assert not any(word in s.message for word in VERDICTS), s.message


def test_the_order_of_the_mappings_does_not_matter() -> None:
    result, extras = busy_round()
    first = review_signals(result, R, **extras)  # type: ignore[arg-type]
    rng = random.Random(3)

    def mixed(m: Mapping[object, object]) -> dict[object, object]:
        items = [(k, mixed(v) if isinstance(v, Mapping) else v) for k, v in m.items()]
        rng.shuffle(items)
        return dict(items)

    for _ in range(5):
        again = {k: mixed(v) for k, v in extras.items()}  # type: ignore[arg-type]
        assert review_signals(result, R, **again) == first  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------------------------------


@st.composite
def reviews(draw: st.DrawFn) -> tuple[rules.RoundResult, rules.Ruleset, dict[str, object]]:
    ruleset, rnd = draw(cases())
    result = rules.evaluate(rnd, ruleset)
    panel: dict[tuple[int, str], dict[int, str]] = {
        (r.household_id, r.theme): dict(zip(r.raters, r.grades, strict=True)) for r in rnd.ratings if not r.consensus
    }
    if draw(st.booleans()):  # junk the caller might pass: unknown theme, grade outside the scale
        panel[(1, "NOPE")] = {1: "优", 2: "优", 3: "差"}
        panel[(2, ruleset.themes[0].code)] = {1: "??", 2: ruleset.themes[0].grades[0].code, 3: "??"}
    hids = st.integers(0, 50)
    extras: dict[str, object] = {
        "panel": draw(st.none() | st.just(panel)),
        "previous_totals": draw(st.none() | st.dictionaries(hids, st.integers(-100, 200), max_size=20)),
        "identical_months": draw(st.none() | st.dictionaries(hids, st.integers(0, 24), max_size=20)),
        "member_names": draw(st.none() | st.dictionaries(st.integers(1, 9), st.text(max_size=4), max_size=9)),
        "household_labels": draw(st.none() | st.dictionaries(hids, st.text(max_size=6), max_size=20)),
    }
    return result, ruleset, extras


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reviews())
def test_never_raises_and_is_deterministic(case: tuple[rules.RoundResult, rules.Ruleset, dict[str, object]]) -> None:
    result, ruleset, extras = case
    first = review_signals(result, ruleset, **extras)  # type: ignore[arg-type]
    assert review_signals(result, ruleset, **extras) == first  # type: ignore[arg-type]
    reversed_extras = {k: dict(reversed(list(v.items()))) if isinstance(v, dict) else v for k, v in extras.items()}
    assert review_signals(result, ruleset, **reversed_extras) == first  # type: ignore[arg-type]
    assert first == sorted(first, key=lambda s: (LEVELS.index(s.level), KINDS.index(s.kind)))
    for s in first:
        assert s.kind in KINDS and s.level in LEVELS and s.message.startswith("请留意：")
        assert s.household_ids == tuple(dict.fromkeys(s.household_ids))  # no duplicates
    assert len(of(first, "jump")) <= 1 and len(of(first, "skipped")) <= 1 and len(of(first, "unchanged")) <= 1
    assert bool(of(first, "skipped")) == bool(result.skipped or result.problems)
