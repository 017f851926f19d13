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
import sys
from collections.abc import Callable
from pathlib import Path

from lmbench.errors import UserError
from lmbench.tracking.tracker import DEFAULT_ARTIFACTS, resolve_uri

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STOP_SECONDS = 10.0


def server_command(uri: str, host: str, port: int) -> list[str]:
    """``mlflow server`` on a local store; artifacts are served from beside the SQLite file."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
           "--port", str(port), "--workers", "1"]
    if uri.startswith("sqlite:///"):

        cmd += ["--artifacts-destination", str(Path(uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS)]
    return cmd


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
    proc = subprocess.Popen(server_command(uri, host, port), start_new_session=True)
    echo(f"MLflow UI: http://{shown}:{port}  (store {uri}); Ctrl-C stops it")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        echo("MLflow UI stopped")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
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
