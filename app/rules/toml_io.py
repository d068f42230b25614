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
    text = text.removeprefix("\ufeff")
    too_deep = _nesting_problem(text)  # before tomllib: it recurses once per level and gives up near 500
    if too_deep:
        raise RulesetInvalid([too_deep])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesetInvalid([_decode_message(str(e))]) from None
    except (RecursionError, ValueError, OverflowError) as e:  # what tomllib may raise besides its own error
        raise RulesetInvalid([f"TOML 格式错误：无法读取（{type(e).__name__}）。请对照导出的细则文件改正后再导入"]) from None
    if _depth(data) > MAX_DEPTH:  # dotted keys (a.b.c… = 1) nest without any bracket
        raise RulesetInvalid([f"TOML 的键嵌套太深（超过 {MAX_DEPTH} 层）{_deep_key_line(text)}："
                              "积分细则的表最多嵌套几层，请对照导出的细则文件改正"])
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


# A key as written: at the start of a line or after a space, "{", ",", "." or "[", and followed by "=", "]" or "."
_KEY_AT = re.compile(r'(?:^|(?<=[\s{,.\[]))"?([^\s"=.\[\]{},#]+)"?\s*(?=[=\].])')


def _locator(text: str) -> Locate:
    """A function naming the lines where a key is written (`key =`, `[key]`, `[[a.key]]`), or '' when not found.
    The lines are indexed once: a file of thousands of unknown keys must not cost thousands of passes over it."""
    where: dict[str, list[int]] = {}
    for i, line in enumerate(text.splitlines(), 1):
        for key in dict.fromkeys(_KEY_AT.findall(line.split("#", 1)[0] + " ")):
            where.setdefault(key, []).append(i)

    def locate(key: str) -> str:
        found = where.get(key.strip('"'), [])
        if not found:
            return ""
        more = " 等" if len(found) > 5 else ""
        return f"（第 {'、'.join(map(str, found[:5]))}{more} 行）"

    return locate


# Brackets and braces ([ ] { }) nest at most this deep, and so do the tables of a ruleset: the real file nests three
# (a theme's grades: an array of inline tables). tomllib would recurse once per level and fail near 500.
MAX_DEPTH = 16


def _nesting_problem(text: str) -> str | None:
    """The line where brackets or braces outside strings and comments first nest deeper than MAX_DEPTH, or a key
    is dotted as deep, as a Chinese problem; None when neither happens. One pass over the text, no recursion."""
    depth = 0
    dots = 0  # the parts of a dotted key (a.b.c) so far: tomllib takes time growing with their square
    line = 1
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == ".":
            dots += 1
            if dots >= MAX_DEPTH:
                return (f"TOML 的键嵌套太深：第 {line} 行的键由点号连起了 {MAX_DEPTH} 层以上（如 a.b.c…）："
                        "积分细则的表最多嵌套几层，请对照导出的细则文件改正")
        elif ch in "\n=,{}[]":
            dots = 0
        if ch == "\n":
            line += 1
        elif ch == "#":  # a comment, to the end of the line
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else ch
            j = i + len(quote)
            while j < n and text.startswith(quote, j) is False:
                if text[j] == "\\" and ch == '"':
                    j += 1
                elif text[j] == "\n":
                    if len(quote) == 1:  # a one-line string ends at the line's end (tomllib says the rest)
                        break
                    line += 1
                j += 1
            i = j + len(quote)
            continue
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return (f"TOML 格式错误：第 {line} 行的方括号或花括号嵌套太深（超过 {MAX_DEPTH} 层）："
                        "积分细则的数组和表最多嵌套几层，请对照导出的细则文件改正")
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def _depth(data: object) -> int:
    """How deep tables and arrays nest in parsed TOML, found without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def _deep_key_line(text: str) -> str:
    for i, line in enumerate(text.splitlines(), 1):
        head = line.split("#", 1)[0].split("=", 1)[0]
        if head.count(".") >= MAX_DEPTH - 1:
            return f"（第 {i} 行）"
    return ""


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
