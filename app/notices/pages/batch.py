"""A township's notices for a month printed in one go: one PDF, or a zip of per-village PDFs, built in the
background with its progress shown (the page polls the batch with htmx; without script it refreshes itself)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from app.auth.deps import authorize, register_scope_resolver
from app.auth.permissions import Perm
from app.auth.service.accounts import Principal
from app.core.clock import format_local
from app.deps import DbSession
from app.errors import Conflict, form_errors
from app.notices import kinds
from app.notices.pages.notices import _ctx as village_ctx
from app.notices.pages.notices import base_url
from app.notices.service import batch, notices, render
from app.org import service as org
from app.web.templates import download, redirect
from app.web.templates import render as render_page

router = APIRouter(include_in_schema=False)
View = Depends(authorize(Perm.NOTICES_VIEW))
Manage = Depends(authorize(Perm.NOTICES_MANAGE))
Month = Annotated[int | None, Query(ge=200001, le=210012)]

register_scope_resolver("notice_batch_id", batch.scope_of_batch)


def _ctx(session: DbSession, p: Principal, township_id: int, month: int) -> dict[str, object]:
    township = org.get_township(session, p.filter(Perm.NOTICES_VIEW), township_id)
    return {"township": township, "month": month, "forms": batch.FORMS, "recent": batch.recent(session, township_id),
            "kinds": [kinds.KINDS[k].label for k in batch.batch_kinds()], "month_label": render.month_label,
            "format_local": format_local, "progress": batch.progress, "pdf_missing": render.install_hint(),
            "nav_active": "/notices"}


@router.get("/townships/{township_id}/notices")
def township_notices(request: Request, session: DbSession, township_id: int, p: Principal = View,
                     month: Month = None) -> Response:
    return render_page(request, "notices/batch.html", _ctx(session, p, township_id, notices.default_month(month)))


@router.post("/townships/{township_id}/notice-batches")
def start_batch(request: Request, session: DbSession, township_id: int, p: Principal = View,
                month: Annotated[int, Form(ge=0, le=210012)] = 0,
                form: Annotated[str, Form(max_length=4)] = "pdf") -> Response:
    with form_errors("notices/batch.html", lambda s: _ctx(s, p, township_id, notices.default_month(None))):
        b = batch.start(session, p.actor(), township_id, month, form)
    batch.launch(request.app.state.db, p.actor(), b.id, base_url(request),
                 key=notices.notice_key(request.app.state.settings.secret_key))
    return redirect(f"/notice-batches/{b.id}", request, "已开始生成，完成后可下载")


@router.post("/villages/{village_id}/notices/month")
def village_month(request: Request, session: DbSession, village_id: int, p: Principal = Manage,
                  month: Annotated[int, Form(ge=0, le=210012)] = 0) -> Response:
    """The village's notices of the month in one PDF, generating those not yet generated: open the page, click,
    print."""
    m = notices.default_month(month)
    with form_errors("notices/village.html", lambda s: village_ctx(s, p, village_id, m)):
        data, name, _skipped = batch.village_month(session, p.actor(), village_id, m, base_url(request),
                                                   key=notices.notice_key(request.app.state.settings.secret_key))
    return download((data, name, "application/pdf"))


@router.get("/notice-batches/{notice_batch_id}")
def batch_page(request: Request, session: DbSession, notice_batch_id: int, p: Principal = View) -> Response:
    b = batch.get_batch(session, notice_batch_id)
    ctx = {"b": b, "state": batch.progress(b), "month_label": render.month_label, "format_local": format_local,
           "nav_active": "/notices"}
    if request.headers.get("hx-request"):
        return render_page(request, "notices/batch_status.html", ctx, block_name="status")
    return render_page(request, "notices/batch_status.html", ctx)


@router.get("/notice-batches/{notice_batch_id}/file")
def batch_file(session: DbSession, notice_batch_id: int, p: Principal = View) -> Response:
    b = batch.get_batch(session, notice_batch_id)
    if b.status != "done" or b.data is None:
        raise Conflict("还在生成中，完成后才能下载", code="batch_not_ready")
    media = "application/pdf" if b.form == "pdf" else "application/zip"
    return download((b.data, b.file_name or "notices", media))
