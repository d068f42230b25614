"""Pure ASGI middleware: request id, access log, body size limit and security headers."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import structlog
from starlette.exceptions import HTTPException

from app.logs import log

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'self'"),
]


class RequestContextMiddleware:
    def __init__(self, app: Any, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        structlog.contextvars.bind_contextvars(request_id=rid)
        started = time.perf_counter()
        status_holder = {"status": 500}

        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _too_large(send, rid, self.max_body_bytes)
            _access(scope, 413, started)
            structlog.contextvars.clear_contextvars()
            return

        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                hdrs = list(message.get("headers") or [])
                hdrs.append((b"x-request-id", rid.encode("latin-1")))
                hdrs.extend(SECURITY_HEADERS)
                message["headers"] = hdrs
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except BodyTooLarge:
            await _too_large(send, rid, self.max_body_bytes)
            status_holder["status"] = 413
        finally:
            _access(scope, status_holder["status"], started)
            structlog.contextvars.clear_contextvars()


class BodyTooLarge(HTTPException):
    """Raised while a body without Content-Length streams past the limit. An HTTPException because FastAPI turns
    any other exception raised while it reads a body into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{max(1, limit // 1024)} KB"
    return f"上传内容过大：不能超过 {size}"


async def _too_large(send: Any, rid: str, limit: int) -> None:
    body = json.dumps({"error": {"code": "too_large", "message": too_large_message(limit), "details": None}},
                      ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json; charset=utf-8"),
                            (b"x-request-id", rid.encode("latin-1"))]})
    await send({"type": "http.response.body", "body": body})


def _access(scope: dict[str, Any], status: int, started: float) -> None:
    path = scope.get("path", "")
    if path.startswith("/static/"):
        return
    client = scope.get("client") or ("-", 0)
    log.info("request", method=scope.get("method"), path=path, status=status,
             ms=round((time.perf_counter() - started) * 1000, 1), client=client[0])
