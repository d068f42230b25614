"""/healthz (is the database reachable; can the notices' PDFs be made; how loaded is this worker) and /metrics
(Prometheus).

/healthz is a liveness check: 200 while the worker runs and reaches its database, also when it is saturated (every
admission slot taken), which it reports as `"saturated": true` with its numbers. /healthz?ready=1 is the readiness
check: 503 while saturated, so that a load balancer sends new requests to another worker until a slot is free.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import text

from app.auth.deps import authorize
from app.auth.permissions import Perm
from app.deps import DbSession
from app.notices.service import render
from app.web.middleware import CONNECTIONS, SATURATED_MESSAGE, AdmissionGauge

router = APIRouter(tags=["运维"])


@router.get("/healthz", summary="健康检查", dependencies=[Depends(authorize(Perm.PUBLIC))],
            responses={503: {"description": "数据库不可达；或带 ready=1 时：本进程的处理名额已满（saturated）"}})
def healthz(request: Request, session: DbSession, ready: bool = False) -> Response:
    admission: AdmissionGauge = request.app.state.admission
    load = {"saturated": admission.saturated, "admission": admission.snapshot(),
            "connections": CONNECTIONS.snapshot(request.app.state.settings.max_connections_per_address)}
    missing = render.install_hint()  # the service runs without them; only the PDF notices cannot be made
    if admission.saturated:
        # Every slot is taken, and with them maybe every pooled database connection: a probe would wait behind
        # them and report the database as down. The worker is alive and busy: 200, unless readiness was asked.
        return JSONResponse({"status": "busy", "database": "not_checked", "notices_pdf": missing or "ok",
                             "message": SATURATED_MESSAGE, **load}, status_code=503 if ready else 200)
    try:
        session.execute(text("SELECT 1")).scalar_one()
    except Exception:
        return JSONResponse({"status": "error", "database": "unreachable", "message": "数据库连不上", **load},
                            status_code=503)
    return JSONResponse({"status": "ok", "database": "ok", "notices_pdf": missing or "ok", **load})


@router.get("/metrics", summary="Prometheus 指标", dependencies=[Depends(authorize(Perm.PUBLIC))],
            response_class=Response, responses={200: {"description": "Prometheus 文本格式", "content": {
                CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
