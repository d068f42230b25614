"""农户积分对账单: one household's points for a year, as its account in the ledger holds them: the balance brought
forward, every line of the year (date, what, points, balance after) and the balance carried forward, with the year's
points in and out.

It is the household's own paper, handed to it, never pinned up; the public verification page says only whether it is
genuine (PRIVATE_KINDS in app/notices/pages/public.py). So the head's name is printed in full, whatever the village's
masking policy: the masking protects a household from its neighbours' eyes on the notice board, and a statement the
household cannot recognise as its own is of no use to it. The title (which the verification page does show) carries
the household number only. ID numbers and phones are never read."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.clock import format_local
from app.core.month import current_month
from app.errors import Conflict, ValidationFailed
from app.households.models import HOUSEHOLD_STATUS_LABELS, Household, HouseholdStatus
from app.ledger import service as ledger
from app.notices.kinds.common import Gathered, scrub
from app.org import service as org
from app.org.models import Village


def gather(session: Session, village: Village, period: int, *, masking: str, household_id: int | None = None,
           **_: object) -> Gathered:
    assert village.id is not None
    if household_id is None:
        raise ValidationFailed("请填写要出对账单的户号", details={"field": "number"})
    h = session.get(Household, household_id)
    if h is None or h.village_id != village.id:
        raise ValidationFailed("本村没有这一户", details={"field": "number"})
    year = period // 100
    if year * 100 + 1 > current_month():
        raise Conflict(f"{year}年还没有开始，没有对账单", code="year_not_started")
    group = next((g.name for g in org.list_groups(session, village.id) if g.id == h.group_id), "")
    before = 0  # the balance after the last line of an earlier year
    mine = []
    for ln in ledger.statement_all(session, household_id).lines:  # in the account's order (its chain of balances)
        y = ledger.month_of(ln.occurred_at) // 100
        if y < year:
            before = ln.balance_after
        elif y == year:
            mine.append(ln)
    # brought forward: the balance before the year's first line, so that it plus the lines is the closing balance
    opening = mine[0].balance_after - mine[0].amount if mine else before
    closing = mine[-1].balance_after if mine else before
    lines = [{"date": format_local(ln.occurred_at, "%Y-%m-%d"), "kind": ln.kind_label, "what": scrub(ln.memo),
              "points": ln.amount, "balance": ln.balance_after} for ln in mine]
    points_in = sum(ln.amount for ln in mine if ln.amount > 0)
    points_out = -sum(ln.amount for ln in mine if ln.amount < 0)
    content = {
        "year": year, "to_month": min(current_month(), year * 100 + 12), "number": h.number,
        "head": h.head_name, "group": group,
        "status": "" if h.status == HouseholdStatus.ACTIVE.value else HOUSEHOLD_STATUS_LABELS.get(h.status, h.status),
        "opening": opening, "closing": closing, "points_in": points_in, "points_out": points_out,
        "lines": lines,
    }
    return Gathered(f"{village.name}农户积分对账单（{year}年·户号{h.number}）", content)
