"""Properties of the rules engine (Hypothesis): caps respected, total = sum of lines, same input = same output in any
order, no posting without a rule that produced it, TOML round trip, validation never crashes."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.rules import (
    RoundInput,
    RoundResult,
    Ruleset,
    RulesetInvalid,
    dumps,
    evaluate,
    from_dict,
    loads,
    simulate,
    to_dict,
    validate,
)
from app.rules.model import RED_POLICY_CODE
from tests.support.rule_strategies import cases, rulesets

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- engine properties ----------------------------------------------------------------------------------------------


@SETTINGS
@given(cases())
def test_caps_respected(case: tuple[Ruleset, RoundInput]) -> None:
    r, rnd = case
    for h in evaluate(rnd, r).households:
        for t in r.themes:
            assert sum(x.points for x in h.lines if x.theme == t.code and x.points > 0) <= t.monthly_cap
        for x in h.lines:
            assert x.capped == (x.points != x.raw_points)
            assert (0 <= x.points <= x.raw_points) if x.raw_points > 0 else x.points == x.raw_points


@SETTINGS
@given(cases())
def test_total_is_the_sum_of_the_lines(case: tuple[Ruleset, RoundInput]) -> None:
    r, rnd = case
    res = evaluate(rnd, r)
    for h in res.households:
        assert h.total == sum(x.points for x in h.lines)
        assert h.lines, "a household without lines is skipped, not listed"
    points = [x.points for h in res.households for x in h.lines]
    assert res.totals.points_issued == sum(p for p in points if p > 0)
    assert res.totals.points_deducted == -sum(p for p in points if p < 0)
    assert res.totals.net_points == sum(h.total for h in res.households)
    assert {h.household_id for h in res.households} | {s.household_id for s in res.skipped} == set(rnd.households)
    assert res.totals.households_eligible == len(rnd.households)


def shuffled(rnd: RoundInput, rng: random.Random) -> RoundInput:
    """The same round, every collection in another order (panel grades shuffled together with their raters)."""
    def mix(items: Any) -> tuple[Any, ...]:
        out = list(items)
        rng.shuffle(out)
        return tuple(out)

    ratings = []
    for x in rnd.ratings:
        if x.consensus:
            ratings.append(replace(x, raters=mix(x.raters)))
        else:
            pairs = mix(zip(x.grades, x.raters, strict=True))
            ratings.append(replace(x, grades=tuple(g for g, _ in pairs), raters=tuple(m for _, m in pairs)))
    return RoundInput(rnd.village_id, rnd.month, mix(rnd.households), mix(ratings), mix(rnd.determinations),
                      mix(rnd.history))


@SETTINGS
@given(cases(), st.randoms(use_true_random=False))
def test_same_input_same_output_in_any_order(case: tuple[Ruleset, RoundInput], rng: random.Random) -> None:
    r, rnd = case
    first = evaluate(rnd, r)
    assert evaluate(rnd, r) == first
    assert evaluate(shuffled(rnd, rng), r) == first
    assert simulate(rnd, r, r).changes == ()


def assert_cited(res: RoundResult, r: Ruleset, rnd: RoundInput) -> None:
    passed = {(d.household_id, d.code) for d in rnd.determinations}
    for h in res.households:
        grades = {x.theme: x.grade for x in h.lines if x.kind == "theme"}
        for x in h.lines:
            if x.kind == "theme":
                theme = r.theme(x.code)
                assert theme is not None and theme.grade(x.grade or "") is not None and x.rule == f"{x.code}-{x.grade}"
            else:
                assert r.determination(x.code) is not None and (h.household_id, x.code) in passed
        for p in h.postings:
            assert p.household_id == h.household_id and p.months_shown >= 1 and p.explanation
            if p.source == "determination":
                d = r.determination(p.code)
                assert d is not None and d.list == p.list and (h.household_id, p.code) in passed
                assert r.red_policy.commendations_count if p.list == "red" else r.black_policy.determinations_count
            elif p.source == "red_policy":
                assert p.list == "red" and p.code == RED_POLICY_CODE and r.red_policy.has_criterion()
                assert r.red_policy.threshold is None or h.total >= r.red_policy.threshold
            else:
                rule = next(w for w in r.black_policy.worst_grade if w.theme == p.theme and w.determination == p.code)
                theme = r.theme(rule.theme)
                assert p.list == "black" and theme is not None and grades.get(theme.code) == theme.scale()[0].code


@SETTINGS
@given(cases())
def test_no_posting_without_a_rule_that_produced_it(case: tuple[Ruleset, RoundInput]) -> None:
    r, rnd = case
    assert_cited(evaluate(rnd, r), r, rnd)


# --- ruleset properties ---------------------------------------------------------------------------------------------


@SETTINGS
@given(rulesets())
def test_generated_rulesets_validate_and_round_trip_through_toml(r: Ruleset) -> None:
    assert validate(r) == []
    assert loads(dumps(r)) == r
    assert from_dict(to_dict(r)) == r


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4),
    max_leaves=12,
)


def parse_or_refuse(data: object) -> None:
    try:
        r = from_dict(data)
    except RulesetInvalid as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
    else:
        assert validate(r) == []


@SETTINGS
@given(json_values)
def test_validation_never_crashes_on_arbitrary_data(data: object) -> None:
    parse_or_refuse(data)


@st.composite
def mutated(draw: st.DrawFn) -> object:
    """A valid ruleset's dict with one value somewhere replaced, removed or an unknown key added."""
    data: Any = to_dict(draw(rulesets()))
    node = data
    for _ in range(draw(st.integers(0, 3))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        children = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not children:
            break
        node = draw(st.sampled_from(children))[1]
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    action = draw(st.sampled_from(["replace", "remove", "add"]))
    if keys and action == "replace":
        node[draw(st.sampled_from(keys))] = draw(json_values)
    elif keys and action == "remove":
        del node[draw(st.sampled_from(keys))]
    elif isinstance(node, dict):
        node[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    return data


@SETTINGS
@given(mutated())
def test_validation_never_crashes_on_a_damaged_ruleset(data: object) -> None:
    parse_or_refuse(data)


@SETTINGS
@given(st.text(max_size=200))
def test_loads_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        loads(text)
    except RulesetInvalid as e:
        assert e.problems
