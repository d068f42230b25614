"""Pinyin for finding and sorting names: `zs` and `zhangsan` find 张三. Surnames read as surnames (曾 zeng, 单 shan,
解 xie, 仇 qiu, 区 ou, 查 zha, 朴 piao …), which a plain character-by-character reading gets wrong."""

from __future__ import annotations

from functools import cache

from pypinyin import Style, lazy_pinyin

# Two-character surnames first, then single characters whose surname reading differs from the common one.
SURNAME_READINGS: dict[str, list[str]] = {
    "欧阳": ["ou", "yang"], "司马": ["si", "ma"], "诸葛": ["zhu", "ge"], "上官": ["shang", "guan"],
    "尉迟": ["yu", "chi"], "万俟": ["mo", "qi"], "长孙": ["zhang", "sun"], "澹台": ["tan", "tai"],
    "单于": ["chan", "yu"], "令狐": ["ling", "hu"], "皇甫": ["huang", "fu"], "东方": ["dong", "fang"],
    "曾": ["zeng"], "单": ["shan"], "解": ["xie"], "仇": ["qiu"], "区": ["ou"], "查": ["zha"], "朴": ["piao"],
    "盖": ["ge"], "任": ["ren"], "缪": ["miao"], "翟": ["zhai"], "覃": ["qin"], "秘": ["bi"], "乐": ["yue"],
    "尉": ["yu"], "繁": ["po"], "过": ["guo"], "华": ["hua"], "纪": ["ji"], "种": ["chong"], "员": ["yun"],
    "句": ["gou"], "宓": ["fu"], "召": ["shao"], "谌": ["chen"], "藏": ["zang"], "折": ["she"], "那": ["na"],
    "沈": ["shen"], "石": ["shi"], "柏": ["bai"], "薄": ["bo"], "重": ["chong"], "长": ["chang"], "朝": ["chao"],
    "苌": ["chang"], "訾": ["zi"], "隗": ["wei"], "甯": ["ning"], "阚": ["kan"],
}


@cache
def _char(ch: str) -> str:
    """The common reading of one character ('' for anything without one); a name is read character by character,
    which is both right for given names (no phrase guessing) and fast (a cached lookup per character)."""
    readings = lazy_pinyin(ch, style=Style.NORMAL, errors="ignore")
    return readings[0].lower() if readings else ""


def name_syllables(name: str) -> tuple[str, ...]:
    name = (name or "").strip()
    if not name:
        return ()
    for length in (2, 1):
        surname = name[:length]
        if len(name) > length and surname in SURNAME_READINGS:
            return tuple(SURNAME_READINGS[surname] + [r for r in map(_char, name[length:]) if r])
    return tuple(r for r in map(_char, name) if r)


def full_pinyin(name: str) -> str:
    """张三 -> zhangsan (no tones, no spaces, lower case); the sort key for names."""
    return "".join(name_syllables(name))


def initials(name: str) -> str:
    """张三 -> zs."""
    return "".join(s[0] for s in name_syllables(name) if s)
