"""The kinds of notice: each gathers, from the records, the content its template prints (read only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.notices.kinds import black, finance, ranking, red, results, review, statement
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
    "red": Kind("red", "红榜", "month", red.gather),
    "black": Kind("black", "黑榜", "month", black.gather),
    "ranking": Kind("ranking", "积分排行", "year", ranking.gather),
    "finance": Kind("finance", "超市收支公示", "year", finance.gather),
    "review": Kind("review", "评比审核记录", "month", review.gather),
    "statement": Kind("statement", "农户积分对账单", "year", statement.gather, per_household=True),
}


def gather(session: Session, kind: str, village: Village, period: int, **kw: Any) -> Gathered:
    return KINDS[kind].gather(session, village, period, **kw)
