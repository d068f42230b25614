"""Resident ID numbers (居民身份证号码, GB 11643): validation with a precise Chinese reason, and the canonical key
used for uniqueness (15-digit legacy numbers are keyed by their 18-digit form)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from stdnum import numdb

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
_SCIENTIFIC = re.compile(r"^\d(\.\d+)?[eE]\+?\d+$")


@dataclass(frozen=True)
class IdCheck:
    value: str | None  # as stored: trimmed, upper-case X
    key: str | None  # 18-digit canonical form, for uniqueness
    birth_date: date | None
    gender: str | None  # 男 / 女 (the 17th digit: odd = male)
    error: str | None


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def _birth(yyyymmdd: str, today: date) -> date | None:
    try:
        d = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None
    if d > today or d.year < 1880:
        return None
    return d


@lru_cache(maxsize=8192)
def _area_code_known(code: str) -> bool:
    results = numdb.get("cn/loc").info(code)
    info = {k: v for _part, props in results for k, v in props.items()}
    return "county" in info


def _area_known(number18: str) -> bool:
    """The first six digits name a county-level division that exists or existed (python-stdnum's table).

    stdnum's own check also requires the division to have existed in the birth year, which rejects real people:
    an ID number carries the code of the place and time it was issued (someone born in 1970 in 歙县 holds 341021…,
    a code that dates from 1987). So the code is accepted if the table has ever known it.
    """
    return _area_code_known(number18[:6])


def check_id_number(raw: object, *, today: date | None = None) -> IdCheck:
    """Validate what a clerk typed or an Excel cell held. Never raises: `error` says what is wrong, in Chinese."""
    today = today or date.today()
    if raw is None:
        return IdCheck(None, None, None, None, None)
    if isinstance(raw, float) and raw.is_integer() and 10**14 <= raw < 10**15:
        raw = int(raw)  # a 15-digit number fits a float exactly: nothing was lost
    if isinstance(raw, float | int) and not isinstance(raw, bool):
        shown = f"{raw:.16e}" if isinstance(raw, float) else str(raw)
        if isinstance(raw, int) and len(str(raw)) in (15, 18):
            raw = str(raw)
        else:
            return IdCheck(None, None, None, None,
                           f"身份证号被 Excel 存成了数字（{shown}），后几位已经丢失；请把这一列设为“文本”格式后重新填写")
    s = str(raw).strip().replace(" ", "")
    if not s:
        return IdCheck(None, None, None, None, None)
    if _SCIENTIFIC.match(s) or (s.replace(".", "", 1).isdigit() and "." in s):
        return IdCheck(None, None, None, None,
                       f"身份证号被 Excel 转成了数字（{s}），后几位已经丢失；请把这一列设为“文本”格式后重新填写")
    s = s.upper()
    if len(s) == 18:
        if not (s[:17].isdigit() and (s[17].isdigit() or s[17] == "X")):
            return IdCheck(None, None, None, None, f"身份证号 {s} 含有非法字符：前 17 位须为数字，最后一位为数字或 X")
        birth = _birth(s[6:14], today)
        if birth is None:
            return IdCheck(None, None, None, None, f"身份证号 {s} 中的出生日期 {s[6:14]} 不存在或在未来")
        expected = check_digit(s[:17])
        if s[17] != expected:
            return IdCheck(None, None, None, None, f"身份证号 {s} 的校验位不对（最后一位应为 {expected}），请核对是否抄错")
        if not _area_known(s):
            return IdCheck(None, None, None, None, f"身份证号 {s} 的前 6 位地区码 {s[:6]} 不存在")
        return IdCheck(s, s, birth, "男" if int(s[16]) % 2 else "女", None)
    if len(s) == 15:
        if not s.isdigit():
            return IdCheck(None, None, None, None, f"15 位身份证号 {s} 只能由数字组成")
        birth = _birth("19" + s[6:12], today)
        if birth is None:
            return IdCheck(None, None, None, None, f"15 位身份证号 {s} 中的出生日期 19{s[6:12]} 不存在")
        first17 = s[:6] + "19" + s[6:]
        key = first17 + check_digit(first17)
        if not _area_known(key):
            return IdCheck(None, None, None, None, f"身份证号 {s} 的前 6 位地区码 {s[:6]} 不存在")
        return IdCheck(s, key, birth, "男" if int(s[14]) % 2 else "女", None)
    return IdCheck(None, None, None, None, f"身份证号 {s} 的位数不对：应为 18 位（或旧的 15 位），现在是 {len(s)} 位")


def make_id_number(area: str, birth: date, seq: int, male: bool) -> str:
    """A valid 18-digit number (for demo data and tests): area code + birth date + 3-digit sequence + check digit."""
    seq3 = seq % 1000
    if (seq3 % 2 == 1) != male:
        seq3 = (seq3 + 1) % 1000
    first17 = f"{area}{birth:%Y%m%d}{seq3:03d}"
    return first17 + check_digit(first17)
