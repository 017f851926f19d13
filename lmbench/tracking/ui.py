"""`lmbench ui`: the MLflow UI on the project's tracking store, bound to loopback by default.

The server runs as a child process in its own process group, so Ctrl-C (or SIGTERM) on lmbench
stops the whole server - MLflow's CLI and the uvicorn process it starts - and nothing is left
listening on the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from lmbench import secrets
from lmbench.errors import UserError
from lmbench.signals import on_sigterm
from lmbench.tracking.alive import reap_dead_runs
from lmbench.tracking.server import LOOPBACK, server_command, server_env
from lmbench.tracking.tracker import resolve_uri

STOP_SECONDS = 10.0


def latest_experiment(uri: str) -> str | None:
    """The id of the experiment with the newest run (else the newest experiment), or None."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    reap_dead_runs(client)  # the UI should not show runs of dead processes as RUNNING
    experiments = [e for e in client.search_experiments(order_by=["creation_time DESC"]) if e.name != "Default"]
    if not experiments:
        return None
    runs = client.search_runs([e.experiment_id for e in experiments], order_by=["attributes.start_time DESC"],
                              max_results=1)
    return runs[0].info.experiment_id if runs else experiments[0].experiment_id


def runs_page(base: str, experiment_id: str | None) -> str:
    """The MLflow UI's runs table of an experiment (its home page when there is none)."""
    return f"{base}/#/experiments/{experiment_id}/runs" if experiment_id else base


def check_port(host: str, port: int) -> None:
    """A taken port is a user error now, not a stack trace from the server later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError("--port", f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(host: str = "127.0.0.1", port: int = 5000, tracking_uri: str | None = None,
          echo: Callable[[str], None] = print) -> int:
    """Run the MLflow UI until Ctrl-C / SIGTERM; returns the exit code to use."""

    uri = resolve_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise UserError("--tracking-uri", f"{uri} is already a tracking server: open it in a browser")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError("--tracking-uri", f"no MLflow store at {uri} (run lmbench here first, or pass --tracking-uri)")
    if not 0 < port < 65536:
        raise UserError("--port", f"must be in 1..65535, got {port}")
    if host not in LOOPBACK:
        echo(f"warning: --host {host} makes every run readable (and writable) by anyone who can reach this "
             "machine; MLflow has no authentication here")
    check_port(host, port)
    shown = f"[{host}]" if ":" in host else host
    page = runs_page(f"http://{shown}:{port}", latest_experiment(uri))
    proc = subprocess.Popen(server_command(host, port, uri, workers=1), env=server_env(uri), start_new_session=True)
    echo(f"MLflow UI: {page}  (store {secrets.redact(uri)}); Ctrl-C stops it")
    with on_sigterm(_interrupt):  # SIGTERM stops the server like Ctrl-C
        try:
            return proc.wait()
        except KeyboardInterrupt:
            stop(proc)
            echo("MLflow UI stopped")
            return 0


def _interrupt(signum: int) -> None:
    raise KeyboardInterrupt


def stop(proc: subprocess.Popen) -> None:
    """SIGINT to the server's process group, then SIGTERM, then SIGKILL, each after a grace period."""
    for sig, wait in ((signal.SIGINT, STOP_SECONDS), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # the group may outlive its leader (uvicorn); make sure it is gone too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        break
