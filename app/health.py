"""/healthz (is the database reachable; can the notices' PDFs be made) and /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.deps import DbSession
from app.notices import render

router = APIRouter(tags=["运维"])


@router.get("/healthz", summary="健康检查", dependencies=[Depends(authorize(Perm.PUBLIC))],
            responses={503: {"description": "数据库不可达"}})
def healthz(session: DbSession) -> Response:
    try:
        session.execute(text("SELECT 1")).scalar_one()
    except Exception:
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    missing = render.install_hint()  # the service runs without them; only the PDF notices cannot be made
    return JSONResponse({"status": "ok", "database": "ok", "notices_pdf": missing or "ok"})


@router.get("/metrics", summary="Prometheus 指标", dependencies=[Depends(authorize(Perm.PUBLIC))],
            response_class=Response, responses={200: {"description": "Prometheus 文本格式", "content": {
                CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
