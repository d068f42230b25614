"""The real service under uvicorn in a background thread, on a free local port: for browser tests and for tests
that need real concurrent HTTP clients (the TestClient runs one request at a time)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from app.config import Settings
from app.main import create_app

STARTUP_TIMEOUT_S = 20.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    settings: Settings


def _wait_healthy(url: str, thread: threading.Thread, server: uvicorn.Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped during startup (see the captured log above)")
        if server.started:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError as e:  # not listening yet, or 503 while the database is not reachable
                last_error = e
        time.sleep(0.05)
    raise RuntimeError(f"service at {url} did not answer /healthz within {STARTUP_TIMEOUT_S:.0f} s: {last_error}")


@contextmanager
def serve(settings: Settings) -> Iterator[LiveServer]:
    """`create_app(settings)` served on http://127.0.0.1:<free port> until the block ends."""
    app = create_app(settings)
    port = _free_port()
    config = uvicorn.Config(app=app, host="127.0.0.1", port=port, log_config=None, log_level="warning",
                            access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, thread, server)
        yield LiveServer(url=url, settings=settings)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():  # a connection kept open: stop waiting for it
            server.force_exit = True
            thread.join(timeout=5)
        app.state.db.dispose()
    assert not thread.is_alive(), "uvicorn did not stop"
