"""Pure ASGI middleware: request id, access log, body size and body time limits, admission, security headers. And
the HTTP protocol the server runs, which also limits how long a client may take to send a request's headers and how
many connections one client address may hold.

Slow clients: a body that stops arriving (longer than `body_timeout` between two pieces, or the whole body not in
within `body_deadline`) is answered 408 and the connection closed; headers not complete within `header_timeout`
(or longer than MAX_HEADER_BYTES) get 408 (431) from `SlowClientProtocol` before the application ever sees them.
A body of at most READ_AHEAD_BYTES is read whole before its request takes an admission slot, so a body that
trickles in waits outside the slots; larger ones (uploads) may hold only a few slots while they arrive. One client
address may hold at most `max_connections_per_address` connections (a trusted proxy's are not counted).
Everything else a reverse proxy does better (buffering whole requests before they reach the app) stays its job.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
import uuid
from functools import lru_cache
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
        started_response = {"yes": False}
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
                if not started_response["yes"]:  # the client went away before it was answered (nginx's 499)
                    status_holder["status"] = 499
            return message

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                started_response["yes"] = True
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
UPLOAD_BUSY_MESSAGE = "同时上传文件的人太多，这次没有接收：请过一会儿再上传"
SATURATED_MESSAGE = "本服务进程的处理名额已全部占用，新的请求需要排队"

# A request body of at most this many bytes (a form, a JSON call) is read whole before its request asks for an
# admission slot, then handed to the application from memory: a body that trickles in waits outside the slots.
READ_AHEAD_BYTES = 64 * 1024


class AdmissionGauge:
    """What one worker's admission is doing, for /healthz: its slots and how many are taken, requests waiting for
    one, bodies still being read ahead (outside the slots), and uploads holding a slot while their body arrives."""

    def __init__(self, slots: int, upload_slots: int) -> None:
        self.slots = slots
        self.upload_slots = upload_slots
        self.in_use = 0
        self.waiting = 0
        self.receiving = 0
        self.uploads = 0

    @property
    def saturated(self) -> bool:
        """Every slot is taken: the next request has to wait."""
        return self.in_use >= self.slots

    def snapshot(self) -> dict[str, int]:
        return {"slots": self.slots, "in_use": self.in_use, "waiting": self.waiting, "receiving": self.receiving,
                "uploads": self.uploads, "upload_slots": self.upload_slots}


class AdmissionMiddleware:
    """At most `limit` requests inside the application at once; the others wait here, holding nothing, for at most
    `wait` seconds and are then refused with 503 and Retry-After.

    Why: a request takes a pooled database connection in one worker thread and later needs a thread again (for the
    route, for the session's commit) while keeping the connection. With more requests in the application than
    connections, every thread can end up waiting for a connection held by a request that waits for a thread, until
    the pool's timeout; the month-end rush (scripts/rush.py) stalled that way. With `limit` at most the pool's
    capacity, every admitted request gets its connection. The health check, the metrics and static files pass.

    Slow bodies: a slot is for work, not for waiting on a client's network. A body of at most READ_AHEAD_BYTES
    (Content-Length, or a chunked body that ends within it) is read here before the request asks for a slot, so 22
    login forms sent a byte every few seconds hold 22 connections and no slot. A larger body (an uploaded
    spreadsheet: reading it ahead would keep up to ZF_MAX_BODY_BYTES per connection in memory) is read by the
    application inside its slot, but only `uploads` requests may hold a slot while their body is still arriving;
    the others wait like any request and get 503. The body limits (RequestContextMiddleware) apply to both."""

    PASS = ("/healthz", "/metrics", "/static/")

    def __init__(self, app: Any, limit: int, wait: float, uploads: int | None = None,
                 gauge: AdmissionGauge | None = None) -> None:
        self.app = app
        self.limit = limit
        self.wait = wait
        self.uploads = max(1, min(uploads or limit, limit))
        self.gauge = gauge or AdmissionGauge(limit, self.uploads)
        if (self.gauge.slots, self.gauge.upload_slots) != (limit, self.uploads):
            raise ValueError("the admission gauge counts other limits than the middleware's")
        self._slots: asyncio.Semaphore | None = None
        self._upload_slots: asyncio.Semaphore | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.PASS):
            await self.app(scope, receive, send)
            return
        if self._slots is None or self._upload_slots is None:
            self._slots = asyncio.Semaphore(self.limit)
            self._upload_slots = asyncio.Semaphore(self.uploads)
        gauge = self.gauge
        length = _body_length(scope)
        ahead: dict[str, Any] | None = None  # the body read so far, handed to the application first
        complete = length == 0
        if length is None or 0 < length <= READ_AHEAD_BYTES:  # chunked (size unknown), or small
            gauge.receiving += 1
            try:
                got = await _read_ahead(receive)
            finally:
                gauge.receiving -= 1
            if got is None:
                return  # the client went away before its body was in: nobody to answer
            body, complete = got
            ahead = {"type": "http.request", "body": body, "more_body": not complete}
        upload = not complete

        if not await self._admit(upload):
            answer = _error_body("busy", UPLOAD_BUSY_MESSAGE if upload else BUSY_MESSAGE)
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json; charset=utf-8"), (b"retry-after", b"5"),
                (b"content-length", b"%d" % len(answer)),
                *([(b"connection", b"close")] if upload else [])]})  # the rest of the body is never read
            await send({"type": "http.response.body", "body": answer})
            return
        slots, upload_slots = self._slots, self._upload_slots
        holds_upload = upload

        def body_arrived() -> None:
            nonlocal holds_upload
            if holds_upload:
                holds_upload = False
                gauge.uploads -= 1
                upload_slots.release()

        async def app_receive() -> Any:
            nonlocal ahead
            if ahead is not None:
                message, ahead = ahead, None
                return message
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_arrived()  # an upload's body is in (or its client gone): its upload place is free again
            return message

        gauge.in_use += 1
        try:
            await self.app(scope, app_receive if (ahead is not None or upload) else receive, send)
        finally:
            body_arrived()
            gauge.in_use -= 1
            slots.release()

    async def _admit(self, upload: bool) -> bool:
        """A slot (and, for a body still arriving, first an upload place) within `wait` seconds in all."""
        assert self._slots is not None and self._upload_slots is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        self.gauge.waiting += 1
        holds_upload = False
        try:
            if upload:
                if not await _acquire(self._upload_slots, self.wait):
                    return False
                holds_upload = True
                self.gauge.uploads += 1
            if not await _acquire(self._slots, deadline - loop.time()):
                return False
            holds_upload = False  # kept: released when the body is in or the request ends
            return True
        finally:
            self.gauge.waiting -= 1
            if holds_upload:
                self.gauge.uploads -= 1
                self._upload_slots.release()


async def _acquire(semaphore: asyncio.Semaphore, timeout: float) -> bool:
    if not semaphore.locked():  # free, and nobody waiting before us
        await semaphore.acquire()
        return True
    try:
        await asyncio.wait_for(semaphore.acquire(), timeout=max(timeout, 0.001))
    except TimeoutError:
        return False
    return True


def _body_length(scope: dict[str, Any]) -> int | None:
    """The request body's announced size: 0 for none, None when it is sent chunked (its size is learnt by reading)."""
    length = 0
    for name, value in scope.get("headers") or []:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = int(value) if value.isdigit() else 0
    return length


async def _read_ahead(receive: Any) -> tuple[bytes, bool] | None:
    """The body up to READ_AHEAD_BYTES: (what was read, whether that is all of it), or None if the client left."""
    pieces: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        piece = message.get("body", b"")
        pieces.append(piece)
        size += len(piece)
        if not message.get("more_body", False):
            return b"".join(pieces), True
        if size > READ_AHEAD_BYTES:
            return b"".join(pieces), False


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
    body = _error_body(code, message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json; charset=utf-8"), (b"connection", b"close"),
                            (b"content-length", b"%d" % len(body)), (b"x-request-id", rid.encode("latin-1")),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Any, rid: str, limit: int) -> None:
    await _refuse(send, rid, 413, "too_large", too_large_message(limit))


# The most a request line and its headers may take (the session cookie and a few headers need ~2 KB).
MAX_HEADER_BYTES = 64 * 1024
TOO_MANY_CONNECTIONS_MESSAGE = "同一地址打开的连接太多，这次请求没有处理：请关闭一些页面，过几秒钟再试"
# seconds a refused connection is kept open after its answer, reading and dropping what the client still sends (a
# connection closed with unread data is reset, and the client may lose the answer)
LINGER_SECONDS = 2.0


class ConnectionGauge:
    """The connections open in this worker process, counted by client address (see `address_key`) for the limit
    per address, and for /healthz. Kept by SlowClientProtocol; `active` says whether the server runs it."""

    def __init__(self) -> None:
        self.by_address: dict[str, int] = {}
        self.open = 0
        self.refused = 0
        self.active = False

    def count(self, key: str) -> int:
        return self.by_address.get(key, 0)

    def opened(self, key: str) -> None:
        self.by_address[key] = self.by_address.get(key, 0) + 1
        self.open += 1

    def closed(self, key: str) -> None:
        left = self.by_address.get(key, 0) - 1
        if left > 0:
            self.by_address[key] = left
        else:
            self.by_address.pop(key, None)
        self.open -= 1

    def snapshot(self, per_address_limit: int) -> dict[str, int] | None:
        if not self.active:
            return None  # served by another protocol (tests, a plain `uvicorn` command): nothing counted
        return {"open": self.open, "addresses": len(self.by_address), "per_address_limit": per_address_limit,
                "refused": self.refused}


CONNECTIONS = ConnectionGauge()


def address_key(host: str) -> str:
    """Whose connection this is: the address; for IPv6 its /64 (one phone or household network holds a whole /64,
    and could open each connection from another address of it); an IPv4 address mapped into IPv6, the IPv4 one."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return host


@lru_cache(maxsize=8)
def _trusted_proxies(spec: str) -> tuple[bool, tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
                                         frozenset[str]]:
    items = [item.strip() for item in spec.split(",") if item.strip()]
    networks = []
    names = set()
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item)
    return "*" in items, tuple(networks), frozenset(names)


def is_trusted_proxy(host: str, spec: str | list[str]) -> bool:
    """Whether `host` is one of the proxies whose X-Forwarded-For uvicorn believes (FORWARDED_ALLOW_IPS: addresses,
    networks, or * for all). The same list, read the same way, decides who is exempt from the limit per address."""
    everyone, networks, names = _trusted_proxies(spec if isinstance(spec, str) else ",".join(spec))
    if everyone or host in names:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


class SlowClientProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, plus: a request's line and headers must all arrive within `header_timeout` seconds
    of the connection being ready for them (opened, or the previous response sent), and take at most
    MAX_HEADER_BYTES. Otherwise the client gets 408 (431) and the connection is closed. uvicorn itself waits
    forever for headers that trickle in (slowloris). Run with `uvicorn --http app.web.middleware:SlowClientProtocol`.

    And one client address may hold at most `per_address` connections to this worker: the next one is answered
    429 as soon as it sends anything, and closed. The address is the socket's peer. A trusted proxy's connections
    (FORWARDED_ALLOW_IPS, whose X-Forwarded-For uvicorn believes) are not limited: behind nginx every connection
    comes from nginx, and the limit per visitor is nginx's `limit_conn`."""

    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from app.config import get_settings

        settings = get_settings()
        self.header_timeout = settings.header_timeout_seconds
        self.per_address = settings.max_connections_per_address
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._counted_as: str | None = None  # the key this connection is counted under in CONNECTIONS
        self._over_limit = False
        self._answered = False
        CONNECTIONS.active = True

    def _count_connection(self) -> None:
        if self.client is None:  # a Unix socket: no address to count by
            return
        host = self.client[0]
        key = address_key(host)
        trusted = self.config.proxy_headers and is_trusted_proxy(host, self.config.forwarded_allow_ips)
        if self.per_address and not trusted and CONNECTIONS.count(key) >= self.per_address:
            self._over_limit = True
            CONNECTIONS.refused += 1
            return
        CONNECTIONS.opened(key)
        self._counted_as = key

    def _refuse_over_limit(self) -> None:
        """429 and Retry-After, then the end of our side; what the client still sends is read and dropped for
        LINGER_SECONDS before the connection is closed."""
        self._answered = True
        self._disarm_header_timer()
        if self.transport.is_closing():
            return
        body = _error_body("too_many_connections", TOO_MANY_CONNECTIONS_MESSAGE)
        self.transport.write(b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json; charset=utf-8\r\n"
                             b"retry-after: 5\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._header_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

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
        self._count_connection()
        self._arm_header_timer()  # an over-limit connection that sends nothing is closed when it runs out

    def data_received(self, data: bytes) -> None:
        if self._over_limit:
            if not self._answered:
                self._refuse_over_limit()
            return
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
        if self._counted_as is not None:
            CONNECTIONS.closed(self._counted_as)
            self._counted_as = None
        super().connection_lost(exc)


def _access(scope: dict[str, Any], status: int, started: float) -> None:
    path = scope.get("path", "")
    if path.startswith("/static/"):
        return
    client = scope.get("client") or ("-", 0)
    log.info("request", method=scope.get("method"), path=path, status=status,
             ms=round((time.perf_counter() - started) * 1000, 1), client=client[0])
