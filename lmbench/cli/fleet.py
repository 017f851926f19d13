"""Commands for a fleet of workers and its servers: worker, server, status, ui."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from lmbench.cli import (
    DevicesOpt,
    QuietOpt,
    SetOpt,
    StorageOpt,
    UriOpt,
    _setup_logging,
    app,
    user_errors,
)


@app.command()
@user_errors
def worker(
    spec: Annotated[Path | None, typer.Argument(help="Spec to use instead of the one the experiment stored.")] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", "-e", help="Experiment whose studies to join (default: the spec's).")] = None,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
    devices: DevicesOpt = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes (default: one per device).")] = None,
    max_trials: Annotated[int | None, typer.Option("--max-trials", help="Stop after this many trials.")] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the experiment's studies to appear.")] = 600.0,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Join an experiment's studies (e.g. from another machine) and run trials until they are done."""
    from lmbench.errors import SpecError
    from lmbench.signals import TERMINATED_EXIT, Terminated
    from lmbench.tuning.workers import join

    _setup_logging(quiet)
    for name, value in (("--workers", workers), ("--max-trials", max_trials)):
        if value is not None and value < 1:
            raise SpecError(name, f"must be at least 1, got {value}")
    spec_raw = None
    if spec is not None:
        from lmbench.config import dump_raw, load_spec

        loaded = load_spec(spec, set_)
        experiment, spec_raw = experiment or loaded.experiment_name, dump_raw(loaded)
    if not experiment:
        raise SpecError("--experiment", "name the experiment to join (or give its spec)")
    try:
        codes = join(experiment, storage, tracking_uri=tracking_uri, devices=devices, workers=workers,
                     max_trials=max_trials, overrides=[] if spec_raw else list(set_ or []), spec_raw=spec_raw,
                     wait_s=wait)
    except Terminated:
        typer.echo("worker stopped by SIGTERM; its trial is queued for retry", err=True)
        raise typer.Exit(TERMINATED_EXIT) from None
    if any(codes):
        typer.echo(f"error: worker exit codes {codes}", err=True)
        raise typer.Exit(TERMINATED_EXIT if TERMINATED_EXIT in codes else 1)

@app.command()
@user_errors
def server(
    host: Annotated[str, typer.Option("--host", help="Interface to bind; 0.0.0.0 lets other machines in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 5000,
    backend_store_uri: Annotated[str, typer.Option("--backend-store-uri", help="Where runs are stored: sqlite:///... or postgresql://...")] = "sqlite:///mlflow.db",
    artifacts_destination: Annotated[str, typer.Option("--artifacts-destination", help="Folder (or URI) for artifacts, served through the server.")] = "mlartifacts",
    workers: Annotated[int, typer.Option("--workers", help="Server processes.")] = 4,
    auth: Annotated[bool, typer.Option("--auth", help="MLflow's basic-auth app: every request needs a user and "
                                       "password (workers: MLFLOW_TRACKING_USERNAME / _PASSWORD).")] = False,
    admin: Annotated[str, typer.Option("--admin", help="--auth: the admin user, created on the first start.")] = "admin",
    admin_password_file: Annotated[Path | None, typer.Option(
        "--admin-password-file", help="--auth: a file whose first line is the admin's password "
        "(default: $LMBENCH_ADMIN_PASSWORD; never on the command line).")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Allow a non-loopback --host without --auth "
                                           "(anyone who reaches the port can read and change every run).")] = False,
) -> None:
    """Start an MLflow tracking server for lmbench workers: runs and (proxied) artifacts.

    A --host other than loopback needs --auth (or --insecure on a trusted network)."""
    from lmbench.tracking.server import admin_password, check_exposure, server_command, server_env

    check_exposure(host, auth, insecure)
    password = admin_password(admin_password_file) if auth else None
    store = backend_store_uri.removeprefix("sqlite:///")
    folder = Path(store).resolve().parent if backend_store_uri.startswith("sqlite:///") else Path.cwd()
    env = server_env(backend_store_uri, folder if auth else None, admin, password)
    cmd = server_command(host, port, backend_store_uri, artifacts_destination, workers, auth=auth)
    typer.echo(" ".join(cmd), err=True)  # no password in it: the store's and the admin's are in env
    os.execve(cmd[0], cmd, env)  # the server replaces this process: signals and exit code are its own

@app.command()
@user_errors
def status(
    experiment: Annotated[str, typer.Argument(help="Experiment (the spec's name or tracking.experiment).")],
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until the experiment is finished (Ctrl-C stops).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="--watch: seconds between refreshes.")] = 5.0,
    storage: StorageOpt = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Where an experiment stands: trials, running trials, final seeds and an ETA, from its stores.

    Per model: trials counted/total, complete, pruned, failed, running; the best val_loss so far
    and the final seed runs done. Every running trial with its host, pid, device and heartbeat age.
    """
    import time

    from rich.console import Console

    from lmbench.experiments.status import experiment_status
    from lmbench.report.terminal import print_status

    while True:
        current = experiment_status(experiment, storage=storage, tracking_uri=tracking_uri)
        if watch:
            Console().clear()
        print_status(current)
        if not watch or current.finished:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return

@app.command()
@user_errors
def ui(
    port: Annotated[int, typer.Option("--port", help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default loopback; others warn).")] = "127.0.0.1",
    tracking_uri: UriOpt = None,
) -> None:
    """Browse the runs in the MLflow UI on the project's tracking store, until Ctrl-C.

    Prints the runs page of the experiment with the newest run; binds loopback by default."""
    from lmbench.tracking.ui import serve

    code = serve(host, port, tracking_uri, echo=lambda line: typer.echo(line, err=line.startswith("warning")))
    raise typer.Exit(code)
