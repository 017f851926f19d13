"""Real services for the distribution and fault tests: a fresh PostgreSQL database, an MLflow
tracking server subprocess on a free loopback port, and lmbench CLI processes.

Imported by the tuning and tracking tests that start services (not a conftest: only they need it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import need

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}

# Trials of a few optimizer steps on a tiny corpus: what is tested is the machinery around them.
TINY = ["--set", "model.preset=small", "--set", "search.budget=null", "--set", "train.budget={steps: 4}",
        "--set", "train.batch_size=4", "--set", "data.seq_len=16", "--set", "data.size=4000",
        "--set", "train.eval_interval=4", "--set", "train.eval_tokens=200", "--set", "train.final_eval_tokens=400",
        "--set", "train.log_interval=2", "--set", "search.sampler=random", "--set", "search.pruner=none",
        "--set", "train.device=cpu"]
# Liveness settings that make a dead worker visible within seconds.
FAST_LIVENESS = ["--set", "search.heartbeat_interval=1", "--set", "search.grace_period=4"]


def _pg_connect(dbname: str = PG["dbname"]):
    import psycopg

    # autocommit: CREATE/DROP DATABASE cannot run inside a transaction
    return psycopg.connect(host=PG["host"], port=PG["port"], user=PG["user"], dbname=dbname, connect_timeout=3,
                           autocommit=True)


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for this test (dropped afterwards); its SQLAlchemy URL."""
    try:
        admin = _pg_connect()
    except Exception as e:  # noqa: BLE001 - absent server, refused auth: skip (or fail under CI)
        need(False, f"PostgreSQL on {PG['host']}:{PG['port']} (user {PG['user']}, database {PG['dbname']}): {e}")
    name = f"lmbench_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env() -> dict[str, str]:
    # one torch thread per process: the tests start several on two cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def lmbench(*args: str, log: Path | None = None, group: bool = False,
            env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``lmbench ARGS`` as its own process (its output in ``log``); ``group``: in a new
    process group, so that everything it starts can be signalled at once; ``env``: added to its
    environment (e.g. credentials)."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "lmbench.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                            env={**cli_env(), **(env or {})}, start_new_session=group)
    proc.log = log  # so a failing test can show what the process printed
    return proc


class MlflowServer:
    """``lmbench server`` on a free loopback port, with a SQLite backend in ``root``; restartable.
    ``admin_password``: with ``--auth``, the admin's password given in the environment."""

    def __init__(self, root: Path, admin_password: str | None = None):
        self.root, self.port = root, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.admin_password = admin_password

    def start(self, timeout: float = 90.0) -> None:
        auth = ["--auth"] if self.admin_password else []
        self.proc = lmbench("server", "--port", str(self.port), "--workers", "1", *auth,
                            "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
                            "--artifacts-destination", str(self.root / "server-artifacts"),
                            log=self.root / f"server-{time.time():.0f}.log", group=True,
                            env={"LMBENCH_ADMIN_PASSWORD": self.admin_password} if self.admin_password else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mlflow server exited: {self.log()}"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server did not come up in {timeout} s: {self.log()}")

    def stop(self) -> None:
        """Stop the server and the uvicorn processes it started (its whole process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _listening(self.port):
            time.sleep(0.2)
        self.proc = None

    def log(self) -> str:
        logs = sorted(self.root.glob("server-*.log"))
        return logs[-1].read_text()[-3000:] if logs else ""


@pytest.fixture
def mlflow_server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    server.stop()


def wait_until(cond, timeout: float, what: str, procs: list[subprocess.Popen] = ()) -> None:
    """Poll ``cond()`` until true; fail naming ``what`` (with the procs' exit codes) on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    # the last output of each process that gave up says why
    logs = [f"--- {p.log.name}:\n{p.log.read_text()[-3000:]}" for p in procs
            if p.poll() is not None and getattr(p, "log", None) and p.log.is_file()]
    raise AssertionError("\n".join([f"timed out after {timeout} s waiting for {what}; "
                                     f"exit codes {[p.poll() for p in procs]}", *logs]))


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
