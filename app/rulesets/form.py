"""The ruleset (积分细则) as an HTML form: pure functions between flat form fields, the form's state and a `Ruleset`.

Field names are flat and follow the dict shape of `rules.to_dict`: `code`, `red_policy-threshold`,
`themes-0-code`, `themes-0-grades-1-points`, `determinations-2-vote`, `black_policy-worst_grade-0-months`,
`credit-fallback`, `credit-grades-0-min_net`. Rows count from 0 in names and from 1 in messages.

- `state_from_ruleset(r)` / `state_from_fields(fields)`: the form's state, a nested dict of what the inputs show
  (text as typed, checkboxes as bools), for the template and for re-rendering a rejected form unchanged;
- `to_fields(r)`: the flat fields a browser would post for `r` (unchecked boxes left out, as a browser does);
- `apply_action(state, action)`: one more blank theme / grade / determination / worst-grade rule / credit grade, or
  one removed, or a credit grade moved up (their order is the order they are tried in);
- `to_ruleset(state)`: numbers read leniently (full-width digits, spaces, "2026-01" for a month), blanks meaning
  "not set" where the ruleset allows it, then `rules.from_dict`. Refuses with `RulesRefused` (the engine's
  `RulesetInvalid`) listing every problem.

No web framework here: the router turns the request into a `Mapping[str, str]` and back.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from app import rules
from app.rules.convert import KEY_LABELS
from app.rulesets import service as rulesets

State = dict[str, Any]

# Kinds of field: what the input holds and how it becomes a value of the ruleset's dict.
TEXT: Final = "text"  # one line, surrounding spaces dropped
LONG: Final = "long"  # a textarea: CRLF made LF, surrounding blank lines dropped
OPT_TEXT: Final = "opt_text"  # blank = not set (left out of the dict)
INT: Final = "int"
OPT_INT: Final = "opt_int"  # blank = not set
MONTH: Final = "month"  # YYYYMM, also read from 2026-01, 2026/1, 2026年1月
BOOL: Final = "bool"  # a checkbox: present = true

TOP_FIELDS: Final = {"code": TEXT, "name": TEXT, "version": INT, "effective_from": MONTH, "point_value_fen": INT,
                     "combine": TEXT, "quorum": INT, "penalty_policy": TEXT, "coverage_target_pct": INT}
RED_FIELDS: Final = {"threshold": OPT_INT, "top_percent": OPT_INT, "months_shown": INT, "commendations_count": BOOL,
                     "exclude_black": BOOL}
BLACK_FIELDS: Final = {"determinations_count": BOOL}
THEME_FIELDS: Final = {"code": TEXT, "name": TEXT, "description": LONG, "monthly_cap": INT}
GRADE_FIELDS: Final = {"code": TEXT, "label": TEXT, "points": INT, "rank": INT}
DETERMINATION_FIELDS: Final = {"code": TEXT, "name": TEXT, "list": TEXT, "points": INT, "months_shown": INT,
                               "evidence_required": BOOL, "vote": TEXT, "names_member": BOOL, "theme": OPT_TEXT,
                               "description": LONG}
WORST_FIELDS: Final = {"theme": TEXT, "months": INT, "determination": TEXT}
CREDIT_FIELDS: Final = {"fallback": TEXT, "ungraded_without_points": BOOL}
CREDIT_GRADE_FIELDS: Final = {"code": TEXT, "min_red": OPT_INT, "min_net": OPT_INT, "red_or_net": BOOL,
                              "max_black": INT, "lifted_black_counts": BOOL}

MAX_ROWS: Final = 200  # of any one list (themes, grades of a theme, determinations, worst-grade rules, credit grades)
MAX_DIGITS: Final = 9  # a number longer than this is refused before it is read
NEW_THEME_GRADES: Final = (("优", 4), ("良", 3), ("中", 2), ("差", 1))  # a new theme starts with the usual scale


# --- state <-> fields -----------------------------------------------------------------------------------------------


def _shown(value: object, kind: str) -> Any:
    if kind == BOOL:
        return bool(value)
    return "" if value is None else str(value)


def _row_state(values: Mapping[str, Any], spec: Mapping[str, str]) -> dict[str, Any]:
    return {key: _shown(values.get(key), kind) for key, kind in spec.items()}


def state_from_ruleset(r: rules.Ruleset) -> State:
    """What the form shows for a ruleset."""
    d = rules.to_dict(r)
    state = _row_state(d, TOP_FIELDS)
    state["red_policy"] = _row_state(d["red_policy"], RED_FIELDS)
    black = _row_state(d["black_policy"], BLACK_FIELDS)
    black["worst_grade"] = [_row_state(w, WORST_FIELDS) for w in d["black_policy"]["worst_grade"]]
    state["black_policy"] = black
    state["themes"] = [{**_row_state(t, THEME_FIELDS), "grades": [_row_state(g, GRADE_FIELDS) for g in t["grades"]]}
                       for t in d["themes"]]
    state["determinations"] = [_row_state(x, DETERMINATION_FIELDS) for x in d["determinations"]]
    state["credit"] = {**_row_state(d["credit"], CREDIT_FIELDS),
                       "grades": [_row_state(g, CREDIT_GRADE_FIELDS) for g in d["credit"]["grades"]]}
    return state


def _checked(fields: Mapping[str, str], name: str) -> bool:
    return fields.get(name, "").strip().lower() not in ("", "0", "false", "off", "no")


def _read_row(fields: Mapping[str, str], prefix: str, spec: Mapping[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, kind in spec.items():
        name = f"{prefix}{key}"
        row[key] = _checked(fields, name) if kind == BOOL else fields.get(name, "")
    return row


def _indices(fields: Mapping[str, str], prefix: str) -> list[int]:
    """The row numbers present under `prefix` (e.g. `themes-`), in order; gaps (a removed row) are closed."""
    pattern = re.compile(re.escape(prefix) + r"(\d{1,4})-")
    found = {int(m.group(1)) for name in fields if (m := pattern.match(name))}
    return sorted(found)[:MAX_ROWS]


def state_from_fields(fields: Mapping[str, str]) -> State:
    """The form's state from posted fields, exactly as typed. Unknown names are ignored."""
    state = _read_row(fields, "", TOP_FIELDS)
    state["red_policy"] = _read_row(fields, "red_policy-", RED_FIELDS)
    black = _read_row(fields, "black_policy-", BLACK_FIELDS)
    black["worst_grade"] = [_read_row(fields, f"black_policy-worst_grade-{i}-", WORST_FIELDS)
                            for i in _indices(fields, "black_policy-worst_grade-")]
    state["black_policy"] = black
    themes = []
    for i in _indices(fields, "themes-"):
        theme = _read_row(fields, f"themes-{i}-", THEME_FIELDS)
        theme["grades"] = [_read_row(fields, f"themes-{i}-grades-{j}-", GRADE_FIELDS)
                           for j in _indices(fields, f"themes-{i}-grades-")]
        themes.append(theme)
    state["themes"] = themes
    state["determinations"] = [_read_row(fields, f"determinations-{i}-", DETERMINATION_FIELDS)
                               for i in _indices(fields, "determinations-")]
    credit = _read_row(fields, "credit-", CREDIT_FIELDS)
    credit["grades"] = [_read_row(fields, f"credit-grades-{i}-", CREDIT_GRADE_FIELDS)
                        for i in _indices(fields, "credit-grades-")]
    state["credit"] = credit
    return state


