"""The dashboard (工作看板): the villages in the user's scope for a year, those that need attention first, each with
its reasons; the figures beside them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service import Principal
from app.core.clock import to_local, utcnow
from app.deps import DbSession
from app.org import service as org
from app.reports import service as reports
from app.store.stock import yuan
from app.web import render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.REPORTS_VIEW))


@router.get("/dashboard")
def dashboard(request: Request, session: DbSession, p: Principal = View,
              year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
              township_id: Annotated[int | None, Query(ge=1, lt=2**31)] = None) -> Response:
    y = year or (to_local(utcnow()) or utcnow()).year
    villages = org.list_villages(session, p.filter(Perm.REPORTS_VIEW), township_id=township_id,
                                 include_inactive=False)
    rows = reports.dashboard(session, villages, y)
    return render(request, "reports/dashboard.html", {
        "rows": rows, "year": y, "lagging": [r for r in rows if r.lagging], "yuan": yuan,
        "criteria": {"late_after": reports.LATE_AFTER_DAYS, "late_months": reports.LATE_MONTHS,
                     "quiet_days": reports.QUIET_DAYS, "upheld": reports.UPHELD_OBJECTIONS}})
