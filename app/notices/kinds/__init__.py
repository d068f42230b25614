"""The kinds of notice: each gathers, from the records, the content its template prints (read only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.notices.kinds import results
from app.notices.kinds.common import Gathered
from app.org.models import Village

Gather = Callable[..., Gathered]


@dataclass(frozen=True)
class Kind:
    code: str
    label: str
    period: str  # month | year: what the period of this kind is
    gather: Gather
    per_household: bool = False


KINDS: dict[str, Kind] = {
    "results": Kind("results", "月度评比结果公示", "month", results.gather),
}


def gather(session: Session, kind: str, village: Village, period: int, **kw: Any) -> Gathered:
    return KINDS[kind].gather(session, village, period, **kw)
