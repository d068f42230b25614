"""The dashboard (工作看板): the villages in the user's scope for a year, those that need attention first, each with
its reasons; the figures beside them, charted, and as .xlsx. Also a village's red and black lists as .xlsx (the
download sits here, above the lists domain, because the report exports import the lists' service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import to_local, utcnow
from app.deps import DbSession
from app.lists import service as lists
from app.org import service as org
from app.org.models import Village
from app.reports.service import dashboard as reports
from app.reports.service import exports
from app.store.service.stock import yuan
from app.web.templates import download, render

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.REPORTS_VIEW))
ListsView = Depends(authorize(Perm.EVAL_VIEW))  # the village lists page's own permission (app/lists/pages.py)
Year = Annotated[int | None, Query(ge=2000, le=2100)]
TownshipId = Annotated[int | None, Query(ge=1, lt=2**31)]


def _year(year: int | None) -> int:
    return year or (to_local(utcnow()) or utcnow()).year


def _villages(session: DbSession, p: Principal, township_id: int | None) -> list[Village]:
    return org.list_villages(session, p.filter(Perm.REPORTS_VIEW), township_id=township_id, include_inactive=False)


Month = Annotated[int | None, Query(ge=1, le=12)]
PAGE_ROWS = 50  # villages per page of the table
LAGGING_SHOWN = 30  # villages in the attention list; the rest are marked in the table and all are in the download
TREND_COLUMNS = 30  # above this many villages, the per-village charts show the lowest coverage only


def _period(year: int | None, m1: int | None, m2: int | None) -> tuple[int, int]:
    y = _year(year)
    first, last = m1 or 1, m2 or 12
    if first > last:
        first, last = last, first
    return y * 100 + first, y * 100 + last


@router.get("/dashboard")
def dashboard(request: Request, session: DbSession, p: Principal = View, year: Year = None,
              township_id: TownshipId = None, m1: Annotated[Month, Query(alias="from")] = None,
              m2: Annotated[Month, Query(alias="to")] = None,
              sort: Annotated[str, Query(max_length=20)] = "attention", only: Annotated[str, Query(max_length=10)] = "",
              page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Response:
    first, last = _period(year, m1, m2)
    b = reports.board(session, _villages(session, p, township_id), first, last)
    sort = sort if sort in reports.SORTS else "attention"
    ordered = reports.ranked(b.rows, sort)
    shown = [(k + 1, r) for k, r in enumerate(ordered) if r.lagging or only != "lagging"]  # (rank, row)
    pages = max(1, -(-len(shown) // PAGE_ROWS))
    page = min(page, pages)
    lagging = [r for r in b.rows if r.lagging]
    lowest = sorted(b.rows, key=lambda r: (r.coverage.share_pct, r.village.code))[:TREND_COLUMNS]
    return render(request, "reports/dashboard.html", {
        "board": b, "rows": shown[(page - 1) * PAGE_ROWS:page * PAGE_ROWS], "all_count": len(b.rows),
        "shown_count": len(shown), "page": page, "pages": pages, "sort": sort, "sorts": reports.SORTS, "only": only,
        "year": b.year, "m1": first % 100, "m2": last % 100, "township_id": township_id,
        "lagging": lagging[:LAGGING_SHOWN], "lagging_count": len(lagging), "yuan": yuan,
        "chart_rows": lowest if len(b.rows) > TREND_COLUMNS else b.rows, "chart_all": len(b.rows) <= TREND_COLUMNS,
        "criteria": {"late_after": reports.LATE_AFTER_DAYS, "late_months": reports.LATE_MONTHS,
                     "quiet_days": reports.QUIET_DAYS, "upheld": reports.UPHELD_OBJECTIONS}})


@router.get("/dashboard.xlsx")
def dashboard_xlsx(session: DbSession, p: Principal = View, year: Year = None, township_id: TownshipId = None,
                   m1: Annotated[Month, Query(alias="from")] = None,
                   m2: Annotated[Month, Query(alias="to")] = None) -> Response:
    """The dashboard as .xlsx: the same villages, period and figures as the page, every village, and the months."""
    first, last = _period(year, m1, m2)
    return download(exports.dashboard_file(session, _villages(session, p, township_id), first, last))


@router.get("/villages/{village_id}/lists.xlsx")
def village_lists_xlsx(session: DbSession, village_id: int, p: Principal = ListsView, year: Year = None,
                       list_: Annotated[str, Query(alias="list", max_length=6)] = "") -> Response:
    """A village's red and black lists of a year as .xlsx: the page's 按月 table and its postings."""
    return download(exports.village_lists_file(session, village_id, year or lists.this_month() // 100, list_))
