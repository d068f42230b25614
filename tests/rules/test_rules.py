"""The rules engine by example: ruleset validation, TOML, combining grades, caps, quorum, red/black policies,
determinations, explanations, simulation. Pure: no database, no app."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from app.rules import (
    BlackPolicy,
    CreditGrade,
    CreditRecord,
    CreditRule,
    Determination,
    Grade,
    PassedDetermination,
    Rating,
    RedPolicy,
    RoundInput,
    RoundInputInvalid,
    Ruleset,
    RulesetInvalid,
    Theme,
    WorstGradeRule,
    WorstRun,
    check,
    default_ruleset,
    dumps,
    evaluate,
    from_dict,
    loads,
    simulate,
    to_dict,
    validate,
)
from app.rules.combine import combine, decimal2
from app.rules.errors import RulesError
from app.rulesets.service import RulesRefused

CJK = re.compile(r"[\u4e00-\u9fff]")
G4 = (Grade("优", "优", 10, 4), Grade("良", "良", 6, 3), Grade("中", "中", 2, 2), Grade("差", "差", 0, 1))


def one_theme(combine: str = "median", *, cap: int = 10, quorum: int = 3, **kw: object) -> Ruleset:
    """A small ruleset: ENV graded 优/良/中/差 = 10/6/2/0, no red criterion unless given."""
    base = Ruleset(code="T", name="测试细则", version=1, effective_from=202501, point_value_fen=100,
                   combine=combine, quorum=quorum, penalty_policy="floor_at_zero",  # type: ignore[arg-type]
                   themes=(Theme("ENV", "环保卫生", G4, cap),))
    return replace(base, **kw)


def panel(hid: int, *grades: str, theme: str = "ENV") -> Rating:
    return Rating.panel(hid, theme, {100 + i: g for i, g in enumerate(grades)})


def line_of(result, hid: int, code: str = "ENV"):  # type: ignore[no-untyped-def]
    h = result.household(hid)
    assert h is not None
    return next(x for x in h.lines if x.code == code)


# --- the default ruleset and validation -----------------------------------------------------------------------------


def test_default_ruleset_is_valid_and_complete() -> None:
    r = default_ruleset()
    assert validate(r) == []
    assert [t.name for t in r.themes] == ["勤劳致富", "孝老爱亲", "移风易俗", "环保卫生", "遵纪守法", "热心公益"]
    assert [t.code for t in r.themes] == ["DILIGENT", "FILIAL", "CUSTOMS", "ENV", "LAW", "PUBLIC"]
    assert all([g.label for g in t.scale()][::-1] == ["优", "良", "中", "差"] for t in r.themes)
    names = {d.name: d for d in r.determinations}
    assert {"不诚信户", "不孝儿女", "卫生不整洁户", "文明家庭", "好婆婆好媳妇", "见义勇为"} <= set(names)
    assert names["不孝儿女"].list == "black" and names["不孝儿女"].names_member
    assert names["文明家庭"].list == "red" and names["文明家庭"].points > 0
    assert r.coverage_target_pct == 60 and r.point_value_fen == 100


def broken_ruleset() -> Ruleset:
    r = default_ruleset()
    env = r.themes[3]
    themes = (
        replace(r.themes[0], code="ENV"),  # duplicate code
        replace(r.themes[1], grades=()),  # empty scale
        replace(r.themes[2], grades=(Grade("优", "优", 10, 2), Grade("良", "良", 6, 2))),  # ranks not unique
        replace(env, monthly_cap=5),  # cap below the best grade
        replace(r.themes[4], grades=(Grade("优", "优", 2, 2), Grade("差", "差", 5, 1))),  # better grade, fewer points
    )
    dets = (
        replace(r.determinations[0], list="grey", vote="most"),  # type: ignore[arg-type]
        replace(r.determinations[1], months_shown=0),
        replace(r.determinations[3], points=-5),  # red with negative points
        replace(r.determinations[4], theme="NOPE"),
    )
    return replace(r, themes=themes, determinations=dets, combine="mode", quorum=0,  # type: ignore[arg-type]
                   coverage_target_pct=101, effective_from=202513, penalty_policy="forgive",  # type: ignore[arg-type]
                   red_policy=RedPolicy(top_percent=0),
                   black_policy=BlackPolicy(worst_grade=(WorstGradeRule("ENV", 0, "CIVILISED_FAMILY"),)))


def test_validation_lists_every_problem_in_chinese() -> None:
    problems = validate(broken_ruleset())
    text = "\n".join(problems)
    expected = [
        "评比项目编号“ENV”重复出现",
        "评比项目“孝老爱亲”（FILIAL）的评分等级不足",
        "排序值（rank）都是 2",
        "月上限 5 分低于最好等级“优”的 10 分，请把月上限改为不少于 10",
        "等级越好分值应越高",
        "榜单“grey”未知，可选：red（红榜）",
        "表决方式“most”未知",
        "上黑榜，公示月数须至少 1 个月",
        "红榜认定的分值不能为负",
        "计入的评比项目“NOPE”不存在",
        "评分合成方式“mode”未知",
        "法定人数",
        "年度红黑榜覆盖率目标（%）须在 0 到 100 之间，现在是 101",
        "生效月份 202513 无效",
        "扣分政策“forgive”未知",
        "红榜前百分比须在 1 到 100 之间",
        "连续月数须在 1 到 24 之间",
        "不上黑榜，请引用一个黑榜认定",
    ]
    for fragment in expected:
        assert fragment in text, fragment
    assert all(CJK.search(p) for p in problems)
    with pytest.raises(RulesetInvalid) as e:
        check(broken_ruleset())
    assert e.value.problems == tuple(problems)
    refused = RulesRefused(e.value)  # the engine's own error, as the application answers it
    assert refused.status == 422 and refused.details == {"problems": problems}
    assert "积分细则未通过校验" in e.value.message


def test_validation_of_texts_and_codes() -> None:
    r = one_theme(code="", name=" 细则 ", themes=(Theme("env x", "", G4, 10),))
    text = "\n".join(validate(r))
    assert "细则编号“”无效" in text
    assert "细则名称“细则”首尾有空格" in text
    assert "编号“env x”无效" in text
    assert "的名称不能为空" in text
    assert validate(one_theme(themes=())) == ["细则没有任何评比项目，请至少添加一个（如 环保卫生）"]
    bad_grade = (Grade("优 秀", "优", 10, 2), Grade("差", "差", 0, 1))
    assert any("代码“优 秀”无效" in p for p in validate(one_theme(themes=(Theme("ENV", "环保卫生", bad_grade, 10),))))


def test_worst_grade_rule_must_post_an_unnamed_black_determination() -> None:
    r = default_ruleset()
    bad = replace(r, black_policy=BlackPolicy(worst_grade=(WorstGradeRule("FILIAL", 3, "UNFILIAL"),
                                                           WorstGradeRule("XX", 3, "NONE"))))
    text = "\n".join(validate(bad))
    assert "须指明家庭成员，自动上榜无法指明" in text
    assert "评比项目“XX”不存在" in text and "引用的认定“NONE”不存在" in text


# --- dict and TOML --------------------------------------------------------------------------------------------------


def test_toml_round_trip_keeps_chinese() -> None:
    r = default_ruleset()
    text = dumps(r)
    assert 'name = "环保卫生"' in text and 'name = "不孝儿女"' in text
    assert loads(text) == r
    assert loads(text.encode("utf-8")) == r
    assert loads(b"\xef\xbb\xbf" + text.encode("utf-8")) == r  # Windows Notepad's BOM
    assert from_dict(to_dict(r)) == r


def test_toml_escapes_quotes_backslashes_and_newlines() -> None:
    r = replace(default_ruleset(), name='县"默认"\\细则')
    r = replace(r, themes=(replace(r.themes[0], description='第一行\n第二行\t"引号" \\ #不是注释'), *r.themes[1:]))
    assert loads(dumps(r)) == r


def test_toml_unknown_key_names_key_and_line() -> None:
    text = dumps(default_ruleset()).replace("monthly_cap = 20", "monthly_cpa = 20")
    line = text.splitlines().index("monthly_cpa = 20") + 1
    with pytest.raises(RulesetInvalid) as e:
        loads(text)
    assert f"未知的键 themes[2].monthly_cpa（第 {line} 行）" in e.value.problems[0]
    assert "缺少必填的键 themes[2].monthly_cap（月上限）" in e.value.problems[1]


def test_toml_syntax_error_names_the_line() -> None:
    text = dumps(default_ruleset()).replace('name = "县级默认积分细则"', 'name = "县级默认积分细则')
    line = next(i for i, x in enumerate(text.splitlines(), 1) if x.startswith('name = "县级'))
    with pytest.raises(RulesetInvalid) as e:
        loads(text)
    assert f"第 {line} 行" in e.value.problems[0] and "缺少结尾的英文双引号" in e.value.problems[0]
    with pytest.raises(RulesetInvalid) as e:
        loads("version = 1\nversion = 2\n")
    assert "第 2 行" in e.value.problems[0] and "同一个键写了两次" in e.value.problems[0]


def test_toml_wrong_types_and_semantics() -> None:
    text = dumps(default_ruleset()).replace("version = 1", 'version = "一"').replace("quorum = 3", "quorum = 3.5")
    with pytest.raises(RulesetInvalid) as e:
        loads(text)
    assert e.value.problems == ("version（版本号）应为整数，实际是文字 '一'", "quorum（法定人数）应为整数，实际是小数 3.5")
    with pytest.raises(RulesetInvalid) as e:
        loads(dumps(default_ruleset()).replace("quorum = 3", "quorum = 0"))
    assert any("法定人数" in p and "现在是 0" in p for p in e.value.problems)
    with pytest.raises(RulesetInvalid) as e:
        loads(b"\xff\xfe")
    assert "UTF-8" in e.value.problems[0]


def test_dumps_refuses_an_invalid_ruleset() -> None:
    with pytest.raises(RulesetInvalid):
        dumps(broken_ruleset())


def test_from_dict_reports_structure_problems() -> None:
    with pytest.raises(RulesetInvalid) as e:
        from_dict([1, 2])
    assert e.value.problems == ("细则文件应为一个表（键 = 值 的集合），实际是数组 [1, 2]",)
    data = to_dict(default_ruleset())
    data["themes"][0]["grades"][1] = "良"
    data["red_policy"]["exclude_black"] = "yes"
    data[3] = "x"
    with pytest.raises(RulesetInvalid) as e:
        from_dict(data)
    assert e.value.problems == (
        "未知的键 3：请删除或改正拼写，可用的键有 code、name、version、effective_from、point_value_fen、combine、quorum、"
        "penalty_policy、coverage_target_pct、red_policy、black_policy、credit、themes、determinations",
        "red_policy.exclude_black（上黑榜者不按总分上红榜）应为true 或 false，实际是文字 'yes'",
        "themes[1].grades[2]应为一个表（键 = 值 的集合），实际是文字 '良'",
    )


# --- the credit grade rule (信用等级) --------------------------------------------------------------------------------


def former_fixed_rule(earned: int, deducted: int, red: int, black: int) -> str:
    """The county's credit rule as it was hard-coded before it became part of the ruleset."""
    net = earned - deducted
    if black or earned == 0:
        return "不评级"
    if red >= 2 and net >= 100:
        return "AAA"
    if red >= 1 or net >= 60:
        return "AA"
    return "A" if net > 0 else "不评级"


