"""`lmbench ui`: the real MLflow server on a free loopback port, its REST API, and a clean SIGINT stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.tracking.tracker import Tracker

START_SECONDS = 120  # the server imports MLflow's whole app: slow on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, path: str, body: dict | None = None) -> dict:
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_store() -> str:
    """A real SQLite store in the working directory with one finished run."""
    t = Tracker("ui-exp")
    run_id = t.start("a run", {"model.arch": "gru"}, {"lmbench.kind": "train"})
    t.log_metrics({"val_loss": 2.5}, step=1, synchronous=True)
    t.finish("FINISHED")
    return run_id


@pytest.mark.slow
def test_ui_serves_the_store_on_loopback_and_stops_on_sigint(tmp_path):
    run_id = make_store()
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "ui.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "lmbench.cli", "ui", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env=env, cwd=Path.cwd())
    try:
        deadline = time.monotonic() + START_SECONDS
        exp = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                exp = api(port, "experiments/get-by-name?" + urllib.parse.urlencode({"experiment_name": "ui-exp"}))
                break
            except OSError:
                time.sleep(0.5)
        assert exp is not None, Path(log.name).read_text()
        runs = api(port, "runs/search", {"experiment_ids": [exp["experiment"]["experiment_id"]]})["runs"]
        assert [r["info"]["run_id"] for r in runs] == [run_id]
        assert runs[0]["info"]["status"] == "FINISHED"
        # bound to loopback only: no other local address answers
        server = [c for c in Path("/proc/net/tcp").read_text().splitlines() if f":{port:04X} " in c and " 0A " in c]
        assert server and all(line.split()[1].startswith("0100007F:") for line in server)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert not listening(port)  # the server's whole process group is gone
        out = Path(log.name).read_text()
        assert f"http://127.0.0.1:{port}" in out and "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ui_warns_on_a_public_host_and_rejects_a_taken_port():
    make_store()
    with socket.socket() as s:  # occupy a port on every interface
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--port", str(port)])
    assert r.exit_code == 2
    assert "warning: --host 0.0.0.0" in r.output and "error: --port" in r.output


def test_ui_without_a_store_is_a_user_error(tmp_path):
    r = CliRunner().invoke(app, ["ui", "--port", str(free_port())])
    assert r.exit_code == 2 and "no MLflow store" in r.output
    assert not Path("mlflow.db").exists()
