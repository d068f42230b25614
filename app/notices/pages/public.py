"""Anyone's check of a printed notice, no login: the code under the QR (or typed from the paper) leads to what the
register holds: genuine or not (the row against the audit chain's record of its generation and the seal under the
server's key, never against itself alone), current or superseded (and by which), the content as it was printed, and a check of
a PDF file against the one handed out. A household's statement is personal: its page says only whether it is
genuine."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import Response

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.core.clock import format_local
from app.deps import DbSession, read_only_session
from app.errors import Conflict, ValidationFailed
from app.notices import kinds
from app.notices.service import notices, render
from app.web.templates import redirect
from app.web.templates import render as render_page

router = APIRouter(include_in_schema=False)
Public = Depends(authorize(Perm.PUBLIC))
MAX_CHECK_BYTES = 20 * 1024 * 1024
PRIVATE_KINDS = {"statement"}  # never shown to whoever holds the code


def _ctx(**extra: object) -> dict[str, object]:
    return {"display_code": notices.display_code, "format_local": format_local, "month_label": render.month_label,
            "kinds": kinds.KINDS, "private": PRIVATE_KINDS, **extra}


def _key(request: Request) -> bytes:
    return notices.notice_key(request.app.state.settings.secret_key)


@router.get("/v")
def lookup(request: Request, p: object = Public, code: Annotated[str, Query(max_length=40)] = "") -> Response:
    """Type the code printed on the notice."""
    if code:
        return redirect(f"/v/{notices.normalise_code(code)[:12]}")
    return render_page(request, "notices/verify_lookup.html", _ctx())


@router.get("/v/{code}")
def verify(request: Request, session: DbSession, code: str, p: object = Public) -> Response:
    n = notices.by_code(session, code)
    if n is None:
        return render_page(request, "notices/verify.html", _ctx(code=code[:12], found=None), status_code=404)
    c = notices.check(session, n, key=_key(request))
    return render_page(request, "notices/verify.html", _ctx(code=n.code, found=c, n=n,
                                                             paper=None if n.kind in PRIVATE_KINDS else notices.page_of(n)))


@router.post("/v/{code}/check")
@read_only_session  # anyone may post a 20 MB file here: it must never hold the county's write lock
def check_file(request: Request, session: DbSession, code: str, p: object = Public,
                     file: Annotated[UploadFile | None, File()] = None) -> Response:
    """Is this PDF file exactly the notice handed out under this code?"""
    n = notices.by_code(session, code)
    if n is None:
        return render_page(request, "notices/verify.html", _ctx(code=code[:12], found=None), status_code=404)
    if file is None:
        raise ValidationFailed("请选择要核对的 PDF 文件", details={"field": "file"})
    data = file.file.read(MAX_CHECK_BYTES + 1)
    if len(data) > MAX_CHECK_BYTES:
        raise ValidationFailed("文件太大：公示的 PDF 不会超过 20 MB", details={"field": "file"})
    c = notices.check(session, n, data, key=_key(request))
    return render_page(request, "notices/verify.html", _ctx(code=n.code, found=c, n=n, checked=True,
                                                             paper=None if n.kind in PRIVATE_KINDS else notices.page_of(n)))


@router.get("/v/{code}/notice.pdf")
def verify_pdf(session: DbSession, code: str, p: object = Public) -> Response:
    """The notice's PDF as it was handed out (not for a household's statement)."""
    n = notices.by_code(session, code)
    if n is None or n.kind in PRIVATE_KINDS:
        raise Conflict("没有这个编号的公开公示", code="no_such_notice")
    try:
        data = render.pdf(notices.page_of(n, for_pdf=True))
    except render.PdfUnavailable as e:
        raise Conflict(str(e), code="pdf_unavailable") from e
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="notice-{n.code}.pdf"'})
