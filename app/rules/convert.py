"""Ruleset <-> plain dict (the shape of the TOML file, and of a JSON column if the caller stores one).

`from_dict` accepts anything: it never crashes, it returns a valid `Ruleset` or raises `RulesetInvalid` with every
problem it found (unknown keys, missing keys, wrong types first; then the rules of `validate`). Paths in messages
count from 1: `themes[2].grades[1].points` is the first grade of the second theme.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from app.rules.credit import FALLBACK, CreditGrade, CreditRule
from app.rules.errors import RulesetInvalid
from app.rules.schema import (
    BlackPolicy,
    Combine,
    Determination,
    Grade,
    ListName,
    PenaltyPolicyName,
    RedPolicy,
    Ruleset,
    Theme,
    Vote,
    WorstGradeRule,
)
from app.rules.validate import validate

Locate = Callable[[str], str]

KEY_LABELS = {
    "code": "编号", "name": "名称", "version": "版本号", "effective_from": "生效月份 YYYYMM",
    "point_value_fen": "每分折合金额（分）", "combine": "评分合成方式", "quorum": "法定人数",
    "penalty_policy": "扣分政策", "coverage_target_pct": "年度覆盖率目标 %", "themes": "评比项目",
    "determinations": "认定", "red_policy": "红榜政策", "black_policy": "黑榜政策", "description": "说明",
    "monthly_cap": "月上限", "grades": "评分等级", "label": "等级名称", "points": "分值", "rank": "排序值",
    "list": "榜单", "months_shown": "公示月数", "evidence_required": "是否须有证据", "vote": "表决方式",
    "names_member": "是否点名家庭成员", "theme": "计入的评比项目", "threshold": "红榜分数线",
    "top_percent": "红榜前百分比", "commendations_count": "表彰认定是否上红榜", "exclude_black": "上黑榜者不按总分上红榜",
    "determinations_count": "负面认定是否上黑榜", "worst_grade": "连续最低等级规则", "months": "连续月数",
    "determination": "引用的认定", "credit": "信用等级规则", "fallback": "达不到任何等级时的评定",
    "ungraded_without_points": "全年没有得分不评级", "min_red": "至少上红榜次数", "min_net": "至少净得积分",
    "red_or_net": "红榜次数和净得积分满足其一即可", "max_black": "未移出的黑榜至多几次",
    "lifted_black_counts": "经整改移出的黑榜也计入",
}

RULESET_KEYS = ("code", "name", "version", "effective_from", "point_value_fen", "combine", "quorum", "penalty_policy",
                "coverage_target_pct", "red_policy", "black_policy", "credit", "themes", "determinations")
THEME_KEYS = ("code", "name", "description", "monthly_cap", "grades")
GRADE_KEYS = ("code", "label", "points", "rank")
DETERMINATION_KEYS = ("code", "name", "list", "points", "months_shown", "evidence_required", "vote", "names_member",
                      "theme", "description")
RED_KEYS = ("threshold", "top_percent", "months_shown", "commendations_count", "exclude_black")
BLACK_KEYS = ("determinations_count", "worst_grade")
WORST_KEYS = ("theme", "months", "determination")
CREDIT_KEYS = ("fallback", "ungraded_without_points", "grades")
CREDIT_GRADE_KEYS = ("code", "min_red", "min_net", "red_or_net", "max_black", "lifted_black_counts")

_REQUIRED = object()
_EMPTY: Mapping[str, Any] = {}  # stands for "not a table" (already reported): its missing keys are not reported again


def _no_line(key: str) -> str:
    return ""


def _kind(value: object) -> str:
    names = {bool: "布尔值", int: "整数", float: "小数", str: "文字", list: "数组", dict: "表"}
    text = repr(value)
    shown = text if len(text) <= 30 else text[:27] + "..."
    return f"{names.get(type(value), type(value).__name__)} {shown}"


class _Reader:
    """Reads typed values out of nested dicts, recording a Chinese problem for each mismatch and returning a
    harmless value of the right type so that reading can go on and report everything."""

    def __init__(self, locate: Locate) -> None:
        self.problems: list[str] = []
        self.locate = locate

    def _key(self, path: str, key: str) -> str:
        full = f"{path}.{key}" if path else key
        label = KEY_LABELS.get(key)
        return f"{full}（{label}）" if label else full

    def table(self, value: object, path: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
        """The dict itself (unknown keys reported), or an empty dict when it is not one."""
        if not isinstance(value, dict):
            where = path or "细则文件"
            self.problems.append(f"{where}应为一个表（键 = 值 的集合），实际是{_kind(value)}")
            return _EMPTY
        for k in value:
            if k not in keys:
                name = k if isinstance(k, str) else repr(k)
                full = f"{path}.{name}" if path else str(name)
                self.problems.append(f"未知的键 {full}{self.locate(str(name))}：请删除或改正拼写，可用的键有 {'、'.join(keys)}")
        return cast(Mapping[str, Any], value)

    def _get(self, tbl: Mapping[str, Any], key: str, path: str, default: object) -> object:
        if key in tbl:
            return tbl[key]
        if default is _REQUIRED and tbl is not _EMPTY:
            self.problems.append(f"缺少必填的键 {self._key(path, key)}")
        return default

    def _wrong(self, key: str, path: str, want: str, value: object) -> None:
        self.problems.append(f"{self._key(path, key)}应为{want}，实际是{_kind(value)}")

    def str_(self, tbl: Mapping[str, Any], key: str, path: str, default: object = _REQUIRED) -> str:
        value = self._get(tbl, key, path, default)
        if isinstance(value, str):
            return value
        if value is not _REQUIRED:
            self._wrong(key, path, "文字（用英文双引号括起来）", value)
        return ""

    def opt_str(self, tbl: Mapping[str, Any], key: str, path: str) -> str | None:
        return None if key not in tbl else self.str_(tbl, key, path)

    def int_(self, tbl: Mapping[str, Any], key: str, path: str, default: object = _REQUIRED) -> int:
        value = self._get(tbl, key, path, default)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value is not _REQUIRED:
            self._wrong(key, path, "整数", value)
        return 0

    def opt_int(self, tbl: Mapping[str, Any], key: str, path: str) -> int | None:
        return None if key not in tbl else self.int_(tbl, key, path)

    def bool_(self, tbl: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = self._get(tbl, key, path, default)
        if isinstance(value, bool):
            return value
        self._wrong(key, path, "true 或 false", value)
        return default

    def list_(self, tbl: Mapping[str, Any], key: str, path: str, default: object = _REQUIRED) -> list[Any]:
        value = self._get(tbl, key, path, default)
        if isinstance(value, list):
            return value
        if value is not _REQUIRED:
            self._wrong(key, path, "数组（[[...]] 表数组或 [ ... ]）", value)
        return []


def from_dict(data: object, *, locate: Locate = _no_line) -> Ruleset:
    """A valid ruleset from a plain dict, or `RulesetInvalid`. `locate(key)` may add where a key is in the source
    text (the TOML reader passes one that names the line)."""
    rd = _Reader(locate)
    r = _read_ruleset(rd, data)
    if rd.problems:
        raise RulesetInvalid(rd.problems)
    problems = validate(r)
    if problems:
        raise RulesetInvalid(problems)
    return r


def _read_ruleset(rd: _Reader, data: object) -> Ruleset:
    t = rd.table(data, "", RULESET_KEYS)
    code, name = rd.str_(t, "code", ""), rd.str_(t, "name", "")
    version, effective_from = rd.int_(t, "version", ""), rd.int_(t, "effective_from", "")
    point_value_fen = rd.int_(t, "point_value_fen", "")
    combine = cast(Combine, rd.str_(t, "combine", ""))
    quorum = rd.int_(t, "quorum", "")
    penalty_policy = cast(PenaltyPolicyName, rd.str_(t, "penalty_policy", ""))
    coverage = rd.int_(t, "coverage_target_pct", "", 60)
    red, black = _read_red(rd, t.get("red_policy", {})), _read_black(rd, t.get("black_policy", {}))
    credit = _read_credit(rd, t["credit"]) if "credit" in t else CreditRule()
    themes = tuple(_read_theme(rd, v, f"themes[{i}]") for i, v in enumerate(rd.list_(t, "themes", ""), 1))
    dets = tuple(_read_determination(rd, v, f"determinations[{i}]")
                 for i, v in enumerate(rd.list_(t, "determinations", "", []), 1))
    return Ruleset(code=code, name=name, version=version, effective_from=effective_from,
                   point_value_fen=point_value_fen, combine=combine, quorum=quorum, penalty_policy=penalty_policy,
                   themes=themes, determinations=dets, red_policy=red, black_policy=black, coverage_target_pct=coverage,
                   credit=credit)


def _read_theme(rd: _Reader, value: object, path: str) -> Theme:
    t = rd.table(value, path, THEME_KEYS)
    grades = tuple(_read_grade(rd, v, f"{path}.grades[{i}]") for i, v in enumerate(rd.list_(t, "grades", path), 1))
    return Theme(code=rd.str_(t, "code", path), name=rd.str_(t, "name", path), grades=grades,
                 monthly_cap=rd.int_(t, "monthly_cap", path), description=rd.str_(t, "description", path, ""))


def _read_grade(rd: _Reader, value: object, path: str) -> Grade:
    t = rd.table(value, path, GRADE_KEYS)
    return Grade(code=rd.str_(t, "code", path), label=rd.str_(t, "label", path), points=rd.int_(t, "points", path),
                 rank=rd.int_(t, "rank", path))


def _read_determination(rd: _Reader, value: object, path: str) -> Determination:
    t = rd.table(value, path, DETERMINATION_KEYS)
    return Determination(
        code=rd.str_(t, "code", path),
        name=rd.str_(t, "name", path),
        list=cast(ListName, rd.str_(t, "list", path)),
        points=rd.int_(t, "points", path),
        months_shown=rd.int_(t, "months_shown", path),
        evidence_required=rd.bool_(t, "evidence_required", path, False),
        vote=cast(Vote, rd.str_(t, "vote", path, "majority")),
        names_member=rd.bool_(t, "names_member", path, False),
        theme=rd.opt_str(t, "theme", path),
        description=rd.str_(t, "description", path, ""),
    )


def _read_red(rd: _Reader, value: object) -> RedPolicy:
    t = rd.table(value, "red_policy", RED_KEYS)
    return RedPolicy(
        threshold=rd.opt_int(t, "threshold", "red_policy"),
        top_percent=rd.opt_int(t, "top_percent", "red_policy"),
        months_shown=rd.int_(t, "months_shown", "red_policy", 1),
        commendations_count=rd.bool_(t, "commendations_count", "red_policy", True),
        exclude_black=rd.bool_(t, "exclude_black", "red_policy", True),
    )


def _read_black(rd: _Reader, value: object) -> BlackPolicy:
    t = rd.table(value, "black_policy", BLACK_KEYS)
    rules = []
    for i, v in enumerate(rd.list_(t, "worst_grade", "black_policy", []), 1):
        path = f"black_policy.worst_grade[{i}]"
        w = rd.table(v, path, WORST_KEYS)
        rules.append(WorstGradeRule(theme=rd.str_(w, "theme", path), months=rd.int_(w, "months", path),
                                    determination=rd.str_(w, "determination", path)))
    return BlackPolicy(determinations_count=rd.bool_(t, "determinations_count", "black_policy", True),
                       worst_grade=tuple(rules))


def _read_credit(rd: _Reader, value: object) -> CreditRule:
    """The [credit] table. Absent keys take the defaults, except `grades`: a table that names no grade is refused
    by validation rather than quietly meaning the county's former rule."""
    t = rd.table(value, "credit", CREDIT_KEYS)
    grades = []
    for i, v in enumerate(rd.list_(t, "grades", "credit", []), 1):
        path = f"credit.grades[{i}]"
        g = rd.table(v, path, CREDIT_GRADE_KEYS)
        grades.append(CreditGrade(code=rd.str_(g, "code", path), min_red=rd.opt_int(g, "min_red", path),
                                  min_net=rd.opt_int(g, "min_net", path),
                                  red_or_net=rd.bool_(g, "red_or_net", path, False),
                                  max_black=rd.int_(g, "max_black", path, 0),
                                  lifted_black_counts=rd.bool_(g, "lifted_black_counts", path, False)))
    return CreditRule(grades=tuple(grades), fallback=rd.str_(t, "fallback", "credit", FALLBACK),
                      ungraded_without_points=rd.bool_(t, "ungraded_without_points", "credit", True))


