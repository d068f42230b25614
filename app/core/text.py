"""Characters no text input may hold, on every database: NUL (PostgreSQL refuses it in any text, SQLite would keep
it), the other control characters (invisible, they break exports, logs and comparisons), and lone UTF-16
surrogates (JSON can spell them, "\\ud800", and no database can store them). Tab, line feed and carriage return are
ordinary text (a textarea sends CR LF)."""

from __future__ import annotations

import re

# C0 controls but tab, LF and CR; DEL; the surrogate range (only a lone one can occur in a str)
BAD_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def describe(ch: str) -> str:
    """The character as a clerk can be told about it, in Chinese."""
    code = ord(ch)
    if code == 0:
        return "空字符（\\0）"
    if 0xD800 <= code <= 0xDFFF:
        return f"无法识别的字符（U+{code:04X}）"
    return f"看不见的控制字符（U+{code:04X}）"


def bad_character(value: str) -> str | None:
    """The first character of value that no text input may hold, described in Chinese; None when there is none."""
    m = BAD_CHARACTER.search(value)
    return describe(m.group(0)) if m else None


def visible(value: str) -> str:
    """value with each such character replaced by U+FFFD (for text shown back or stored from a file, such as a
    file name or a cell quoted in a problem message)."""
    return BAD_CHARACTER.sub("\ufffd", value)
