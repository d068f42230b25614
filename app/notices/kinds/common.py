"""What the kinds of notice share: the gathered result, and names as the village's policy shows them."""

from __future__ import annotations

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
