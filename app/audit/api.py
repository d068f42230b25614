"""JSON API of the audit log (county admins)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.audit import service as audit
from app.audit.schemas import AuditEventOut, AuditPage, ChainHead
from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.core.clock import day_bounds
from app.deps import DbSession

router = APIRouter(prefix="/api/v1/audit", tags=["审计"])
AuditView = Depends(authorize(Perm.AUDIT_VIEW))


@router.get("/events", response_model=AuditPage, summary="审计事件（按时间倒序）", dependencies=[AuditView])
def events(session: DbSession,
           action: Annotated[str | None, Query(max_length=60)] = None,
           actor: Annotated[str | None, Query(max_length=80)] = None,
           object_type: Annotated[str | None, Query(max_length=40)] = None,
           object_id: Annotated[str | None, Query(max_length=60)] = None,
           since: date | None = None, until: date | None = None,
           offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
           limit: Annotated[int, Query(ge=1, le=200)] = 50) -> AuditPage:
    lo, hi = day_bounds(since, until)
    rows, total = audit.search(session, action=action, actor=actor, object_type=object_type, object_id=object_id,
                               since=lo, until=hi, offset=offset, limit=limit)
    return AuditPage(items=[AuditEventOut.model_validate(r) for r in rows], total=total, offset=offset, limit=limit)


@router.get("/head", response_model=ChainHead, summary="审计链链头", dependencies=[AuditView])
def head(session: DbSession) -> ChainHead:
    seq, h = audit.head(session)
    return ChainHead(seq=seq, hash=h)
