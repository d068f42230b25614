"""What a viewer may see of a member: the one place that decides it, for the pages, the API, the roster export and
the audit payloads (DESIGN §8, docs/security.md "Masking by role").

Two views, chosen by the caller from the viewer's permission (`Perm.HOUSEHOLD_FULL` on the household's scope):

* **full** — the roster's owners: the county administrator, and the village clerk for the village's own roster.
  They keep the roster (import, correct, re-export it for editing) and check an ID number against the card in front
  of them, so they see every field as stored. Each such view is audited (`households.view_full`, the export's
  `households.export`).
* **limited** — everyone else who may see the household: the township reviewer, the committee member, the store
  clerk, the household itself (its account is often used on a shared family phone, and nothing it does needs the
  full numbers), and anything written to the audit log. Name, relation, sex, the birth **year** (not the date,
  not an age), the ID number's last two characters only, and the phone masked to 3 + 4.

Why the limited view cannot be completed. An 18-digit number is region (6) · birth date YYYYMMDD (8) · sequence (3,
the last odd for a man) · check digit (1, computed from the other 17). Assume the worst: the viewer knows the region
code (the county's, or the stored one), the sex and the birth year. Left unknown are the month and day (365 or 366)
and the first two sequence digits (100): 36,500 numbers, of which the shown check digit keeps one in eleven, about
3,300 (a 15-digit number has no check digit and a one-digit-shorter sequence: 365 × 10 = 3,650). The old mask
(first 6 and last 4) beside the full birth date left nothing unknown at all; beside the birth year it left the
month and day, about 33 numbers. So the limited view never shows a date digit (month, day) and never more than the
last sequence digit (which the sex gives away anyway) and the check digit.

A year, not an age: the age ticks over on the birthday, so someone who looks every day learns the day. The year is
the same all year round.

The search by ID number is an oracle too (type a candidate, see whether a household comes back): the registry
search matches an ID number only within the households the viewer may see in full (`search(id_scope=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from app.core.masking import mask_id_number, mask_phone
from app.households.models import Household, Member


@dataclass(frozen=True)
class MemberShown:
    """One member as a viewer may see it. `birth_date` is None in the limited view; `birth_year` is always set
    when the date is known."""
    id: int
    household_id: int
    name: str
    relation: str
    gender: str | None
    birth_date: date | None
    birth_year: int | None
    id_number: str | None
    phone: str | None
    party_member: bool
    living_away: bool
    status: str
    status_date: date | None
    full: bool

    @property
    def birth_text(self) -> str:
        """As a page or an export cell shows it: 1975-03-02 (full), 1975年 (limited)."""
        if self.birth_date is not None:
            return self.birth_date.isoformat()
        return f"{self.birth_year}年" if self.birth_year else ""


def show_member(m: Member, *, full: bool) -> MemberShown:
    return MemberShown(id=m.id, household_id=m.household_id, name=m.name, relation=m.relation, gender=m.gender,
                       birth_date=m.birth_date if full else None,
                       birth_year=m.birth_date.year if m.birth_date else None,
                       id_number=(m.id_number if full else mask_id_number(m.id_number)) or None,
                       phone=(m.phone if full else mask_phone(m.phone)) or None,
                       party_member=m.party_member, living_away=m.living_away, status=m.status,
                       status_date=m.status_date, full=full)


def household_phone(h: Household, *, full: bool) -> str | None:
    return (h.phone if full else mask_phone(h.phone)) or None


def audit_snapshot(m: Member) -> dict[str, Any]:
    """A member in an audit payload: the limited view (the log is kept for ever and copied off the machine), the
    phone only as set or not. Whether the full ID number or birth date changed is told by `changed_fields`."""
    v = show_member(m, full=False)
    return {"name": v.name, "relation": v.relation, "gender": v.gender, "birth_year": v.birth_year,
            "id_number": v.id_number, "phone": "已设置" if m.phone else None,
            "party_member": v.party_member, "living_away": v.living_away, "status": v.status}


_COMPARED = ("name", "relation", "gender", "birth_date", "id_number", "phone", "party_member", "living_away", "status")


def stored_fields(m: Member) -> dict[str, Any]:
    """The fields as stored, to tell what an edit changed (never written anywhere)."""
    return {k: getattr(m, k) for k in _COMPARED}


def changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [k for k in _COMPARED if before.get(k) != after.get(k)]
