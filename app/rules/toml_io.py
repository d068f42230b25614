"""A ruleset as a TOML file: `dumps(r)` writes it, `loads(text)` reads it back (`loads(dumps(r)) == r`).

Reading uses the standard library's `tomllib`; writing is a small writer for exactly this schema (basic strings with
escapes, integers, booleans, tables, arrays of tables, and each theme's grades as one inline table per line).
Chinese text is written as is (UTF-8). A malformed file, an unknown or missing key, a wrong type or a ruleset that
does not validate raises `RulesetInvalid` with Chinese messages naming the key and, where it can, the line.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from app.rules.convert import Locate, from_dict, to_dict
from app.rules.errors import RulesetInvalid
from app.rules.schema import Ruleset
from app.rules.validate import check

HEADER = (
    "# 积分细则（振风超市）。可在此修改后再导入；导入时逐项校验，有误会指出键名和行号。\n"
    "# combine 评分合成：median 中位数 / mean 平均 / trimmed_mean 去掉最高最低后平均（平均按等级顺序四舍五入）\n"
    "# penalty_policy 扣分政策：floor_at_zero 扣到零为止 / allow_debt 允许负分\n"
    "# list 榜单：red 红榜 / black 黑榜 / none 不上榜；vote 表决：majority 过半数 / two_thirds 三分之二 / unanimous 一致\n"
    "# [credit] 信用等级规则：[[credit.grades]] 从高到低逐级列出，农户全年达到的第一级即其等级，一级都达不到的评为 fallback；\n"
    "#   min_red 全年至少上红榜几次 / min_net 全年至少净得积分（得分减扣分）：不设则删去该行；\n"
    "#   red_or_net = true：两者满足其一即可（默认须都满足）；max_black 未移出的黑榜至多几次（0 = 不能有）；\n"
    "#   lifted_black_counts = true：经整改移出的黑榜也计入；ungraded_without_points = true：全年没有得分的不评级\n"
)
INLINE_ARRAYS = frozenset({("themes", "grades")})  # arrays of small tables written inline, one per line

TOML_HINTS = (
    ("Cannot overwrite a value", "同一个键写了两次"),
    ("Cannot declare", "同一个表声明了两次"),
    ("Cannot redefine", "同一个表声明了两次"),
    ("Cannot mutate", "不能给已写成内联表的项再添加键"),
    ("Duplicate inline table key", "内联表里同一个键写了两次"),
    ("Expected '=' after a key", "键后面缺少等号 =（文字须用英文双引号括起来）"),
    ("Expected ']' at the end", "表头缺少右方括号 ]"),
    ("Expected ']]' at the end", "表数组的表头缺少 ]]"),
    ("Unclosed array", "数组缺少右方括号 ] 或元素之间缺少逗号"),
    ("Unclosed inline table", "内联表缺少右花括号 } 或元素之间缺少逗号"),
    ("Unterminated string", "文字缺少结尾的英文双引号"),
    ("Unescaped", "文字中的反斜杠 \\ 须写成 \\\\"),
    ("Illegal character", "含有不允许的控制字符"),
    ("Invalid value", "值无效：文字须用英文双引号括起来，真假值写 true/false"),
    ("Invalid initial character for a key", "键名无效：只能用英文字母、数字、下划线"),
    ("Invalid statement", "这一行不是“键 = 值”或表头"),
)


def dumps(r: Ruleset) -> str:
    """The ruleset as TOML text. Raises `RulesetInvalid` for a ruleset that does not validate (only valid rulesets
    are exported, so every exported file imports again)."""
    check(r)
    out: list[str] = [HEADER]
    _write_table(out, [], to_dict(r))
    return "\n".join(out).rstrip("\n") + "\n"


def loads(text: str | bytes) -> Ruleset:
    """A valid ruleset from TOML text (str, or UTF-8 bytes as uploaded), or `RulesetInvalid`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            problem = f"文件不是 UTF-8 编码（第 {e.start + 1} 个字节无法识别）：请用 UTF-8 编码另存后再导入"
            raise RulesetInvalid([problem]) from None
    try:
        data = tomllib.loads(text.removeprefix("\ufeff"))
    except tomllib.TOMLDecodeError as e:
        raise RulesetInvalid([_decode_message(str(e))]) from None
    return from_dict(data, locate=_locator(text))


# --- reading helpers ------------------------------------------------------------------------------------------------

_WHERE = re.compile(r"\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _decode_message(raw: str) -> str:
    m = _WHERE.search(raw)
    where = "文件末尾" if m and not m.group(1) else f"第 {m.group(1)} 行第 {m.group(2)} 列" if m else "某处"
    if raw.startswith("Illegal character '\\n'"):
        hint = "文字没有在本行结束：缺少结尾的英文双引号"
    else:
        hint = next((zh for en, zh in TOML_HINTS if raw.startswith(en)), "格式不符合 TOML")
    return f"TOML 格式错误：{where}，{hint}。（{raw}）"


def _locator(text: str) -> Locate:
    """A function naming the lines where a key is written (`key =`, `[key]`, `[[a.key]]`), or '' when not found."""
    lines = text.splitlines()

    def locate(key: str) -> str:
        pattern = re.compile(r'(?:^|[\s{,.\[])"?' + re.escape(key) + r'"?\s*(?:=|\]|\.)')
        found = [str(i) for i, line in enumerate(lines, 1) if pattern.search(line.split("#", 1)[0] + " ")]
        if not found:
            return ""
        more = " 等" if len(found) > 5 else ""
        return f"（第 {'、'.join(found[:5])}{more} 行）"

    return locate


# --- writing --------------------------------------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, everything else (Chinese) as is."""
    out = []
    for c in s:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _string(v)
    raise TypeError(f"unsupported TOML value {v!r}")  # unreachable for a ruleset's dict


def _inline_table(d: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {_scalar(v)}" for k, v in d.items()) + " }"


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _write_table(out: list[str], path: list[str], table: dict[str, Any]) -> None:
    """Scalars first, then sub-tables `[a.b]`, then arrays of tables `[[a.b]]` (TOML needs this order). Empty
    arrays are left out: reading treats a missing array as empty."""
    for k, v in table.items():
        if isinstance(v, list) and (*path, k) in INLINE_ARRAYS:
            out.append(f"{k} = [\n" + "".join(f"  {_inline_table(x)},\n" for x in v) + "]")
        elif not isinstance(v, dict | list):
            out.append(f"{k} = {_scalar(v)}")
    for k, v in table.items():
        if isinstance(v, dict):
            out.append(f"\n[{'.'.join([*path, k])}]")
            _write_table(out, [*path, k], v)
    for k, v in table.items():
        if _is_table_array(v) and (*path, k) not in INLINE_ARRAYS:
            for item in v:
                out.append(f"\n[[{'.'.join([*path, k])}]]")
                _write_table(out, [*path, k], item)
