"""A village's notices (公示) for the staff: the month's kinds with a button each ("生成" registers a notice and its
PDF; a kind whose period is a year gets the month's year, YYYY00), a household's statement for a year (household
number and year), the notices generated so far (current and superseded), the village's name masking; a notice's
printable page and its PDF."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.auth.deps import authorize, register_scope_resolver
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import format_local
from app.core.scope import Scope
from app.deps import DbSession
from app.errors import AppError, Conflict, FormRejected, form_errors
from app.households.service import households as hh
from app.notices import kinds
from app.notices.service import notices, render
from app.org import service as org
from app.web.templates import redirect
from app.web.templates import render as render_page

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.NOTICES_VIEW))
Manage = Depends(authorize(Perm.NOTICES_MANAGE))
Month = Annotated[int | None, Query(ge=200001, le=210012)]
STATEMENT = "statement"

register_scope_resolver("notice_id", notices.scope_of_notice)


def base_url(request: Request) -> str:
    """Where the QR on the paper leads: ZF_PUBLIC_URL, or the address this page was opened at."""
    return request.app.state.settings.public_url or str(request.base_url)


def _key(request: Request) -> bytes:
    """The key that seals notices (derived from the server's secret, which is not in the database)."""
    return notices.notice_key(request.app.state.settings.secret_key)


def _ctx(session: DbSession, p: Principal, village_id: int, month: int, **extra: object) -> dict[str, object]:
    village = org.get_village(session, p.filter(Perm.NOTICES_VIEW), village_id)
    scope = Scope(township_id=village.township_id, village_id=village.id)
    extra.setdefault("statement_form", {"number": "", "year": month // 100})
    return {"village": village, "month": month, "kinds": kinds.KINDS, "maskings": notices.MASKINGS,
            "made": notices.village_notices(session, village_id), "can_manage": p.covers(Perm.NOTICES_MANAGE, scope),
            "format_local": format_local, "display_code": notices.display_code, "month_label": render.month_label,
            "pdf_missing": render.install_hint(), "nav_active": "/notices", **extra}


@router.get("/notices")
def index(request: Request, session: DbSession, p: Principal = View) -> Response:
    """The villages in scope, each with its current notices."""
    villages = org.list_villages(session, p.filter(Perm.NOTICES_VIEW), include_inactive=False)
    if len(villages) == 1:
        return redirect(f"/villages/{villages[0].id}/notices")
    townships = org.list_townships(session, p.filter(Perm.NOTICES_VIEW))
    batchable = [t for t in townships if p.covers(Perm.NOTICES_VIEW, Scope(township_id=t.id))]  # a whole township
    return render_page(request, "notices/index.html", {"villages": villages, "townships": batchable,
                                                       "month_label": render.month_label})


@router.get("/villages/{village_id}/notices")
def village_notices(request: Request, session: DbSession, village_id: int, p: Principal = View,
                    month: Month = None) -> Response:
    return render_page(request, "notices/village.html", _ctx(session, p, village_id, notices.default_month(month)))


@router.post("/villages/{village_id}/notices")
def generate(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
             kind: Annotated[str, Form(max_length=12)] = "", month: Annotated[int, Form(ge=200001, le=210012)] = 0,
             ) -> Response:
    """Draft, render and register one notice; the clerk lands on it, ready to print."""
    period = notices.default_month(month)
    spec = kinds.KINDS.get(kind)
    try:
        if spec is not None and spec.period == "year":
            period = period // 100 * 100
        d = notices.draft(session, p.actor(), kind, village_id, period, verify_base=base_url(request))
        pdf = notices.render_pdf(d)
        n = notices.register(session, p.actor(), d, pdf, key=_key(request))
    except render.PdfUnavailable as e:
        raise FormRejected(Conflict(str(e), code="pdf_unavailable"), "notices/village.html",
                           lambda s: _ctx(s, p, village_id, period)) from e
    except AppError as e:
        raise FormRejected(e, "notices/village.html", lambda s: _ctx(s, p, village_id, period)) from e
    return redirect(f"/notices/{n.id}", request, "公示已生成：可以打印或下载 PDF 张贴")


@router.post("/villages/{village_id}/statements")
def generate_statement(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                       number: Annotated[str, Form(max_length=20)] = "",
                       year: Annotated[int, Form(ge=2000, le=2100)] = 0) -> Response:
    """A household's statement (农户积分对账单) for a year: the household's own paper, handed to it."""
    y = year or notices.default_month(None) // 100
    try:
        household = hh.find_by_number(session, village_id, number)
        d = notices.draft(session, p.actor(), STATEMENT, village_id, y * 100, verify_base=base_url(request),
                          household_id=household.id)
        n = notices.register(session, p.actor(), d, notices.render_pdf(d), key=_key(request))
    except (render.PdfUnavailable, AppError) as e:
        error = Conflict(str(e), code="pdf_unavailable") if isinstance(e, render.PdfUnavailable) else e
        form = {"number": number, "year": y}
        raise FormRejected(error, "notices/village.html",
                           lambda s: _ctx(s, p, village_id, notices.default_month(None), statement_form=form)) from e
    return redirect(f"/notices/{n.id}", request, "对账单已生成：打印后交给农户")


@router.post("/villages/{village_id}/notice-settings")
def set_masking(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                masking: Annotated[str, Form(max_length=8)] = "") -> Response:
    with form_errors("notices/village.html", lambda s: _ctx(s, p, village_id, notices.default_month(None))):
        notices.set_masking(session, p.actor(), village_id, masking)
    return redirect(f"/villages/{village_id}/notices", request, "已保存：以后生成的公示按新的方式显示姓名")


@router.get("/notices/{notice_id}")
def notice_page(request: Request, session: DbSession, notice_id: int, p: Principal = View) -> Response:
    """The notice with a bar to print it or download its PDF; the paper is the page below the bar."""
    n = notices.get_notice(session, notice_id)
    c = notices.check(session, n, key=_key(request))
    return render_page(request, "notices/notice.html", {
        "n": n, "check": c, "paper": notices.page_of(n), "kind": kinds.KINDS.get(n.kind),
        "display_code": notices.display_code, "format_local": format_local, "month_label": render.month_label,
        "nav_active": "/notices"})


@router.get("/notices/{notice_id}/paper")
def notice_paper(request: Request, session: DbSession, notice_id: int, p: Principal = View) -> Response:
    """The notice alone, as the browser prints it."""
    return HTMLResponse(notices.page_of(notices.get_notice(session, notice_id)))


@router.get("/notices/{notice_id}/notice.pdf")
def notice_pdf(request: Request, session: DbSession, notice_id: int, p: Principal = View) -> Response:
    n = notices.get_notice(session, notice_id)
    try:
        data = render.pdf(notices.page_of(n, for_pdf=True))
    except render.PdfUnavailable as e:
        raise Conflict(str(e), code="pdf_unavailable") from e
    return Response(data, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="notice-{n.code}.pdf"'})
