"""Resident ID numbers (GB 11643) and pinyin for names: pure functions, checked exhaustively where cheap."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.cn_id import check_digit, check_id_number, make_id_number
from app.core.masking import mask_id_number, mask_name, mask_phone
from app.core.pinyin import full_pinyin, initials


def test_valid_number_with_lowercase_x_is_accepted_and_normalised() -> None:
    c = check_id_number("11010519491231002x")
    assert c.error is None and c.value == "11010519491231002X" and c.key == c.value
    assert c.birth_date == date(1949, 12, 31) and c.gender == "女"


@pytest.mark.parametrize(("raw", "words"), [
    ("110105194912310021", "校验位不对"),
    ("110105194913310028", "出生日期"),
    ("110105299912310025", "出生日期"),
    ("99999919491231002" + check_digit("99999919491231002"), "地区码"),
    ("1101051949123100", "位数不对"),
    ("11010519491231002Y", "非法字符"),
    (1.1010519491231002e17, "Excel"),
    ("1.10105194912310E+17", "Excel"),
])
def test_invalid_numbers_say_what_is_wrong(raw: object, words: str) -> None:
    c = check_id_number(raw)
    assert c.value is None and c.error and words in c.error


def test_legacy_15_digit_numbers_are_kept_when_valid_and_keyed_by_18_digit_form() -> None:
    c = check_id_number("110105491231002")
    assert c.error is None and c.value == "110105491231002" and c.key == "11010519491231002X"
    assert check_id_number("110105491331002").error  # 13th month
    # an Excel number cell holds a 15-digit number exactly (an 18-digit one it cannot)
    assert check_id_number(110105491231002.0).value == "110105491231002"


def test_area_codes_are_accepted_whatever_the_birth_year() -> None:
    # 341021 (歙县) dates from 1987; people born before then hold it too.
    assert check_id_number(make_id_number("341021", date(1950, 3, 1), 17, True)).error is None


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)), st.integers(0, 999), st.booleans())
def test_made_numbers_validate_and_carry_birth_and_gender(birth: date, seq: int, male: bool) -> None:
    n = make_id_number("110105", birth, seq, male)
    c = check_id_number(n)
    assert c.error is None and c.birth_date == birth and c.gender == ("男" if male else "女")
    # any single changed digit in the first 17 is caught by the check digit
    wrong = n[:5] + str((int(n[5]) + 1) % 10) + n[6:]
    assert check_id_number(wrong).error


def test_check_digit_known_value() -> None:
    assert check_digit("11010519491231002") == "X"


def test_masking() -> None:
    assert mask_id_number("110105194912310021") == "*" * 16 + "21"
    assert mask_phone("13812345678") == "138****5678"
    assert (mask_name("张三丰"), mask_name("张三"), mask_name("张三丰", "surname"), mask_name("张三丰", "full")) == (
        "张*丰", "张*", "张某", "张三丰")


@pytest.mark.parametrize(("name", "py", "ini"), [
    ("张三", "zhangsan", "zs"), ("曾国藩", "zengguofan", "zgf"), ("单田芳", "shantianfang", "stf"),
    ("解缙", "xiejin", "xj"), ("仇英", "qiuying", "qy"), ("区志强", "ouzhiqiang", "ozq"), ("查良镛", "zhaliangyong", "zly"),
    ("朴树", "piaoshu", "ps"), ("欧阳修", "ouyangxiu", "oyx"), ("李乐", "lile", "ll"), ("乐嘉", "yuejia", "yj"),
])
def test_pinyin_reads_surnames_as_surnames(name: str, py: str, ini: str) -> None:
    assert full_pinyin(name) == py and initials(name) == ini