def test_the_default_credit_rule_grades_as_the_former_fixed_rule() -> None:
    rule = default_ruleset().credit
    assert rule == CreditRule() and rule.codes() == ("AAA", "AA", "A", "不评级")
    for earned in (0, 1, 10, 59, 60, 61, 99, 100, 101, 250):
        for deducted in (0, 1, 10, 40, 60, 300):
            for red in range(4):
                for black in range(3):
                    for lifted in range(2):  # a lifted black posting never counted against a household
                        got = rule.grade(CreditRecord(earned, deducted, red, black, lifted))
                        assert got == former_fixed_rule(earned, deducted, red, black), (earned, deducted, red, black)
    assert rule.describe() == [
        ("AAA", "全年上红榜至少 2 次，且净得积分至少 100 分；没有未移出的黑榜（经整改移出的不计）"),
        ("AA", "全年上红榜至少 1 次或净得积分至少 60 分；没有未移出的黑榜（经整改移出的不计）"),
        ("A", "净得积分至少 1 分；没有未移出的黑榜（经整改移出的不计）"),
        ("不评级", "达不到以上任何一级；全年没有得到积分的也不评级"),
    ]


def test_a_credit_rule_of_the_countys_own() -> None:
    rule = CreditRule(grades=(CreditGrade("信用户", min_red=1, max_black=1, lifted_black_counts=True),
                              CreditGrade("一般", min_net=-20, max_black=2)),
                      fallback="失信", ungraded_without_points=False)
    assert rule.grade(CreditRecord(0, 0, 1, 0)) == "信用户"  # no points earned, but that is no reason here
    assert rule.grade(CreditRecord(50, 0, 2, 1, 0)) == "信用户"  # one black posting allowed
    assert rule.grade(CreditRecord(50, 0, 2, 1, 1)) == "一般"  # two with the lifted one, which counts here
    assert rule.grade(CreditRecord(50, 0, 2, 0, 5)) == "一般"  # lifted postings do not count for 一般
    assert rule.grade(CreditRecord(0, 20, 0, 2)) == "一般"  # net -20: at least -20
    assert rule.grade(CreditRecord(0, 21, 0, 0)) == "失信"
    assert rule.grade(CreditRecord(50, 0, 0, 3)) == "失信"
    assert rule.describe() == [
        ("信用户", "全年上红榜至少 1 次；全年上黑榜不超过 1 次（经整改移出的也算）"),
        ("一般", "净得积分至少 -20 分；未移出的黑榜不超过 2 次（经整改移出的不计）"),
        ("失信", "达不到以上任何一级"),
    ]
    r = replace(default_ruleset(), credit=rule)
    assert validate(r) == []
    text = dumps(r)
    assert "[credit]" in text and 'fallback = "失信"' in text and "[[credit.grades]]" in text
    assert loads(text) == r and from_dict(to_dict(r)) == r


