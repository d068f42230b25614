"""黑榜: the households the village's black list shows in the month (only postings in effect and within their period:
never lifted, expired, voided or erased ones), why in plain words, for which months, and how a household comes off
the list, in one sentence that names nobody's measures."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.notices.kinds.common import Gathered
from app.notices.kinds.postings import gather_list
from app.org.models import Village


def gather(session: Session, village: Village, period: int, *, masking: str, **_: object) -> Gathered:
    return gather_list(session, village, period, "black", masking=masking)
