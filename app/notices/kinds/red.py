"""红榜: the households the village's red list shows in the month, why in plain words and for which months."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.notices.kinds.common import Gathered
from app.notices.kinds.postings import gather_list
from app.org.models import Village


def gather(session: Session, village: Village, period: int, *, masking: str, **_: object) -> Gathered:
    return gather_list(session, village, period, "red", masking=masking)