def test_a_stored_file_without_the_credit_section_grades_by_the_former_rule() -> None:
    text = dumps(default_ruleset())
    start, end = text.index("\n[credit]\n"), text.index("\n[[themes]]\n")
    without = text[:start] + text[end:]  # as files were written before the rule was part of the ruleset
    assert "\n[credit]" not in without and "\nmin_red" not in without
    assert loads(without) == default_ruleset()
    data = to_dict(default_ruleset())
    del data["credit"]
    assert from_dict(data).credit == CreditRule()


def test_credit_validation_says_what_to_fix() -> None:
    def problems(**kw: object) -> str:
        return "\n".join(validate(replace(default_ruleset(), credit=CreditRule(**kw))))  # type: ignore[arg-type]

    assert problems(grades=()) == "信用等级规则没有任何等级，请至少添加一级（如 AAA：全年上红榜至少 2 次，净得积分至少 100 分）"
    text = problems(grades=(CreditGrade("AA", min_red=1), CreditGrade("AA", min_net=10), CreditGrade("A A"),
                            CreditGrade("B", min_red=-1, min_net=200_000, max_black=101),
                            CreditGrade("C", min_net=5, red_or_net=True)), fallback="B")
    for fragment in (
        "信用等级代码“AA”重复出现 2 次",
        "信用等级第 3 级“A A”的代码无效：代码须为 1–8 个字符，不含空格",
        "信用等级第 4 级“B”的至少上红榜次数须在 0 到 100 之间，现在是 -1",
        "信用等级第 4 级“B”的至少净得积分须在 -100000 到 100000 之间，现在是 200000",
        "信用等级第 4 级“B”的未移出的黑榜至多次数须在 0 到 100 之间，现在是 101",
        "信用等级第 5 级“C”设了“红榜次数和净得积分满足其一即可”，却没有同时设至少上红榜次数（1 次以上）和至少净得积分",
        "达不到任何等级时的评定“B”与一个信用等级同名，请改用另一个名称（如 不评级）",
    ):
        assert fragment in text, fragment
    assert "达不到任何等级时的评定“”无效" in problems(fallback="")
    # best first: a grade after one it cannot escape is never given
    swapped = problems(grades=(CreditGrade("AA", min_red=1, min_net=60, red_or_net=True),
                               CreditGrade("AAA", min_red=2, min_net=100), CreditGrade("A", min_net=1)))
    assert swapped == ("信用等级“AAA”（第 2 级）排在“AA”（第 1 级）之后，条件却不比它宽："
                       "达到“AAA”的农户都已评为“AA”，“AAA”永远评不上。等级须从高到低排列（最严的在前），请调整顺序或条件")
    # but a later grade that lets through what an earlier one does not is fine
    assert problems(grades=(CreditGrade("X", min_net=100), CreditGrade("Y", min_net=200, max_black=1))) == ""
    assert problems(grades=(CreditGrade("X", min_net=100, lifted_black_counts=True), CreditGrade("Y", min_net=200))) == ""
    once = problems(grades=(CreditGrade("X", min_net=100), CreditGrade("Y", min_net=50), CreditGrade("Z", min_net=200)))
    assert once.count("永远评不上") == 1 and "“Z”（第 3 级）排在“X”（第 1 级）之后" in once  # named once, by the first


