"""Masking of personal data for display (DESIGN §8)."""

from __future__ import annotations


def mask_phone(phone: str | None) -> str:
    if not phone:
        return ""
    p = phone.strip()
    if len(p) >= 8:
        return p[:3] + "*" * (len(p) - 7) + p[-4:]
    return "*" * len(p)


def mask_id_number(id_number: str | None) -> str:
    """Only the last two characters (`****************13`): no region, no birth-date digit, and of the sequence
    only its last digit, which the sex shown beside it gives away anyway. Keeping the first 6 and last 4 left only
    the eight birth-date digits hidden, and those are shown as the birth date; see app/households/service/privacy.py
    for why the last two cannot be completed from what else is shown."""
    if not id_number:
        return ""
    s = id_number.strip()
    if len(s) <= 4:
        return "*" * len(s)
    return "*" * (len(s) - 2) + s[-2:]


def mask_name(name: str, policy: str = "middle") -> str:
    """full: 张三丰; middle: 张*丰 (two characters: 张*); surname: 张某."""
    if not name or policy == "full":
        return name
    if policy == "surname":
        return name[0] + "某"
    if len(name) == 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