def to_dict(r: Ruleset) -> dict[str, Any]:
    """The plain-dict form (`None` values left out, tuples as lists): `from_dict(to_dict(r)) == r` for a valid r."""
    red: dict[str, Any] = {"threshold": r.red_policy.threshold, "top_percent": r.red_policy.top_percent,
                           "months_shown": r.red_policy.months_shown,
                           "commendations_count": r.red_policy.commendations_count,
                           "exclude_black": r.red_policy.exclude_black}
    black: dict[str, Any] = {"determinations_count": r.black_policy.determinations_count,
                             "worst_grade": [{"theme": w.theme, "months": w.months, "determination": w.determination}
                                             for w in r.black_policy.worst_grade]}
    return _drop_none({
        "code": r.code, "name": r.name, "version": r.version, "effective_from": r.effective_from,
        "point_value_fen": r.point_value_fen, "combine": r.combine, "quorum": r.quorum,
        "penalty_policy": r.penalty_policy, "coverage_target_pct": r.coverage_target_pct,
        "red_policy": red, "black_policy": black, "credit": _credit_dict(r.credit),
        "themes": [_theme_dict(t) for t in r.themes],
        "determinations": [_determination_dict(d) for d in r.determinations],
    })


def _credit_dict(c: CreditRule) -> dict[str, Any]:
    return {"fallback": c.fallback, "ungraded_without_points": c.ungraded_without_points,
            "grades": [{"code": g.code, "min_red": g.min_red, "min_net": g.min_net, "red_or_net": g.red_or_net,
                        "max_black": g.max_black, "lifted_black_counts": g.lifted_black_counts} for g in c.grades]}


def _theme_dict(t: Theme) -> dict[str, Any]:
    return {"code": t.code, "name": t.name, "description": t.description, "monthly_cap": t.monthly_cap,
            "grades": [{"code": g.code, "label": g.label, "points": g.points, "rank": g.rank} for g in t.grades]}


def _determination_dict(d: Determination) -> dict[str, Any]:
    return {"code": d.code, "name": d.name, "list": d.list, "points": d.points, "months_shown": d.months_shown,
            "evidence_required": d.evidence_required, "vote": d.vote, "names_member": d.names_member,
            "theme": d.theme, "description": d.description}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