def test_credit_section_in_toml_bad_input_is_named() -> None:
    text = dumps(default_ruleset())
    bad = text.replace("min_red = 2\n", 'min_red = "两次"\n', 1).replace("max_black = 0\n", "max_blak = 0\n", 1)
    line = bad.splitlines().index("max_blak = 0") + 1
    with pytest.raises(RulesetInvalid) as e:
        loads(bad)
    assert e.value.problems == (
        f"未知的键 credit.grades[1].max_blak（第 {line} 行）：请删除或改正拼写，可用的键有 code、min_red、min_net、red_or_net、"
        "max_black、lifted_black_counts",
        "credit.grades[1].min_red（至少上红榜次数）应为整数，实际是文字 '两次'",
    )
    with pytest.raises(RulesetInvalid) as e:
        loads(text.replace('code = "AA"\n', 'code = "AAA"\n', 1))
    assert any("信用等级代码“AAA”重复出现 2 次" in p for p in e.value.problems)


# --- combining grades -----------------------------------------------------------------------------------------------

SCALE = tuple(reversed(G4))  # worst to best


@pytest.mark.parametrize(("grades", "method", "expected"), [
    ("优优良", "median", "优"),
    ("优良差", "median", "良"),
    ("良优", "median", "优"),  # even: midpoint of 良 and 优 (3.5) rounds half up
    ("中优", "median", "良"),  # even: midpoint of 中 and 优 (3) is 良
    ("优优优差", "median", "优"),
    ("优优优差", "mean", "良"),  # 13/4 = 3.25
    ("优优优差", "trimmed_mean", "优"),  # drop one 优 and 差: 优,优
    ("优差", "mean", "良"),  # 2.5 rounds half up to 3
    ("优差差", "mean", "中"),  # 2.0
    ("优差差", "trimmed_mean", "差"),
    ("优差", "trimmed_mean", "良"),  # fewer than three: nothing dropped
    ("中", "mean", "中"),
])
def test_combine(grades: str, method: str, expected: str) -> None:
    by_code = {g.code: g for g in G4}
    grade, _ = combine(SCALE, [by_code[c] for c in grades], method)  # type: ignore[arg-type]
    assert grade.code == expected


