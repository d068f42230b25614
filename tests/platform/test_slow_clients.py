"""Oversize uploads and slow clients, with raw sockets against the real server: `zhenfeng serve` in a subprocess on a
free port (scripts.bench.server, as the benchmarks and the drills start it), with small limits so the tests are quick.

- a chunked body (no Content-Length) past ZF_MAX_BODY_BYTES: 413 with the Chinese message, connection closed;
- a body that stalls (ZF_BODY_TIMEOUT_SECONDS) or trickles past ZF_BODY_DEADLINE_SECONDS: 408, connection closed;
- headers that trickle past ZF_HEADER_TIMEOUT_SECONDS: 408; headers past 64 KB: 431;
- and meanwhile other clients are served as usual.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from scripts.bench.server import ZhenfengServer
from tests.support.web import TEST_SECRET

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
BODY_DEADLINE = 4.0
MAX_BODY = 64 * 1024
CJK = re.compile(r"[\u4e00-\u9fff]")
SLACK = 2.5  # seconds a loaded 2-core machine may add to a limit


@contextmanager
def running_server(var: Path, database_url: str, **settings: object) -> Iterator[str]:
    """`zhenfeng serve` (one worker) on a free port of 127.0.0.1 with these ZF_ settings, until the block ends: the
    benchmarks' ZhenfengServer, its output in var/serve.log (shown if it does not start)."""
    env = {"ZF_SECRET_KEY": TEST_SECRET, "ZF_LOG_LEVEL": "ERROR", **{f"ZF_{k.upper()}": str(v) for k, v in settings.items()}}
    with ZhenfengServer(database_url, 1, var, settings=env) as server:
        yield server.url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[str]:
    var = tmp_path_factory.mktemp("slow-clients")
    shutil.copyfile(_sqlite_template, var / "zhenfeng.db")
    with running_server(var, f"sqlite:///{var / 'zhenfeng.db'}", max_body_bytes=MAX_BODY,
                        header_timeout_seconds=HEADER_TIMEOUT, body_timeout_seconds=BODY_TIMEOUT,
                        body_deadline_seconds=BODY_DEADLINE) as url:
        yield url


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def connect(url: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", _port(url)), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def healthy(url: str) -> float:
    """Another client's request is served meanwhile: returns how long it took."""
    started = time.monotonic()
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as r:
        assert r.status == 200
    return time.monotonic() - started


def read_response(s: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, closed): reads one response, then whether the server closed the connection."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = s.recv(65536)
        assert chunk
        body += chunk
    try:
        s.settimeout(2)
        closed = s.recv(1) == b""
    except TimeoutError:
        closed = False
    except OSError:  # reset: closed with part of the request unread
        closed = True
    return status, headers, body, closed


def error_of(body: bytes) -> dict[str, object]:
    err = json.loads(body.decode())["error"]
    assert CJK.search(str(err["message"])), err
    return err  # type: ignore[no-any-return]


POST_HEAD = ("POST /api/v1/townships HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
             "{length}\r\n")


def test_oversize_chunked_upload_is_refused_with_413_and_others_are_served(server: str) -> None:
    s = connect(server)
    s.sendall(POST_HEAD.format(length="Transfer-Encoding: chunked\r\n").encode())
    piece = b"x" * 8192
    s.settimeout(0.005)
    answer = b""
    started = time.monotonic()
    for _ in range(20 * MAX_BODY // len(piece)):  # no Content-Length: the server learns the size as it reads
        try:
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (BrokenPipeError, ConnectionResetError):
            break
        except TimeoutError:
            pass
        try:
            answer += s.recv(65536)
            if b"\r\n\r\n" in answer:
                break
        except TimeoutError:
            pass
    s.settimeout(5)
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(65536)
        assert chunk, answer
        answer += chunk
    assert time.monotonic() - started < 5
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"connection: close" in head.lower()
    while True:
        try:
            json.loads(body)
            break
        except ValueError:
            chunk = s.recv(65536)
            assert chunk, f"closed before the whole answer: {body!r}"
            body += chunk
    assert "上传内容过大" in str(error_of(body)["message"])
    s.close()
    assert healthy(server) < 2


def test_stalled_body_gets_408_within_the_body_timeout(server: str) -> None:
    s = connect(server)
    started = time.monotonic()
    s.sendall(POST_HEAD.format(length="Content-Length: 1000\r\n").encode() + b'{"code": "34')
    assert healthy(server) < 1  # served while this body waits
    status, headers, body, closed = read_response(s, BODY_TIMEOUT + BODY_DEADLINE + SLACK)
    took = time.monotonic() - started
    assert status == 408, body
    assert "上传太慢" in str(error_of(body)["message"])
    assert closed and headers.get("connection") == "close"
    assert BODY_TIMEOUT - 0.2 <= took <= BODY_TIMEOUT + SLACK, took


def test_body_trickled_within_the_pause_but_past_the_deadline_gets_408(server: str) -> None:
    s = connect(server)
    started = time.monotonic()
    s.sendall(POST_HEAD.format(length="Content-Length: 1000\r\n").encode())
    status = None
    s.settimeout(BODY_TIMEOUT / 3)
    while time.monotonic() - started < BODY_DEADLINE + SLACK:
        try:
            s.sendall(b" ")  # one byte, well within the pause allowed between two pieces
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            if s.recv(1, socket.MSG_PEEK):
                break
        except TimeoutError:
            pass
        if time.monotonic() - started > 1:
            assert healthy(server) < 1
    status, _, body, closed = read_response(s, 5)
    took = time.monotonic() - started
    assert status == 408, body
    assert "上传太慢" in str(error_of(body)["message"]) and closed
    assert BODY_DEADLINE - 0.2 <= took <= BODY_DEADLINE + SLACK, took


def test_headers_trickled_past_the_header_timeout_get_408(server: str) -> None:
    s = connect(server)
    started = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
    s.settimeout(0.3)
    answer = b""
    while time.monotonic() - started < HEADER_TIMEOUT + SLACK:
        try:
            s.sendall(b"X")  # a header line that never ends
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            answer = s.recv(65536)
            break
        except TimeoutError:
            pass
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert HEADER_TIMEOUT - 0.2 <= took <= HEADER_TIMEOUT + SLACK, took
    assert error_of(answer.split(b"\r\n\r\n", 1)[1])["code"] == "timeout"
    assert healthy(server) < 1


def test_endless_headers_get_431(server: str) -> None:
    s = connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")
    answer = b""
    try:
        for i in range(200):
            s.sendall(b"X-Filler-%d: %s\r\n" % (i, b"y" * 1000))
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, _, body, closed = read_response(s, 5) if not answer else (0, {}, b"", True)
    assert status == 431, body
    assert error_of(body)["code"] == "headers_too_large" and closed
    assert healthy(server) < 1


def test_a_kept_alive_connection_is_timed_again_for_its_next_request(server: str) -> None:
    s = connect(server)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
    status, _, _, _ = read_response_keep(s)
    assert status == 200
    started = time.monotonic()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: te")  # the next request's headers, never finished
    s.settimeout(HEADER_TIMEOUT + SLACK)
    answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - started <= HEADER_TIMEOUT + SLACK


def read_response_keep(s: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    s.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body, False


# ---- Slow clients must not stop everyone else: the admission slots, the connections per address, /healthz --------
# The incident: 22 connections each sending a login form one byte every five seconds held all 20 admission slots of
# a worker (a request took its slot before its body had arrived), so every page answered 503 while /healthz said 200.
# Here the same with shorter times: a byte a second, a pause of at most BODY_PAUSE seconds allowed.

BODY_PAUSE = 5.0
QUEUE_WAIT = 3.0
PER_ADDRESS = 8
UPLOADS = 4
USER, PASSWORD = "slowtest", "Slow-pass-2026"
FORM_HEAD = ("POST /login HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\n"
             "Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n")


@contextmanager
def _database(var: Path, template: Path) -> Iterator[str]:
    """A database of its own for a server (SQLite file, or a new PostgreSQL database when ZF_TEST_DATABASE_URL is
    set), holding one account that the polite client logs in with."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from app import migrate
    from app.db import Database
    from tests.support.db import PG_URL
    from tests.support.factories import make_user

    admin = None
    if PG_URL:
        name = f"zf_slow_{os.getpid()}_{var.name.replace('-', '_')}"[:60]
        admin = create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
    else:
        shutil.copyfile(template, var / "zhenfeng.db")
        url = f"sqlite:///{var / 'zhenfeng.db'}"
    db = Database(url)
    with db.write_txn() as session:
        make_user(session, USER, PASSWORD)
    db.dispose()
    try:
        yield url
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[str]:
    """A server with the default 20 admission slots and short waits: QUEUE_WAIT for a slot, BODY_PAUSE inside a
    body, at most PER_ADDRESS connections from one address and UPLOADS large bodies arriving in the slots."""
    var = tmp_path_factory.mktemp("guarded")
    with _database(var, _sqlite_template) as url, running_server(
            var, url, queue_wait_seconds=QUEUE_WAIT, body_timeout_seconds=BODY_PAUSE, body_deadline_seconds=120,
            header_timeout_seconds=BODY_PAUSE, max_connections_per_address=PER_ADDRESS, max_uploads=UPLOADS,
            max_inflight=20) as server_url:
        yield server_url


def connect_from(url: str, source: str) -> socket.socket:
    """A connection to the server from this local address (any of 127.0.0.0/8 is this machine)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(15)
    s.connect(("127.0.0.1", _port(url)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def exchange(url: str, source: str, request: bytes, timeout: float = 20) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own (Connection: close), the whole answer read to its end."""
    s = connect_from(url, source)
    s.settimeout(timeout)
    try:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    assert b"\r\n\r\n" in data, f"no answer: {data!r}"
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = headers[k.strip().lower()] + "\n" + v.strip() if k.strip().lower() in headers \
            else v.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return int(lines[0].split()[1]), headers, body


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, data = data.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if not size:
            return out
        out, data = out + data[:size], data[size + 2:]


def get(url: str, path: str, source: str = "127.0.0.2") -> tuple[int, dict[str, str], bytes]:
    return exchange(url, source, f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())


def polite_login(url: str, source: str = "127.0.0.2") -> None:
    """A villager opens the login page and signs in: the page answers 200, the sign-in 303 (not 503)."""
    status, headers, body = get(url, "/login", source)
    assert status == 200, (status, body[:300])
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body)
    cookie = re.search(r"zf_csrf=([^;]+)", headers.get("set-cookie", ""))
    assert token and cookie, headers
    form = f"login={USER}&password={PASSWORD}&csrf_token={token.group(1).decode()}&next=%2F".encode()
    status, headers, body = exchange(url, source, (
        f"POST /login HTTP/1.1\r\nHost: test\r\nConnection: close\r\nCookie: zf_csrf={cookie.group(1)}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n").encode() + form)
    assert status == 303, (status, body[:300])
    assert "zf_session=" in headers.get("set-cookie", "")


def health(url: str, query: str = "") -> tuple[int, dict[str, object]]:
    status, _, body = get(url, f"/healthz{query}")
    return status, json.loads(body)


class Trickle:
    """Connections that each send a form's headers (Content-Length `length`, Expect: 100-continue), wait for the
    server's first answer, then send their body one byte every `every` seconds from a background thread, until the
    block ends. `first` holds each connection's first answer: "100" once the server reads the body (the moment it
    has started on the request: that is why these send Expect), or the status line it refused them with."""

    def __init__(self, url: str, sources: list[str], length: int = 200, every: float = 1.0) -> None:
        self.url, self.sources, self.length, self.every = url, sources, length, every
        self.sockets: list[socket.socket] = []
        self.first: list[bytes] = []
        self.rounds = 0  # bytes sent on each connection so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Trickle:
        for source in self.sources:
            s = connect_from(self.url, source)
            s.sendall(FORM_HEAD.format(length=self.length).encode())
            self.sockets.append(s)
        for s in self.sockets:  # the server answers each within QUEUE_WAIT (refused) or at once (100 Continue)
            s.settimeout(QUEUE_WAIT + 15)
            answer = s.recv(65536)
            assert answer.startswith(b"HTTP/1.1 "), answer
            self.first.append(answer.split(b" ", 2)[1])
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for s in self.sockets:
                try:
                    s.sendall(b"x")
                except OSError:
                    pass  # refused and closed by the server
            self.rounds += 1

    def wait_rounds(self, n: int) -> None:
        deadline = time.monotonic() + n * self.every + 15
        while self.rounds < n:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def admitted(self) -> int:
        return self.first.count(b"100")

    def close(self, index: int) -> None:
        self.sockets[index].close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for s in self.sockets:
            s.close()


def test_slowly_sent_login_forms_hold_no_admission_slot(guarded: str) -> None:
    """22 connections (from 22 addresses, so that no per-address limit helps) trickle a login form; meanwhile a
    villager's login page and sign-in are served, and /healthz counts the 22 as bodies still arriving, outside the
    slots."""
    sources = [f"127.0.1.{i}" for i in range(10, 32)]
    with Trickle(guarded, sources) as trickle:
        trickle.wait_rounds(2)  # a few bytes of each body in, the rest still to come
        polite_login(guarded)
        assert trickle.admitted() == 22  # the server is reading each body
        status, body = health(guarded)
        assert status == 200, body
        admission = body["admission"]
        assert isinstance(admission, dict)
        assert admission["receiving"] == 22 and admission["in_use"] == 0, admission
        assert body["saturated"] is False


def test_a_small_body_sent_slowly_is_answered_when_it_is_complete(guarded: str) -> None:
    """The body read before the request takes its slot is handed to the application whole: a login form sent in
    pieces, a second apart, signs in."""
    status, headers, body = get(guarded, "/login", "127.0.0.4")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body)
    cookie = re.search(r"zf_csrf=([^;]+)", headers.get("set-cookie", ""))
    assert status == 200 and token and cookie
    form = f"login={USER}&password={PASSWORD}&csrf_token={token.group(1).decode()}&next=%2F".encode()
    s = connect_from(guarded, "127.0.0.4")
    s.sendall((f"POST /login HTTP/1.1\r\nHost: test\r\nConnection: close\r\nCookie: zf_csrf={cookie.group(1)}\r\n"
               f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n").encode())
    for piece in (form[:5], form[5:20], form[20:]):
        time.sleep(1)
        s.sendall(piece)
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
    s.close()
    assert answer.startswith(b"HTTP/1.1 303"), answer[:300]
    assert b"zf_session=" in answer


def test_large_uploads_arriving_slowly_hold_at_most_their_share_of_slots(guarded: str) -> None:
    """22 slow uploads (bodies over 64 KB, which are not read ahead): UPLOADS of them get a slot and may go on
    arriving, the others are refused with 503 after QUEUE_WAIT, and a villager's pages are served meanwhile."""
    sources = [f"127.0.2.{i}" for i in range(10, 32)]
    with Trickle(guarded, sources, length=200_000) as trickle:
        polite_login(guarded)
        assert trickle.admitted() == UPLOADS, trickle.first
        assert trickle.first.count(b"503") == 22 - UPLOADS, trickle.first
        status, body = health(guarded)
        assert status == 200, body
        admission = body["admission"]
        assert isinstance(admission, dict)
        assert admission["uploads"] == UPLOADS and admission["in_use"] == UPLOADS, admission


def test_connections_beyond_the_per_address_limit_are_refused_and_other_addresses_still_get_in(guarded: str) -> None:
    with Trickle(guarded, ["127.0.0.3"] * PER_ADDRESS) as trickle:
        assert trickle.admitted() == PER_ADDRESS
        status, headers, body = get(guarded, "/login", "127.0.0.3")  # one more from the same address
        assert status == 429, (status, body[:300])
        assert headers.get("connection") == "close" and headers.get("retry-after")
        assert error_of(body)["code"] == "too_many_connections"
        assert get(guarded, "/login", "127.0.0.2")[0] == 200  # another address
        _, body = health(guarded)
        connections = body["connections"]
        assert isinstance(connections, dict)
        assert connections["refused"] >= 1 and connections["open"] >= PER_ADDRESS, connections
        assert connections["per_address_limit"] == PER_ADDRESS
        trickle.close(0)  # one of them goes away: the address may open one again
        deadline = time.monotonic() + 10
        while (status := get(guarded, "/login", "127.0.0.3")[0]) == 429 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert status == 200


def test_the_trusted_proxy_address_has_no_connection_limit(guarded: str) -> None:
    """Behind nginx every connection comes from nginx's address (127.0.0.1, trusted for X-Forwarded-For): the
    limit per client belongs to nginx there (limit_conn), and the app does not count them."""
    with Trickle(guarded, ["127.0.0.1"] * (PER_ADDRESS + 2)) as trickle:
        assert trickle.admitted() == PER_ADDRESS + 2
        assert get(guarded, "/login", "127.0.0.1")[0] == 200


@pytest.fixture
def tight(tmp_path: Path, _sqlite_template: Path) -> Iterator[str]:
    """Two slots, both of which uploads may hold: a worker that two slow uploads fill."""
    with _database(tmp_path, _sqlite_template) as url, running_server(
            tmp_path, url, max_inflight=2, max_uploads=2, queue_wait_seconds=30, body_timeout_seconds=BODY_PAUSE,
            body_deadline_seconds=120) as server_url:
        yield server_url


def test_healthz_says_when_the_worker_is_saturated(tight: str) -> None:
    """/healthz stays 200 (the worker is alive: a liveness check must not kill it) and says `saturated` with its
    numbers; /healthz?ready=1 answers 503 while every slot is taken (a load balancer sends elsewhere), 200 again
    once a slot is free."""
    status, body = health(tight)
    assert status == 200 and body["saturated"] is False
    assert health(tight, "?ready=1")[0] == 200
    waiting: list[int] = []
    with Trickle(tight, ["127.0.0.2", "127.0.0.3"], length=200_000) as trickle:
        assert trickle.admitted() == 2
        status, body = health(tight)
        assert status == 200 and body["saturated"] is True, body
        assert body["admission"] == {**body["admission"], "slots": 2, "in_use": 2}  # type: ignore[dict-item]
        status, body = health(tight, "?ready=1")
        assert status == 503 and body["saturated"] is True
        assert CJK.search(str(body["message"]))
        later = threading.Thread(target=lambda: waiting.append(get(tight, "/login", "127.0.0.4")[0]))
        later.start()  # a third request waits for a slot
        deadline = time.monotonic() + 15
        while health(tight)[1]["admission"]["waiting"] != 1:  # type: ignore[index]
            assert time.monotonic() < deadline, "the waiting request was not counted"
            time.sleep(0.2)
    later.join(timeout=20)
    assert waiting == [200]  # the slots came free and it was served
    deadline = time.monotonic() + 10
    while (ready := health(tight, "?ready=1"))[0] != 200:
        assert time.monotonic() < deadline, ready
        time.sleep(0.2)
    assert ready[1]["saturated"] is False
