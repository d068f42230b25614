"""Full validation of a ruleset: every problem at once, each a Chinese sentence saying what to fix.

`validate(r)` returns the list (empty = valid); `check(r)` raises `RulesetInvalid` with it. The engine assumes a
valid ruleset, so callers check before storing one (the form, the TOML import, the database loader).
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from app.rules.credit import CreditGrade, CreditRule
from app.rules.errors import RulesetInvalid
from app.rules.schema import (
    COMBINE_LABELS,
    COMBINES,
    LIST_LABELS,
    LISTS,
    PENALTY_LABELS,
    PENALTY_POLICIES,
    VOTE_LABELS,
    VOTES,
    BlackPolicy,
    Determination,
    Grade,
    RedPolicy,
    Ruleset,
    Theme,
)

# Bounds (inclusive). Generous, but they keep every number a sane TOML integer and every text printable.
POINTS = (-1000, 1000)
RANK = (-1000, 1000)
CAP = (0, 10_000)
QUORUM = (1, 50)
POINT_VALUE_FEN = (1, 100_000)
VERSION = (1, 1_000_000)
MONTHS_SHOWN = (0, 120)
WORST_MONTHS = (1, 24)
THRESHOLD = (-100_000, 100_000)
PERCENT = (0, 100)
YEARS = (2000, 2099)
CREDIT_RED = (0, 100)  # red postings in a year
CREDIT_BLACK = (0, 100)  # black postings in a year
CREDIT_GRADES_MAX = 10
NAME_MAX = 40
LABEL_MAX = 8
DESCRIPTION_MAX = 500

RULESET_CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
GRADE_CODE_FORBIDDEN = set(",，、;；=\"'[]{}#")


def validate(r: Ruleset) -> list[str]:
    """Every problem of the ruleset, in a stable order; empty when it is valid."""
    out: list[str] = []
    out += _check_header(r)
    out += _check_themes(r.themes)
    out += _check_determinations(r)
    out += _check_red(r.red_policy)
    out += _check_black(r, r.black_policy)
    out += _check_credit(r.credit)
    return out


def check(r: Ruleset) -> Ruleset:
    """The ruleset itself when valid; otherwise raises `RulesetInvalid` listing every problem."""
    problems = validate(r)
    if problems:
        raise RulesetInvalid(problems)
    return r


def valid_month(month: object) -> bool:
    """Is this a YYYYMM int with a year in 2000-2099 and a month 01-12?"""
    if not isinstance(month, int) or isinstance(month, bool):
        return False
    year, mm = divmod(month, 100)
    return YEARS[0] <= year <= YEARS[1] and 1 <= mm <= 12


# --- pieces ---------------------------------------------------------------------------------------------------------


def _in(value: int, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= value <= bounds[1]


def _range(what: str, value: int, bounds: tuple[int, int]) -> list[str]:
    if _in(value, bounds):
        return []
    return [f"{what}须在 {bounds[0]} 到 {bounds[1]} 之间，现在是 {value}"]


def _bad_chars(text: str, *, multiline: bool) -> bool:
    allowed = {"\n", "\t"} if multiline else set()
    return any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in text)


def _text(what: str, value: str, *, max_len: int = NAME_MAX, required: bool = True) -> list[str]:
    """A one-line display text: not empty, no surrounding spaces, no control characters, not too long."""
    if not value.strip():
        return [f"{what}不能为空，请填写"] if required else []
    out = []
    if value != value.strip():
        out.append(f"{what}“{value.strip()}”首尾有空格，请删去")
    if _bad_chars(value, multiline=False):
        out.append(f"{what}含有换行或控制字符，请删去")
    if len(value) > max_len:
        out.append(f"{what}不能超过 {max_len} 个字，现在有 {len(value)} 个")
    return out


def _description(what: str, value: str) -> list[str]:
    out = []
    if _bad_chars(value, multiline=True):
        out.append(f"{what}的说明含有控制字符，请删去")
    if len(value) > DESCRIPTION_MAX:
        out.append(f"{what}的说明不能超过 {DESCRIPTION_MAX} 个字，现在有 {len(value)} 个")
    return out


def _code(what: str, value: str) -> list[str]:
    if CODE_RE.fullmatch(value):
        return []
    return [f"{what}的编号“{value}”无效：须以英文字母开头，只含英文字母、数字和下划线，不超过 32 位（如 ENV、DISHONEST）"]


def _duplicates(what: str, values: Iterable[str]) -> list[str]:
    counts = Counter(values)
    return [f"{what}“{v}”重复出现 {n} 次，每个须唯一，请改名或删去多余的" for v, n in sorted(counts.items()) if n > 1 and v]


def _check_header(r: Ruleset) -> list[str]:
    out: list[str] = []
    if not RULESET_CODE_RE.fullmatch(r.code):
        out.append(f"细则编号“{r.code}”无效：须以英文字母或数字开头，只含英文字母、数字、下划线、点和连字符，不超过 40 位")
    out += _text("细则名称", r.name)
    out += _range("版本号", r.version, VERSION)
    if not valid_month(r.effective_from):
        out.append(f"生效月份 {r.effective_from} 无效：须为六位数 YYYYMM（如 202501），年份 {YEARS[0]}–{YEARS[1]}，月份 01–12")
    out += _range("每分折合金额（分）", r.point_value_fen, POINT_VALUE_FEN)
    if r.combine not in COMBINES:
        out.append(f"评分合成方式“{r.combine}”未知，可选：" + "、".join(f"{k}（{v}）" for k, v in COMBINE_LABELS.items()))
    out += _range("法定人数（quorum，至少几位有资格的委员参与评分）", r.quorum, QUORUM)
    if r.penalty_policy not in PENALTY_POLICIES:
        out.append(f"扣分政策“{r.penalty_policy}”未知，可选：" + "、".join(f"{k}（{v}）" for k, v in PENALTY_LABELS.items()))
    out += _range("年度红黑榜覆盖率目标（%）", r.coverage_target_pct, PERCENT)
    return out


def _theme_ref(i: int, t: Theme) -> str:
    return f"评比项目“{t.name}”（{t.code}）" if t.name.strip() and t.code else f"第 {i} 个评比项目"


def _check_themes(themes: tuple[Theme, ...]) -> list[str]:
    if not themes:
        return ["细则没有任何评比项目，请至少添加一个（如 环保卫生）"]
    out: list[str] = []
    out += _duplicates("评比项目编号", (t.code for t in themes))
    out += _duplicates("评比项目名称", (t.name for t in themes))
    for i, t in enumerate(themes, 1):
        out += _check_theme(_theme_ref(i, t), t)
    return out


def _check_theme(ref: str, t: Theme) -> list[str]:
    out = _code(ref, t.code) + _text(f"{ref}的名称", t.name) + _description(ref, t.description)
    out += _range(f"{ref}的月上限", t.monthly_cap, CAP)
    if len(t.grades) < 2:
        return [*out, f"{ref}的评分等级不足：至少需要两个等级（如 优、良、中、差）"]
    out += _duplicates(f"{ref}的等级代码", (g.code for g in t.grades))
    out += _duplicates(f"{ref}的等级名称", (g.label for g in t.grades))
    for g in t.grades:
        out += _check_grade(ref, g)
    out += _check_ranks(ref, t.grades)
    best = max(t.grades, key=lambda g: (g.rank, g.points))
    if t.monthly_cap < best.points:
        out.append(f"{ref}的月上限 {t.monthly_cap} 分低于最好等级“{best.label}”的 {best.points} 分，"
                   f"请把月上限改为不少于 {best.points}")
    return out


def _check_grade(ref: str, g: Grade) -> list[str]:
    what = f"{ref}的等级“{g.label or g.code}”"
    out: list[str] = []
    if not g.code or len(g.code) > LABEL_MAX or any(c.isspace() or c in GRADE_CODE_FORBIDDEN for c in g.code) \
            or _bad_chars(g.code, multiline=False):
        out.append(f"{what}的代码“{g.code}”无效：须为 1–{LABEL_MAX} 个字符，不含空格、逗号、顿号、引号、括号、等号和 #")
    out += _text(f"{what}的名称", g.label, max_len=LABEL_MAX * 2)
    out += _range(f"{what}的分值", g.points, POINTS)
    out += _range(f"{what}的排序值（rank）", g.rank, RANK)
    return out


def _check_ranks(ref: str, grades: tuple[Grade, ...]) -> list[str]:
    out: list[str] = []
    by_rank: dict[int, list[str]] = {}
    for g in grades:
        by_rank.setdefault(g.rank, []).append(g.label or g.code)
    for rank, labels in sorted(by_rank.items()):
        if len(labels) > 1:
            out.append(f"{ref}的等级 {'、'.join(labels)} 的排序值（rank）都是 {rank}：每个等级的 rank 须不同，越好的等级越大")
    scale = sorted(grades, key=lambda g: g.rank)
    for worse, better in itertools.pairwise(scale):
        if better.rank > worse.rank and better.points < worse.points:
            out.append(f"{ref}的等级“{better.label}”（rank {better.rank}）只有 {better.points} 分，少于较差的等级“{worse.label}”"
                       f"（rank {worse.rank}）的 {worse.points} 分：等级越好分值应越高（或相等），请调整分值或排序值")
    return out


def _det_ref(i: int, d: Determination) -> str:
    return f"认定“{d.name}”（{d.code}）" if d.name.strip() and d.code else f"第 {i} 个认定"


def _check_determinations(r: Ruleset) -> list[str]:
    out: list[str] = []
    out += _duplicates("认定编号", (d.code for d in r.determinations))
    out += _duplicates("认定名称", (d.name for d in r.determinations))
    themes = {t.code for t in r.themes}
    for i, d in enumerate(r.determinations, 1):
        out += _check_determination(_det_ref(i, d), d, themes)
    return out


def _check_determination(ref: str, d: Determination, themes: set[str]) -> list[str]:
    out = _code(ref, d.code) + _text(f"{ref}的名称", d.name) + _description(ref, d.description)
    out += _range(f"{ref}的分值", d.points, POINTS)
    out += _range(f"{ref}的公示月数", d.months_shown, MONTHS_SHOWN)
    if d.list not in LISTS:
        out.append(f"{ref}的榜单“{d.list}”未知，可选：" + "、".join(f"{k}（{v}）" for k, v in LIST_LABELS.items()))
    elif d.list != "none" and d.months_shown < 1:
        out.append(f"{ref}上{LIST_LABELS[d.list]}，公示月数须至少 1 个月，现在是 {d.months_shown}")
    if d.list == "red" and d.points < 0:
        out.append(f"{ref}上红榜却扣 {-d.points} 分：红榜认定的分值不能为负，请改分值或改为黑榜")
    if d.list == "black" and d.points > 0:
        out.append(f"{ref}上黑榜却加 {d.points} 分：黑榜认定的分值不能为正，请改分值或改为红榜")
    if d.vote not in VOTES:
        out.append(f"{ref}的表决方式“{d.vote}”未知，可选：" + "、".join(f"{k}（{v}）" for k, v in VOTE_LABELS.items()))
    if d.theme is not None and d.theme not in themes:
        out.append(f"{ref}计入的评比项目“{d.theme}”不存在，请填写本细则中的项目编号（{'、'.join(sorted(themes))}）或留空")
    return out


def _check_red(p: RedPolicy) -> list[str]:
    out: list[str] = []
    if p.threshold is not None:
        out += _range("红榜分数线", p.threshold, THRESHOLD)
    if p.top_percent is not None and not 1 <= p.top_percent <= 100:
        out.append(f"红榜前百分比须在 1 到 100 之间，现在是 {p.top_percent}；不按排名上榜请留空")
    out += _range("红榜（按总分上榜）的公示月数", p.months_shown, (1, MONTHS_SHOWN[1]))
    return out


def _check_black(r: Ruleset, p: BlackPolicy) -> list[str]:
    out: list[str] = []
    out += _duplicates("黑榜连续最低等级规则的评比项目", (w.theme for w in p.worst_grade))
    for w in p.worst_grade:
        ref = f"黑榜规则“{w.theme} 连续 {w.months} 个月最低等级”"
        if r.theme(w.theme) is None:
            out.append(f"{ref}的评比项目“{w.theme}”不存在，请填写本细则中的项目编号")
        out += _range(f"{ref}的连续月数", w.months, WORST_MONTHS)
        d = r.determination(w.determination)
        if d is None:
            out.append(f"{ref}引用的认定“{w.determination}”不存在，请先在认定中添加（如 卫生不整洁户）")
        elif d.list != "black":
            out.append(f"{ref}引用的认定“{d.name}”不上黑榜，请引用一个黑榜认定")
        elif d.names_member:
            out.append(f"{ref}引用的认定“{d.name}”须指明家庭成员，自动上榜无法指明，请引用不点名的认定")
    return out


def _credit_code_bad(code: str) -> bool:
    return (not code or len(code) > LABEL_MAX or any(c.isspace() or c in GRADE_CODE_FORBIDDEN for c in code)
            or _bad_chars(code, multiline=False))


def _credit_ref(i: int, g: CreditGrade) -> str:
    return f"信用等级第 {i} 级“{g.code}”" if g.code.strip() else f"信用等级第 {i} 级"


def _check_credit(c: CreditRule) -> list[str]:
    """The credit grade rule: at least one grade, distinct codes, sensible numbers, best grade first."""
    out: list[str] = []
    if not c.grades:
        out.append("信用等级规则没有任何等级，请至少添加一级（如 AAA：全年上红榜至少 2 次，净得积分至少 100 分）")
    elif len(c.grades) > CREDIT_GRADES_MAX:
        out.append(f"信用等级不能超过 {CREDIT_GRADES_MAX} 级，现在有 {len(c.grades)} 级，请删去多余的")
    out += _duplicates("信用等级代码", (g.code for g in c.grades))
    rule = f"代码须为 1–{LABEL_MAX} 个字符，不含空格、逗号、顿号、引号、括号、等号和 #"
    if _credit_code_bad(c.fallback):
        out.append(f"达不到任何等级时的评定“{c.fallback}”无效：{rule}（如 不评级）")
    elif c.fallback in {g.code for g in c.grades}:
        out.append(f"达不到任何等级时的评定“{c.fallback}”与一个信用等级同名，请改用另一个名称（如 不评级）")
    for i, g in enumerate(c.grades, 1):
        ref = _credit_ref(i, g)
        if _credit_code_bad(g.code):
            out.append(f"{ref}的代码无效：{rule}（如 AAA）")
        if g.min_red is not None:
            out += _range(f"{ref}的至少上红榜次数", g.min_red, CREDIT_RED)
        if g.min_net is not None:
            out += _range(f"{ref}的至少净得积分", g.min_net, THRESHOLD)
        out += _range(f"{ref}的未移出的黑榜至多次数", g.max_black, CREDIT_BLACK)
        if g.red_or_net and not (g.min_red and g.min_net is not None):
            out.append(f"{ref}设了“红榜次数和净得积分满足其一即可”，却没有同时设至少上红榜次数（1 次以上）和至少净得积分："
                       "请把两项都填上，或取消这一项")
    for i, j in c.unreachable():
        earlier, later = c.grades[i], c.grades[j]
        if earlier.code != later.code:
            out.append(f"信用等级“{later.code}”（第 {j + 1} 级）排在“{earlier.code}”（第 {i + 1} 级）之后，条件却不比它宽："
                       f"达到“{later.code}”的农户都已评为“{earlier.code}”，“{later.code}”永远评不上。"
                       "等级须从高到低排列（最严的在前），请调整顺序或条件")
    return out