def _put_row(out: dict[str, str], prefix: str, row: Mapping[str, Any], spec: Mapping[str, str]) -> None:
    for key, kind in spec.items():
        if kind != BOOL:
            out[f"{prefix}{key}"] = str(row[key])
        elif row[key]:
            out[f"{prefix}{key}"] = "1"


def fields_from_state(state: State) -> dict[str, str]:
    """The flat fields a browser posts for this state (checkboxes that are not ticked are not sent)."""
    out: dict[str, str] = {}
    _put_row(out, "", state, TOP_FIELDS)
    _put_row(out, "red_policy-", state["red_policy"], RED_FIELDS)
    _put_row(out, "black_policy-", state["black_policy"], BLACK_FIELDS)
    for i, w in enumerate(state["black_policy"]["worst_grade"]):
        _put_row(out, f"black_policy-worst_grade-{i}-", w, WORST_FIELDS)
    for i, t in enumerate(state["themes"]):
        _put_row(out, f"themes-{i}-", t, THEME_FIELDS)
        for j, g in enumerate(t["grades"]):
            _put_row(out, f"themes-{i}-grades-{j}-", g, GRADE_FIELDS)
    for i, d in enumerate(state["determinations"]):
        _put_row(out, f"determinations-{i}-", d, DETERMINATION_FIELDS)
    _put_row(out, "credit-", state["credit"], CREDIT_FIELDS)
    for i, g in enumerate(state["credit"]["grades"]):
        _put_row(out, f"credit-grades-{i}-", g, CREDIT_GRADE_FIELDS)
    return out