def test_combine_uses_positions_not_rank_values() -> None:
    odd = tuple(replace(g, rank=r) for g, r in zip(SCALE, (0, 1, 2, 100), strict=True))  # 差 0, 中 1, 良 2, 优 100
    by_code = {g.code: g for g in odd}
    assert combine(odd, [by_code["优"], by_code["差"]], "mean")[0].code == "良"


def test_decimal_display_rounds_half_up() -> None:
    from fractions import Fraction
    assert (decimal2(Fraction(11, 3)), decimal2(Fraction(5, 2)), decimal2(Fraction(1, 200))) == ("3.67", "2.50", "0.01")


# --- explanations ---------------------------------------------------------------------------------------------------


def test_explanation_cites_inputs_rule_and_points() -> None:
    res = evaluate(RoundInput(1, 202503, (7,), (panel(7, "良", "优", "优"),)), one_theme())
    assert line_of(res, 7).explanation == "环保卫生：委员评分 优,优,良（3 人） → 中位数 优 → 规则 ENV-优 → +10"
    res = evaluate(RoundInput(1, 202503, (7,), (panel(7, "优", "优", "优", "差"),)), one_theme("mean"))
    assert line_of(res, 7).explanation == ("环保卫生：委员评分 优,优,优,差（4 人） → 平均 3.25（差=1…优=4）→ 四舍五入为 良 → "
                                           "规则 ENV-良 → +6")
    res = evaluate(RoundInput(1, 202503, (7,), (panel(7, "优", "优", "优", "差"),)), one_theme("trimmed_mean"))
    assert line_of(res, 7).explanation == ("环保卫生：委员评分 优,优,优,差（4 人） → 去掉一个最高、一个最低后 优,优 → 平均 4.00"
                                           "（差=1…优=4）→ 四舍五入为 优 → 规则 ENV-优 → +10")
    res = evaluate(RoundInput(1, 202503, (7,), (Rating.agreed(7, "ENV", "中", [1, 2, 3]),)), one_theme())
    assert line_of(res, 7).explanation == "环保卫生：委员会合议 中（到会委员 3 人） → 规则 ENV-中 → +2"
    line = line_of(res, 7)
    assert (line.rule, line.grade, line.points, line.raters, line.capped) == ("ENV-中", "中", 2, (1, 2, 3), False)


# --- caps -----------------------------------------------------------------------------------------------------------

INLAW = Determination("GOOD_INLAW", "好婆婆好媳妇", "red", 8, 3, names_member=True, theme="ENV")
DIRTY = Determination("UNHYGIENIC", "卫生不整洁户", "black", -5, 1, theme="ENV")
BRAVE = Determination("BRAVE", "见义勇为", "red", 30, 12, names_member=True)


def test_cap_limits_a_themes_positive_points_and_says_so() -> None:
    r = one_theme(cap=15, determinations=(INLAW, DIRTY, BRAVE))
    dets = (PassedDetermination(7, "GOOD_INLAW", member_name="李四"), PassedDetermination(7, "UNHYGIENIC"),
            PassedDetermination(7, "BRAVE", member_name="王五"))
    res = evaluate(RoundInput(1, 202503, (7,), (panel(7, "优", "优", "优"),), dets), r)
    h = res.household(7)
    assert h is not None
    assert [(x.code, x.raw_points, x.points, x.capped) for x in h.lines] == [
        ("ENV", 10, 10, False), ("GOOD_INLAW", 8, 5, True), ("UNHYGIENIC", -5, -5, False), ("BRAVE", 30, 30, False)]
    assert h.lines[1].explanation == ("认定 好婆婆好媳妇（家庭成员 李四，计入环保卫生） → 规则 GOOD_INLAW → +8；"
                                      "环保卫生本月上限 15 分，此前已计 10 分，本条只计 +5")
    assert h.total == 10 + 5 - 5 + 30
    assert res.totals.points_issued == 45 and res.totals.points_deducted == 5 and res.totals.net_points == 40
    assert res.totals.issued_fen == 4500


# --- quorum and skipped households ----------------------------------------------------------------------------------


