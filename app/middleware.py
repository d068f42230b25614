"""Pure ASGI middleware: request id, access log, body size and body time limits, security headers. And the HTTP
protocol the server runs, which also limits how long a client may take to send a request's headers.

Slow clients: a body that stops arriving (longer than `body_timeout` between two pieces, or the whole body not in
within `body_deadline`) is answered 408 and the connection closed; headers not complete within `header_timeout`
(or longer than MAX_HEADER_BYTES) get 408 (431) from `SlowClientProtocol` before the application ever sees them.
Everything else a reverse proxy does better (buffering whole requests before they reach the app) stays its job.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
    def __init__(self, app: Any, max_body_bytes: int, body_timeout: float = 30.0, body_deadline: float = 600.0) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.body_deadline = body_deadline

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
        body_done = False
        refused = {"body": False}  # a body refused half-read: the answer closes the connection (the rest is unread)
        deadline = time.monotonic() + self.body_deadline

        async def limited_receive() -> Any:
            nonlocal received, body_done
            if body_done:  # waiting for the client to go away (a streamed response): no time limit
                return await receive()
            wait = min(self.body_timeout, deadline - time.monotonic())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.001))
            except TimeoutError:
                refused["body"] = True
                raise BodyTimeout() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    refused["body"] = True
                    raise BodyTooLarge(self.max_body_bytes)
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                hdrs = list(message.get("headers") or [])
                hdrs.append((b"x-request-id", rid.encode("latin-1")))
                hdrs.extend(SECURITY_HEADERS)
                if refused["body"]:
                    hdrs.append((b"connection", b"close"))
                message["headers"] = hdrs
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except BodyTooLarge:
            await _too_large(send, rid, self.max_body_bytes)
            status_holder["status"] = 413
        except BodyTimeout:
            await _refuse(send, rid, 408, "timeout", BODY_TIMEOUT_MESSAGE)
            status_holder["status"] = 408
        finally:
            _access(scope, status_holder["status"], started)
            structlog.contextvars.clear_contextvars()


class BodyTooLarge(HTTPException):
    """Raised while a body without Content-Length streams past the limit. An HTTPException because FastAPI turns
    any other exception raised while it reads a body into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


BUSY_MESSAGE = "系统正忙，这次请求没有处理：请过几秒钟再试一次"


class AdmissionMiddleware:
    """At most `limit` requests inside the application at once; the others wait here, holding nothing, for at most
    `wait` seconds and are then refused with 503 and Retry-After.

    Why: a request takes a pooled database connection in one worker thread and later needs a thread again (for the
    route, for the session's commit) while keeping the connection. With more requests in the application than
    connections, every thread can end up waiting for a connection held by a request that waits for a thread, until
    the pool's timeout; the month-end rush (scripts/rush.py) stalled that way. With `limit` at most the pool's
    capacity, every admitted request gets its connection. The health check, the metrics and static files pass."""

    PASS = ("/healthz", "/metrics", "/static/")

    def __init__(self, app: Any, limit: int, wait: float) -> None:
        self.app = app
        self.limit = limit
        self.wait = wait
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.PASS):
            await self.app(scope, receive, send)
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout=self.wait)
        except TimeoutError:
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"retry-after", b"5")]})
            await send({"type": "http.response.body", "body": _error_body("busy", BUSY_MESSAGE)})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()


BODY_TIMEOUT_MESSAGE = "上传太慢，已停止接收：请检查网络后重新提交（大文件请在网络好的地方上传）"
HEADER_TIMEOUT_MESSAGE = "请求发送太慢，连接已关闭：请检查网络后重试"
HEADER_TOO_LARGE_MESSAGE = "请求头过大，连接已关闭：请清除本站的 Cookie 后重试"


class BodyTimeout(HTTPException):
    """Raised while reading a body that stopped arriving (see BodyTooLarge for why an HTTPException)."""

    def __init__(self) -> None:
        super().__init__(408, BODY_TIMEOUT_MESSAGE)


def too_large_message(limit: int) -> str:
    size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{max(1, limit // 1024)} KB"
    return f"上传内容过大：不能超过 {size}"


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "details": None}}, ensure_ascii=False).encode()


async def _refuse(send: Any, rid: str, status: int, code: str, message: str) -> None:
    """An error answered before the body was read to its end: the connection is closed after it (what is left of
    the body is never read)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"connection", b"close"),
                            (b"x-request-id", rid.encode("latin-1"))]})
    await send({"type": "http.response.body", "body": _error_body(code, message)})


async def _too_large(send: Any, rid: str, limit: int) -> None:
    await _refuse(send, rid, 413, "too_large", too_large_message(limit))


# The most a request line and its headers may take (the session cookie and a few headers need ~2 KB).
MAX_HEADER_BYTES = 64 * 1024


class SlowClientProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus: a request's line and headers must all arrive within `header_timeout` seconds
    of the connection being ready for them (opened, or the previous response sent), and take at most
    MAX_HEADER_BYTES. Otherwise the client gets 408 (431) and the connection is closed. uvicorn itself waits
    forever for headers that trickle in (slowloris). Run with `uvicorn --http app.middleware:SlowClientProtocol`."""

    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from app.config import get_settings

        self.header_timeout = get_settings().header_timeout_seconds
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout, self._refuse_headers, 408, "Request Timeout",
                                                  "timeout", HEADER_TIMEOUT_MESSAGE)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse_headers(self, status: int, reason: str, code: str, message: str) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if not self._header_bytes:  # an idle connection (a browser's spare one): closed without a word
            self.transport.close()
            return
        body = _error_body(code, message)
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, reason.encode(), len(body), body))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        waiting = self._header_timer is not None
        if waiting:
            self._header_bytes += len(data)
        super().data_received(data)
        if waiting and self._header_timer is not None and self._header_bytes > MAX_HEADER_BYTES:
            self._disarm_header_timer()  # still no complete headers, and already this much
            self._refuse_headers(431, "Request Header Fields Too Large", "headers_too_large",
                                 HEADER_TOO_LARGE_MESSAGE)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # kept alive, no request waiting: time the next one's headers
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def _access(scope: dict[str, Any], status: int, started: float) -> None:
    path = scope.get("path", "")
    if path.startswith("/static/"):
        return
    client = scope.get("client") or ("-", 0)
    log.info("request", method=scope.get("method"), path=path, status=status,
             ms=round((time.perf_counter() - started) * 1000, 1), client=client[0])