def to_fields(r: rules.Ruleset) -> dict[str, str]:
    """The flat fields of the form filled in with `r`."""
    return fields_from_state(state_from_ruleset(r))


# --- buttons that change the rows -----------------------------------------------------------------------------------


def blank_theme() -> dict[str, Any]:
    theme = _row_state({}, THEME_FIELDS)
    theme["grades"] = [{**_row_state({}, GRADE_FIELDS), "code": code, "label": code, "rank": str(rank)}
                       for code, rank in NEW_THEME_GRADES]
    return theme


def blank_determination() -> dict[str, Any]:
    return {**_row_state({}, DETERMINATION_FIELDS), "list": "none", "vote": "majority", "months_shown": "1"}


def blank_credit_grade() -> dict[str, Any]:
    """A new credit grade: no black posting left standing, the other conditions to fill in."""
    return {**_row_state({}, CREDIT_GRADE_FIELDS), "max_black": "0"}


_ACTION_RE = re.compile(r"(add|remove)_(theme|grade|determination|worst_grade|credit_grade)(?:-(\d{1,4}))?(?:-(\d{1,4}))?")
_UP_RE = re.compile(r"up_credit_grade-(\d{1,4})")


def apply_action(state: State, action: str) -> State:
    """A copy of the state with one row added, removed or moved. `action` is the value of the button pressed:
    add_theme, remove_theme-<i>, add_grade-<i>, remove_grade-<i>-<j>, add_determination, remove_determination-<i>,
    add_worst_grade, remove_worst_grade-<i>, add_credit_grade, remove_credit_grade-<i>, up_credit_grade-<i> (one
    place higher, i.e. tried earlier; rows counted from 0). Anything else changes nothing."""
    out = copy.deepcopy(state)
    up = _UP_RE.fullmatch(action)
    if up is not None:
        grades, k = out["credit"]["grades"], int(up.group(1))
        if 0 < k < len(grades):
            grades[k - 1], grades[k] = grades[k], grades[k - 1]
        return out
    m = _ACTION_RE.fullmatch(action)
    if m is None:
        return out
    verb, what = m.group(1), m.group(2)
    i = int(m.group(3)) if m.group(3) is not None else None
    j = int(m.group(4)) if m.group(4) is not None else None
    rows: list[Any] | None
    new: dict[str, Any]
    if what == "theme":
        rows, new, at = out["themes"], blank_theme(), i
    elif what == "determination":
        rows, new, at = out["determinations"], blank_determination(), i
    elif what == "worst_grade":
        rows, new, at = out["black_policy"]["worst_grade"], _row_state({}, WORST_FIELDS), i
    elif what == "credit_grade":
        rows, new, at = out["credit"]["grades"], blank_credit_grade(), i
    else:  # a grade of theme i
        themes = out["themes"]
        rows = themes[i]["grades"] if i is not None and i < len(themes) else None
        new, at = _row_state({}, GRADE_FIELDS), j
    if rows is None:
        return out
    if verb == "add" and at is None and len(rows) < MAX_ROWS:
        rows.append(new)
    elif verb == "remove" and at is not None and at < len(rows):
        del rows[at]
    return out


# --- state -> ruleset -----------------------------------------------------------------------------------------------


def _clean_number(raw: str) -> str:
    text = unicodedata.normalize("NFKC", raw).replace("\u2212", "-")  # full-width digits and minus; the math minus
    return re.sub(r"[\s,_]", "", text)


def parse_int(raw: str) -> int | str:
    """The integer typed in `raw`, or a Chinese reason why it is not one. Accepts full-width digits, spaces,
    thousands separators, a leading + and a whole decimal like 10.0 (no exponents: 1e999 is not a number here)."""
    text = _clean_number(raw)
    if not text:
        return "未填写"
    shown = raw.strip()[:20]
    m = re.fullmatch(r"([+-]?)(\d+)(?:\.(\d*))?", text)
    if m is None:
        return f"“{shown}”不是数字"
    if m.group(3) and m.group(3).strip("0"):
        return f"“{shown}”不是整数"
    if len(m.group(2).lstrip("0")) > MAX_DIGITS:
        return f"“{shown}”太大"
    return int(m.group(1) + m.group(2))


def parse_month(raw: str) -> int | str:
    """YYYYMM from `raw`: 202601, 2026-01, 2026/1, 2026.1, 2026年1月; or a Chinese reason."""
    text = _clean_number(raw)
    if not text:
        return "未填写"
    m = re.fullmatch(r"(\d{4})[-/.年]?(\d{1,2})月?", text)
    if m is None or (len(m.group(2)) == 1 and not re.search(r"\D", text)):  # 20261 is not a month
        return f"“{raw.strip()[:20]}”不是月份"
    return int(m.group(1)) * 100 + int(m.group(2))


