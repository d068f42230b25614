"""Oversize uploads and slow clients, with raw sockets against the real server: `zhenfeng serve` in a subprocess on a
free port (scripts.bench.server, as the benchmarks and the drills start it), with small limits so the tests are quick.

- a chunked body (no Content-Length) past ZF_MAX_BODY_BYTES: 413 with the Chinese message, connection closed;
- a body that stalls (ZF_BODY_TIMEOUT_SECONDS) or trickles past ZF_BODY_DEADLINE_SECONDS: 408, connection closed;
- headers that trickle past ZF_HEADER_TIMEOUT_SECONDS: 408; headers past 64 KB: 431;
- and meanwhile other clients are served as usual.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.bench.server import ZhenfengServer
from tests.conftest import TEST_SECRET

HEADER_TIMEOUT = 1.5
BODY_TIMEOUT = 1.5
BODY_DEADLINE = 4.0
MAX_BODY = 64 * 1024
CJK = re.compile(r"[\u4e00-\u9fff]")
SLACK = 2.5  # seconds a loaded 2-core machine may add to a limit


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> Iterator[str]:
    var = tmp_path_factory.mktemp("slow-clients")
    shutil.copyfile(_sqlite_template, var / "zhenfeng.db")
    settings = {"ZF_SECRET_KEY": TEST_SECRET, "ZF_LOG_LEVEL": "ERROR", "ZF_MAX_BODY_BYTES": str(MAX_BODY),
                "ZF_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT), "ZF_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
                "ZF_BODY_DEADLINE_SECONDS": str(BODY_DEADLINE)}
    with ZhenfengServer(f"sqlite:///{var / 'zhenfeng.db'}", 1, var, settings=settings) as live:
        yield live.url


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
            body += s.recv(65536)
            json.loads(body)
            break
        except ValueError:
            continue
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
