"""What the kinds of notice share: the gathered result, and names as the village's policy shows them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.masking import mask_name
from app.households.models import Household


@dataclass(frozen=True)
class Gathered:
    title: str
    content: dict[str, Any]
    round_id: int | None = None


def heads(session: Session, household_ids: list[int], masking: str) -> dict[int, tuple[str, str]]:
    """household id -> (household number, head's name as the policy shows it). Nothing else of the household (no
    ID number, no phone) is ever read here."""
    out: dict[int, tuple[str, str]] = {}
    ids = sorted(set(household_ids))
    for k in range(0, len(ids), 500):
        for hid, number, name in session.execute(select(Household.id, Household.number, Household.head_name)
                                                 .where(Household.id.in_(ids[k:k + 500]))):
            out[hid] = (number, mask_name(name or "", masking))
    return out


def sort_key(number: str) -> tuple[int, str]:
    """Household numbers in their natural order: 2 before 10."""
    digits = "".join(ch for ch in number if ch.isdigit())
    return (int(digits) if digits else 10**9, number)


# a phone (11 digits, also written 139-1234-5678), an ID number (18), a bank card: seven digits or more in a row
LONG_DIGITS = re.compile(r"\d{7,}[Xx]?|1\d{2}[ -]\d{4}[ -]\d{4}")


def scrub(text: object) -> str:
    """A free text written by someone (a comment, a committee's reason, a memo) as a notice may print it: any run of
    seven or more digits (a phone or an ID number typed into it) replaced by asterisks."""
    return LONG_DIGITS.sub(lambda m: "＊" * 4, str(text or ""))


def competition_ranks(values: list[int]) -> list[int]:
    """Ranks of values already sorted best first, ties sharing a rank and the next rank skipping: 1, 1, 3."""
    out: list[int] = []
    for i, v in enumerate(values):
        out.append(out[-1] if i and v == values[i - 1] else i + 1)
    return out
