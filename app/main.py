"""create_app(): routers, middleware, static files, error handlers. Nothing else."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette_exporter import PrometheusMiddleware

from app.audit import api as audit_api
from app.audit import pages as audit_pages
from app.auth import api as auth_api
from app.auth import pages as auth_pages
from app.auth.deps import declared_permission
from app.config import Settings, get_settings
from app.db import POOL_CAPACITY, Database
from app.errors import AppError
from app.evaluation import pages as evaluation_rounds
from app.households import api as households_api
from app.households import pages as households_pages
from app.ledger import api as ledger_api
from app.ledger import pages as ledger_pages
from app.lists import pages as lists_pages
from app.logs import configure as configure_logs
from app.notices.pages import batch as notices_batch
from app.notices.pages import notices as notices_pages
from app.notices.pages import portal as notices_portal
from app.notices.pages import public as notices_public
from app.notices.service import render as notices_render
from app.org import api as org_api
from app.org import pages as org_pages
from app.reports.pages import credit as reports_credit
from app.reports.pages import dashboard as reports_pages
from app.reports.pages import fairness as reports_fairness
from app.rulesets import api as evaluation_api
from app.rulesets.pages import editor as evaluation_editor
from app.rulesets.pages import versions as evaluation_pages
from app.store import api as store_api
from app.store.pages import counter as store_counter
from app.store.pages import stores as store_pages
from app.web import errors as errors_web
from app.web import health
from app.web.middleware import AdmissionGauge, AdmissionMiddleware, RequestContextMiddleware
from app.web.openapi import document_errors

STATIC_DIR = Path(__file__).parent / "static"


def settle_heap() -> None:
    """Once the worker has imported everything (the PDF library too, when it can run), move the objects that live as
    long as the process into the collector's permanent generation: a full collection then walks only what requests
    create, instead of some 450,000 objects of imported code (about 170 ms on this machine, every few requests)."""
    if not notices_render.missing_parts():
        import weasyprint  # noqa: F401  (imported once here rather than during the first notice)
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.check_safe()
    configure_logs(settings.log_level, settings.log_json)
    if notices_render.missing_parts():  # the notices' PDFs need these; the rest of the service runs without them
        logging.getLogger("zhenfeng").error(notices_render.install_hint())
        if settings.production:
            raise RuntimeError(notices_render.install_hint())
    db = Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settle_heap()
        yield
        gc.unfreeze()  # what the worker held may now be garbage (tests start many apps in one process)
        db.dispose()

    app = FastAPI(title="振风超市 API", version="1", lifespan=lifespan,
                  docs_url="/api/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.db = db

    # Routes are matched in this order: the JSON API (scripts and tills, the busiest paths) first, then the counter,
    # then the other pages. Paths never overlap between routers, so the order changes only how far a request walks.
    for module in (health, store_api, ledger_api, households_api, org_api, auth_api, evaluation_api, audit_api,
                   store_counter, auth_pages, org_pages, households_pages, ledger_pages, evaluation_pages,
                   evaluation_editor, evaluation_rounds, lists_pages, reports_pages, reports_credit, reports_fairness,
                   store_pages, audit_pages, notices_pages, notices_public, notices_portal, notices_batch):
        # every route refuses NUL and other control characters in its text input first (app.web.errors)
        app.include_router(module.router, dependencies=[Depends(errors_web.refuse_bad_characters)])
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # FastAPI 0.16x keeps included routers as lazy entries in app.routes: walk the flattened route contexts.
    undeclared = [ctx.path for ctx in iter_route_contexts(app.routes)
                  if isinstance(ctx.original_route, APIRoute) and declared_permission(ctx) is None]
    if undeclared:  # deny by default: a route without a declared permission is a programming error
        raise RuntimeError(f"routes without a declared permission: {undeclared}")

    app.add_exception_handler(AppError, errors_web.app_error_handler)
    app.add_exception_handler(RequestValidationError, errors_web.validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, errors_web.http_error_handler)
    app.add_exception_handler(StatementError, errors_web.database_error_handler)
    app.add_exception_handler(PoolTimeout, errors_web.database_error_handler)  # no pooled connection came free
    app.add_exception_handler(OverflowError, errors_web.database_error_handler)
    app.add_exception_handler(Exception, errors_web.unhandled_error_handler)

    document_errors(app)
    slots = min(settings.max_inflight, POOL_CAPACITY)
    app.state.admission = AdmissionGauge(slots, min(settings.max_uploads, slots))  # read by /healthz
    app.add_middleware(AdmissionMiddleware, limit=slots, wait=settings.queue_wait_seconds,
                       uploads=app.state.admission.upload_slots, gauge=app.state.admission)
    app.add_middleware(PrometheusMiddleware, app_name="zhenfeng", group_paths=True,
                       skip_paths=["/metrics", "/healthz"], filter_unhandled_paths=True)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes,
                       body_timeout=settings.body_timeout_seconds, body_deadline=settings.body_deadline_seconds)
    return app