class _Parser:
    """Turns the state into the ruleset's dict, collecting a Chinese problem for each number it cannot read."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def row(self, row: Mapping[str, Any], spec: Mapping[str, str], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, kind in spec.items():
            value = row.get(key, False if kind == BOOL else "")
            if kind == BOOL:
                out[key] = bool(value)
                continue
            text = value if isinstance(value, str) else str(value)
            if kind == TEXT:
                out[key] = text.strip()
            elif kind == LONG:
                out[key] = text.replace("\r\n", "\n").replace("\r", "\n").strip()
            elif kind == OPT_TEXT:
                if text.strip():
                    out[key] = text.strip()
            elif kind == OPT_INT and not _clean_number(text):
                continue
            else:
                parsed = parse_month(text) if kind == MONTH else parse_int(text)
                if isinstance(parsed, int):
                    out[key] = parsed
                else:
                    self.problems.append(self._number_problem(where, key, kind, parsed))
        return out

    @staticmethod
    def _number_problem(where: str, key: str, kind: str, reason: str) -> str:
        label = KEY_LABELS.get(key, key)
        if kind == MONTH:
            return f"{where}{label}{reason}：请写成 202601 这样的六位数字（年份四位，月份两位）"
        example = "10 或 -5" if key in ("points", "threshold", "rank", "min_net") else "10"
        optional = "；不设此项请留空" if kind == OPT_INT else ""
        return f"{where}{label}{reason}：请填写整数，如 {example}{optional}"


def _named(base: str, row: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        value = str(row.get(key, "")).strip()
        if value:
            return f"{base}（{value[:20]}）"
    return base


def to_data(state: State) -> tuple[dict[str, Any], list[str]]:
    """The ruleset's dict (the shape `rules.from_dict` reads) and the problems of the numbers that could not be read."""
    p = _Parser()
    data = p.row(state, TOP_FIELDS, "")
    data["red_policy"] = p.row(state["red_policy"], RED_FIELDS, "红榜政策的")
    black = p.row(state["black_policy"], BLACK_FIELDS, "黑榜政策的")
    black["worst_grade"] = [p.row(w, WORST_FIELDS, f"黑榜政策第 {i} 条连续最低等级规则的")
                            for i, w in enumerate(state["black_policy"]["worst_grade"], 1)]
    data["black_policy"] = black
    themes = []
    for i, t in enumerate(state["themes"], 1):
        where = _named(f"第 {i} 个评比项目", t, "name", "code")
        theme = p.row(t, THEME_FIELDS, f"{where}的")
        theme["grades"] = [p.row(g, GRADE_FIELDS, _named(f"{where}第 {j} 个等级", g, "label", "code") + "的")
                           for j, g in enumerate(t["grades"], 1)]
        themes.append(theme)
    data["themes"] = themes
    data["determinations"] = [p.row(d, DETERMINATION_FIELDS, _named(f"第 {i} 个认定", d, "name", "code") + "的")
                              for i, d in enumerate(state["determinations"], 1)]
    credit = p.row(state["credit"], CREDIT_FIELDS, "信用等级规则的")
    credit["grades"] = [p.row(g, CREDIT_GRADE_FIELDS, _named(f"信用等级第 {i} 级", g, "code") + "的")
                        for i, g in enumerate(state["credit"]["grades"], 1)]
    data["credit"] = credit
    return data, p.problems


def to_ruleset(state: State) -> rules.Ruleset:
    """The valid ruleset the form describes, or `RulesetInvalid` with every problem: first the numbers that could
    not be read (the rest cannot be checked without them), else everything `rules.from_dict` finds."""
    data, problems = to_data(state)
    with rulesets.engine_errors():
        if problems:
            raise rules.RulesetInvalid(problems)
        return rules.from_dict(data)


def theme_choices(state: State) -> list[tuple[str, str]]:
    """(code, "code name") of the themes typed in the form, for the pickers of determinations and worst-grade rules."""
    return _choices(state["themes"])


def determination_choices(state: State) -> list[tuple[str, str]]:
    """(code, "code name") of the determinations typed in the form, for the worst-grade rules."""
    return _choices(state["determinations"])


def _choices(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for row in rows:
        code, name = str(row.get("code", "")).strip(), str(row.get("name", "")).strip()
        if code and code not in (c for c, _ in out):
            out.append((code, f"{code} {name}".strip()))
    return out
