"""`zhenfeng serve` in a subprocess on a free local port (ZhenfengServer), what its processes hold, and pgbench
against the PostgreSQL server: for store_redeem, scripts/rush.py and tests/platform/test_slow_clients.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from scripts.bench.common import REDEEM_SECRET, ROOT

PGBENCH_SCALE = 16  # pgbench's scale factor: one branch row per client, as its documentation advises


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def connections(pids: list[int], port: int) -> list[int]:
    """How many established TCP connections to `port` each process holds (the keep-alive connections it serves)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01":
                inodes.add(f[9])
    out = []
    for pid in pids:
        n = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                n += os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes
            except OSError:
                pass
        out.append(n)
    return out


class ZhenfengServer:
    """`zhenfeng serve` in a subprocess on a free local port, with the given database and workers; its log (one JSON
    line per request, as deployed) goes to a file."""

    def __init__(self, url: str, workers: int, var: Path, port: int | None = None,
                 settings: dict[str, str] | None = None) -> None:
        """On `port` when given (a server started again on its address; the log is then added to), else a free
        one. The server sees none of this process's ZF_ variables, only its own and `settings` (more ZF_ variables,
        which win)."""
        self.port = port or int(free_port())
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = var / "serve.log"
        exe = Path(sys.executable).parent / "zhenfeng"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "app"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZF_")}
        env.update(ZF_DATABASE_URL=url, ZF_SECRET_KEY=REDEEM_SECRET, ZF_VAR_DIR=str(var), ZF_WORKERS=str(workers))
        env.update(settings or {})
        self.command = " ".join(["zhenfeng", "serve", "--host", "127.0.0.1", "--port", str(self.port)])
        with open(self.log, "ab" if port else "wb") as out:
            self.proc = subprocess.Popen([*cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port)], cwd=ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT)
        self.workers = workers
        self._wait()

    def _wait(self) -> None:
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zhenfeng serve stopped at startup:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200 and len(self.pids) == self.workers:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"zhenfeng serve did not answer /healthz within 60 s:\n{self.log.read_text()[-3000:]}")

    @property
    def pids(self) -> list[int]:
        """The processes serving: the one process with one worker; the workers with more (uvicorn's supervisor
        waits)."""
        if self.workers == 1:
            return [self.proc.pid]
        return [p for p in _children(self.proc.pid)  # not multiprocessing's resource tracker
                if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> ZhenfengServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_pgbench(url: str, clients: int, seconds: int, workdir: Path) -> tuple[float, list[float], str]:
    """`pgbench -i -s PGBENCH_SCALE` into a scratch database on the server of `url`, then `pgbench -b tpcb-like -c
    clients -j 2 -T seconds` there; the scratch database is dropped. Returns (tps, latencies in ms, the command)."""
    import shutil

    exe = shutil.which("pgbench")
    if exe is None:
        raise RuntimeError("pgbench is missing: apt-get install postgresql-client")
    base = make_url(url)
    name = "zf_bench_pgbench"
    admin = create_engine(base.set(drivername="postgresql+psycopg", database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    where = ["-h", base.host or "127.0.0.1", "-p", str(base.port or 5432), "-U", base.username or "postgres"]
    env = {**os.environ, **({"PGPASSWORD": base.password} if base.password else {})}
    try:
        subprocess.run([exe, "-i", "-q", "-s", str(PGBENCH_SCALE), *where, name], check=True, env=env,
                       capture_output=True, text=True)
        logs = workdir / "pgbench"
        logs.mkdir(exist_ok=True)
        run = ["pgbench", "-b", "tpcb-like", "-c", str(clients), "-j", "2", "-T", str(seconds)]
        done = subprocess.run([exe, *run[1:], "-l", "--log-prefix", str(logs / "tx"), *where, name], check=True,
                              env=env, capture_output=True, text=True, cwd=workdir)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    tps = next(float(line.split("=")[1].split()[0]) for line in done.stdout.splitlines() if line.startswith("tps ="))
    latencies = [int(line.split()[2]) / 1000 for f in logs.glob("tx*") for line in f.read_text().splitlines()]
    return tps, latencies, " ".join(run)