def test_no_quorum_means_no_line_and_a_problem() -> None:
    r = one_theme(themes=(Theme("ENV", "环保卫生", G4, 10), Theme("LAW", "遵纪守法", G4, 10)))
    ratings = (panel(1, "优", "优", "优"), panel(1, "优", "优", theme="LAW"),
               Rating.agreed(2, "ENV", "良", [1, 2]), Rating.agreed(2, "LAW", "良", [1, 2, 3]))
    res = evaluate(RoundInput(9, 202503, (1, 2, 3), ratings), r)
    assert [x.code for x in res.household(1).lines] == ["ENV"]  # type: ignore[union-attr]
    assert [x.code for x in res.household(2).lines] == ["LAW"]  # type: ignore[union-attr]
    assert [(p.household_id, p.theme, p.message) for p in res.problems] == [
        (1, "LAW", "遵纪守法：只有 2 位有资格的委员评分，不足法定人数 3 人，本项不计分，请补齐评分"),
        (2, "ENV", "环保卫生：合议时到会的有资格委员只有 2 人，不足法定人数 3 人，本项不计分"),
        (3, "ENV", "环保卫生：本月没有评分，本项不计分，请补录"),
        (3, "LAW", "遵纪守法：本月没有评分，本项不计分，请补录"),
    ]
    assert [(s.household_id, s.reason) for s in res.skipped] == [(3, "本月没有评分，也没有认定")]
    assert res.totals.households_rated == 2 and res.totals.households_skipped == 1 and res.totals.problems == 4


def test_input_for_a_household_not_eligible_is_reported_not_counted() -> None:
    res = evaluate(RoundInput(9, 202503, (1,), (panel(1, "优", "优", "优"), panel(2, "优", "优", "优"))), one_theme())
    assert res.household(2) is None
    assert [(p.household_id, p.message) for p in res.problems] == [(2, "农户 2 不在本月参评名单中：其 1 条评分、0 条认定未计入")]


# --- bad input ------------------------------------------------------------------------------------------------------


def test_bad_input_raises_every_problem_in_chinese() -> None:
    r = one_theme(determinations=(INLAW,))
    rnd = RoundInput(9, 202513, (1, 1, 2), (
        panel(1, "优", "甲", "优"),
        panel(1, "优", "优", "优"),
        panel(2, "优", theme="XX"),
        Rating(2, "ENV", ("优", "良"), (1, 2), consensus=True),
    ), (PassedDetermination(2, "GOOD_INLAW"), PassedDetermination(2, "NOPE")), (WorstRun(1, "ENV", -1),))
    with pytest.raises(RoundInputInvalid) as e:
        evaluate(rnd, r)
    text = "\n".join(e.value.problems)
    for fragment in ["评比月份 202513 无效", "参评农户 1 在名单中重复出现",
                     "农户 1 的环保卫生评分“甲”不在评分等级中（可选：优、良、中、差）", "农户 1 的“ENV”评分录入了两次",
                     "评分项目“XX”不在细则 T 中", "是委员会合议，只能有一个等级", "认定“好婆婆好媳妇”须指明家庭成员姓名",
                     "认定“NOPE”不在细则 T 中", "连续最低等级月数不能为负"]:
        assert fragment in text, fragment
    assert RulesRefused(e.value).status == 422 and e.value.code == "rules_input_invalid"


def test_panel_shape_errors() -> None:
    with pytest.raises(RoundInputInvalid) as e:
        evaluate(RoundInput(9, 202503, (1,), (Rating(1, "ENV", ("优", "良"), (5, 5, 6)),)), one_theme())
    assert e.value.problems == ("农户 1 的环保卫生评分有 2 个等级却对应 3 位委员，须一一对应",
                                "农户 1 的环保卫生评分中委员 5 出现了不止一次")


def test_invalid_ruleset_is_refused_by_the_engine() -> None:
    with pytest.raises(RulesetInvalid):
        evaluate(RoundInput(9, 202503, (1,)), broken_ruleset())


# --- determinations -------------------------------------------------------------------------------------------------


