"""The dashboard (工作看板): the villages in the user's scope for a year, those that need attention first, each with
its reasons; the figures beside them, charted, and as .xlsx. Also a village's red and black lists as .xlsx (the
download sits here, above the lists domain, because the report exports import the lists' service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service import Principal
from app.core.clock import to_local, utcnow
from app.deps import DbSession
from app.lists import service as lists
from app.org import service as org
from app.org.models import Village
from app.reports import exports
from app.reports import service as reports
from app.store.stock import yuan
from app.web import download, render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.REPORTS_VIEW))
ListsView = Depends(authorize(Perm.EVAL_VIEW))  # the village lists page's own permission (app/lists/pages.py)
Year = Annotated[int | None, Query(ge=2000, le=2100)]
TownshipId = Annotated[int | None, Query(ge=1, lt=2**31)]


def _year(year: int | None) -> int:
    return year or (to_local(utcnow()) or utcnow()).year


def _villages(session: DbSession, p: Principal, township_id: int | None) -> list[Village]:
    return org.list_villages(session, p.filter(Perm.REPORTS_VIEW), township_id=township_id, include_inactive=False)


@router.get("/dashboard")
def dashboard(request: Request, session: DbSession, p: Principal = View, year: Year = None,
              township_id: TownshipId = None) -> Response:
    y = _year(year)
    rows = reports.dashboard(session, _villages(session, p, township_id), y)
    return render(request, "reports/dashboard.html", {
        "rows": rows, "year": y, "township_id": township_id, "lagging": [r for r in rows if r.lagging], "yuan": yuan,
        "criteria": {"late_after": reports.LATE_AFTER_DAYS, "late_months": reports.LATE_MONTHS,
                     "quiet_days": reports.QUIET_DAYS, "upheld": reports.UPHELD_OBJECTIONS}})


@router.get("/dashboard.xlsx")
def dashboard_xlsx(session: DbSession, p: Principal = View, year: Year = None,
                   township_id: TownshipId = None) -> Response:
    """The dashboard's rows as .xlsx: the same villages, year and figures as the page."""
    y = _year(year)
    return download(exports.dashboard_file(session, _villages(session, p, township_id), y))


@router.get("/villages/{village_id}/lists.xlsx")
def village_lists_xlsx(session: DbSession, village_id: int, p: Principal = ListsView, year: Year = None,
                       list_: Annotated[str, Query(alias="list", max_length=6)] = "") -> Response:
    """A village's red and black lists of a year as .xlsx: the page's 按月 table and its postings."""
    return download(exports.village_lists_file(session, village_id, year or lists.this_month() // 100, list_))
