"""The fairness page (公平性提示) of a village: per committee member, how far his or her ratings sit from the other
members' over a year or the last months, and whether some 村民小组 or surnames are rated systematically higher;
households rated identically month after month; months where everyone got the same grades. Pointers for the
township reviewer, never verdicts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.scope import EVERYTHING
from app.deps import DbSession
from app.org import service as org
from app.reports.service import fairness
from app.reports.service import fairness_data as service
from app.web.templates import render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.REPORTS_VIEW))


@router.get("/villages/{village_id}/fairness")
def village_fairness(request: Request, session: DbSession, village_id: int, p: Principal = View,
                     year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
                     months: Annotated[int | None, Query(ge=1, le=service.MAX_MONTHS)] = None) -> Response:
    """`year`: that calendar year; `months`: the last N months up to this one; neither: this year."""
    village = org.get_village(session, EVERYTHING, village_id)  # the framework checked the scope of village_id
    period = service.last_months(months) if months else service.year_period(year or service.this_year())
    view = service.village_fairness(session, village_id, period)
    return render(request, "reports/fairness.html", {
        "village": village, "view": view, "report": view.report, "period": period,
        "year": period.last // 100 if not months else None, "months": months,
        "num": fairness.num, "signed": fairness.signed, "month_label": fairness.month_label,
        "dimension_labels": fairness.DIMENSION_LABELS, "nav_active": "/dashboard"})