def test_determinations_post_with_member_names_only_where_the_rule_names_a_member() -> None:
    r = default_ruleset()
    dets = (PassedDetermination(5, "UNFILIAL", member_id=51, member_name="张三", note="不赡养母亲", ref=900),
            PassedDetermination(5, "DISHONEST", member_id=52, member_name="张四", ref=901),
            PassedDetermination(6, "CIVILISED_FAMILY", ref=902))
    res = evaluate(RoundInput(1, 202503, (5, 6), (), dets), r)
    h5, h6 = res.household(5), res.household(6)
    assert h5 is not None and h6 is not None
    assert [(p.list, p.code, p.reason, p.months_shown, p.member_id, p.member_name, p.ref) for p in h5.postings] == [
        ("black", "DISHONEST", "不诚信户", 3, None, None, 901), ("black", "UNFILIAL", "不孝儿女", 3, 51, "张三", 900)]
    assert h5.postings[1].explanation == "认定 不孝儿女（家庭成员 张三） → 规则 UNFILIAL → 上黑榜 3 个月"
    assert "张四" not in repr(h5)
    unfilial = next(x for x in h5.lines if x.code == "UNFILIAL")
    assert unfilial.explanation == "认定 不孝儿女（家庭成员 张三，计入孝老爱亲） → 规则 UNFILIAL → -10"
    assert (unfilial.note, unfilial.ref, unfilial.theme) == ("不赡养母亲", 900, "FILIAL")
    assert h5.total == -20
    assert [(p.list, p.code) for p in h6.postings] == [("red", "CIVILISED_FAMILY")]
    assert res.totals.red_households == 1 and res.totals.black_households == 1 and res.totals.black_postings == 2
    # the household has no ratings: it is not skipped (it has lines) but every theme is a problem
    assert sum(1 for p in res.problems if p.household_id == 5) == 6 and not res.skipped


def test_list_switches_turn_determination_postings_off() -> None:
    r = replace(default_ruleset(), red_policy=RedPolicy(commendations_count=False),
                black_policy=BlackPolicy(determinations_count=False))
    dets = (PassedDetermination(5, "DISHONEST"), PassedDetermination(6, "CIVILISED_FAMILY"))
    res = evaluate(RoundInput(1, 202503, (5, 6), (), dets), r)
    assert all(not h.postings for h in res.households)
    assert [h.total for h in res.households] == [-10, 20]


# --- red policy -----------------------------------------------------------------------------------------------------


def round_with_grades(grades: dict[int, str]) -> RoundInput:
    """One household per entry, each rated on ENV by a consensus of three."""
    ratings = tuple(Rating.agreed(h, "ENV", g, [1, 2, 3]) for h, g in grades.items())
    return RoundInput(1, 202503, tuple(grades), ratings)


def red_ids(res) -> list[int]:  # type: ignore[no-untyped-def]
    return [h.household_id for h in res.households if any(p.source == "red_policy" for p in h.postings)]


def test_red_threshold() -> None:
    r = one_theme(red_policy=RedPolicy(threshold=6, months_shown=2))
    res = evaluate(round_with_grades({1: "优", 2: "良", 3: "中"}), r)
    assert red_ids(res) == [1, 2]
    p = res.household(2).postings[0]  # type: ignore[union-attr]
    assert (p.list, p.source, p.code, p.months_shown) == ("red", "red_policy", "red_policy", 2)
    assert p.explanation == "本月总分 6 分，达到红榜分数线 6 分 → 红榜政策 → 上红榜 2 个月"


def test_red_top_percent_includes_ties_at_the_boundary() -> None:
    """Ten households, top 10 % = ceil(1.0) = 1 place; two tied first: both are posted (documented)."""
    grades = {1: "优", 2: "优", **{h: "良" for h in range(3, 11)}}
    res = evaluate(round_with_grades(grades), one_theme(red_policy=RedPolicy(top_percent=10)))
    assert red_ids(res) == [1, 2]
    assert "在本村 10 户参评农户中排第 1 名（前 10% 即前 1 名，同分并列）" in res.household(2).postings[0].explanation  # type: ignore[union-attr]
    # eleven households, top 10 % = ceil(1.1) = 2 places: the two 优 and nobody of the nine tied third
    res = evaluate(round_with_grades({**grades, 11: "良"}), one_theme(red_policy=RedPolicy(top_percent=10)))
    assert red_ids(res) == [1, 2]
    # fifteen households, 10 % = ceil(1.5) = 2: one 优, then four tied 良 at place 2 are all in
    grades = {1: "优", **{h: "良" for h in range(2, 6)}, **{h: "中" for h in range(6, 16)}}
    res = evaluate(round_with_grades(grades), one_theme(red_policy=RedPolicy(top_percent=10)))
    assert red_ids(res) == [1, 2, 3, 4, 5]


def test_red_top_percent_and_threshold_must_both_hold_and_total_must_be_positive() -> None:
    grades = {1: "优", 2: "良", 3: "中", 4: "差"}
    res = evaluate(round_with_grades(grades), one_theme(red_policy=RedPolicy(top_percent=50, threshold=7)))
    assert red_ids(res) == [1]
    res = evaluate(round_with_grades({1: "差", 2: "差"}), one_theme(red_policy=RedPolicy(top_percent=100)))
    assert red_ids(res) == []


