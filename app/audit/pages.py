"""The admin page to browse and filter the audit log."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.audit import service as audit
from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.core.clock import day_bounds
from app.deps import DbSession
from app.errors import ValidationFailed
from app.web.templates import render

router = APIRouter(include_in_schema=False)
PAGE = 50


def _date(value: str | None, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{label}格式不正确，应为 2026-01-31") from None


@router.get("/admin/audit", dependencies=[Depends(authorize(Perm.AUDIT_VIEW))])
def audit_page(request: Request, session: DbSession,
               action: Annotated[str | None, Query(max_length=60)] = None,
               actor: Annotated[str | None, Query(max_length=80)] = None,
               object_type: Annotated[str | None, Query(max_length=40)] = None,
               since: Annotated[str | None, Query(max_length=10)] = None,
               until: Annotated[str | None, Query(max_length=10)] = None,
               page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> Response:
    since_d, until_d = _date(since, "起始日期"), _date(until, "截止日期")
    lo, hi = day_bounds(since_d, until_d)
    rows, total = audit.search(session, action=action or None, actor=actor or None, object_type=object_type or None,
                               since=lo, until=hi, offset=(page - 1) * PAGE, limit=PAGE)
    seq, head_hash = audit.head(session)
    filters = {"action": action or "", "actor": actor or "", "object_type": object_type or "",
               "since": since or "", "until": until or ""}
    return render(request, "audit/index.html", {"events": rows, "total": total, "page": page,
                                                "pages": max(1, (total + PAGE - 1) // PAGE), "filters": filters,
                                                "head_seq": seq, "head_hash": head_hash})