def test_red_policy_skips_black_listed_households_unless_told_not_to() -> None:
    r = one_theme(red_policy=RedPolicy(threshold=0), determinations=(DIRTY,))
    rnd = replace(round_with_grades({1: "优", 2: "优"}), determinations=(PassedDetermination(2, "UNHYGIENIC"),))
    assert red_ids(evaluate(rnd, r)) == [1]
    r = replace(r, red_policy=RedPolicy(threshold=0, exclude_black=False))
    assert red_ids(evaluate(rnd, r)) == [1, 2]


# --- black policy ---------------------------------------------------------------------------------------------------


def black_ruleset() -> Ruleset:
    return one_theme(determinations=(DIRTY,), black_policy=BlackPolicy(worst_grade=(WorstGradeRule("ENV", 3, "UNHYGIENIC"),)))


@pytest.mark.parametrize(("before", "grade", "posted", "run"), [
    (2, "差", True, 3),  # third month running: posted
    (5, "差", True, 6),  # still running: posted again
    (1, "差", False, 2),  # only the second month
    (2, "中", False, None),  # run broken this month
])
def test_black_after_k_months_at_the_lowest_grade(before: int, grade: str, posted: bool, run: int | None) -> None:
    rnd = replace(round_with_grades({1: grade}), history=(WorstRun(1, "ENV", before),))
    h = evaluate(rnd, black_ruleset()).household(1)
    assert h is not None
    assert [w.months for w in h.worst_runs] == ([run] if run else [])
    assert bool(h.postings) is posted
    if posted:
        p = h.postings[0]
        assert (p.list, p.source, p.code, p.theme, p.months_shown) == ("black", "black_policy", "UNHYGIENIC", "ENV", 1)
        assert p.explanation == (f"环保卫生连续 {run} 个月评为 差（规则：连续 3 个月最低等级）→ 黑榜规则 ENV-3 → 卫生不整洁户，"
                                 "上黑榜 1 个月（不另扣分）")
        assert h.total == 0  # the grade's 0 points, no extra deduction


def test_black_policy_does_not_double_post_a_passed_determination() -> None:
    rnd = replace(round_with_grades({1: "差"}), history=(WorstRun(1, "ENV", 2),),
                  determinations=(PassedDetermination(1, "UNHYGIENIC", ref=3),))
    h = evaluate(rnd, black_ruleset()).household(1)
    assert h is not None
    assert [(p.source, p.code) for p in h.postings] == [("determination", "UNHYGIENIC")]


# --- determinism and simulation -------------------------------------------------------------------------------------


def test_same_input_same_output_regardless_of_order() -> None:
    r = default_ruleset()
    ratings = [Rating.panel(h, t.code, {1: "优", 2: "良", 3: "差" if h % 3 else "优"}) for h in range(1, 30) for t in r.themes]
    dets = [PassedDetermination(4, "GOOD_INLAW", member_name="甲", ref=1),
            PassedDetermination(4, "BRAVE", member_name="乙", ref=2)]
    a = evaluate(RoundInput(1, 202503, tuple(range(1, 31)), tuple(ratings), tuple(dets)), r)
    shuffled = [Rating(x.household_id, x.theme, x.grades[::-1], x.raters[::-1]) for x in reversed(ratings)]
    b = evaluate(RoundInput(1, 202503, tuple(range(30, 0, -1)), tuple(shuffled), tuple(dets[::-1])), r)
    assert a == b


def test_simulate_shows_per_household_and_total_differences() -> None:
    a = one_theme(red_policy=RedPolicy(threshold=10))
    b = replace(a, themes=(Theme("ENV", "环保卫生", tuple(replace(g, points=g.points * 2) for g in G4), 20),),
                red_policy=RedPolicy(threshold=12))
    sim = simulate(round_with_grades({1: "优", 2: "良", 3: "差"}), a, b)
    assert [(c.household_id, c.total_a, c.total_b, c.delta) for c in sim.changes] == [(1, 10, 20, 10), (2, 6, 12, 6)]
    assert [p.code for p in sim.changes[1].postings_added] == ["red_policy"] and not sim.changes[1].postings_removed
    assert sim.totals.points_issued == (16, 32)
    assert sim.totals.issued_fen == (1600, 3200)
    assert sim.totals.red_households == (1, 2)
    assert sim.totals.coverage_pct == (33.3, 66.7)
    same = simulate(round_with_grades({1: "优"}), a, a)
    assert same.changes == () and same.a == same.b


def test_simulate_names_the_ruleset_the_input_does_not_fit() -> None:
    a = one_theme()
    b = replace(a, themes=(Theme("ENV", "环保卫生", (Grade("A", "好", 5, 2), Grade("B", "差", 0, 1)), 5),), code="DRAFT")
    with pytest.raises(RulesError) as e:
        simulate(round_with_grades({1: "优"}), a, b)
    assert e.value.problems[0].startswith("按细则 DRAFT 第 1 版：农户 1 的环保卫生评分“优”不在评分等级中")
