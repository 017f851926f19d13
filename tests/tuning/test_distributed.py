"""Scale-out: many `lmbench worker` processes on one experiment, on PostgreSQL and on the local
journal storage, with a real MLflow tracking server; `--workers 0` drivers; `lmbench worker` input.

Every process here is a real CLI process; trials are a few optimizer steps so that the machinery
around them (queue, locks, heartbeats, tracking) is what is exercised.
"""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import psutil
import pytest
from _services import TINY, lmbench, mlflow_server, pg_url, stop_all  # noqa: F401 - fixtures
from mlflow import MlflowClient
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.storage import default_storage_path, open_storage, study_name

# 8 workers x 5 trials each: the 8 x 25 load is a benchmark (benchmarks/bench_load.py, `make bench`)
WORKERS, TRIALS = 8, 40
# what a storage or store under contention would print
CONTENTION = re.compile(r"database is locked|IntegrityError|deadlock|could not serialize|Traceback", re.I)


def runs_by_kind(tracking_uri: str, experiment: str) -> dict[str, list]:
    c = MlflowClient(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    out: dict[str, list] = {}
    for r in c.search_runs([exp.experiment_id], max_results=5000):
        out.setdefault(r.data.tags.get("lmbench.kind"), []).append(r)
    return out


def load_study(storage_url: str | None, experiment: str, arch: str):
    storage = open_storage(storage_url, experiment)
    return optuna.load_study(study_name=study_name(experiment, arch), storage=storage)


def run_load(work: Path, storage: list[str], tracking: list[str]) -> list[str]:
    """A `tune --workers 0` driver and WORKERS `lmbench worker`s; returns every process's output."""
    driver = lmbench("tune", "--model", "rnn", "--trials", str(TRIALS), "--workers", "0", "--set", "name=load",
                     *TINY, *storage, *tracking, log=work / "driver.log")
    # the workers get only the names and URLs: spec and tracking URI come from the study
    workers = [lmbench("worker", "--experiment", "load", *storage, "--quiet", log=work / f"worker{i}.log")
               for i in range(WORKERS)]
    try:
        assert driver.wait(timeout=400) == 0, (work / "driver.log").read_text()[-3000:]
        codes = [w.wait(timeout=60) for w in workers]
    finally:
        stop_all([driver, *workers])
    logs = [(work / f"worker{i}.log").read_text() for i in range(WORKERS)] + [(work / "driver.log").read_text()]
    assert codes == [0] * WORKERS, logs
    return logs


def check_load(storage_url: str | None, tracking_uri: str, logs: list[str]) -> None:
    for text in logs:
        assert not CONTENTION.search(text), text[-3000:]
    trials = load_study(storage_url, "load", "rnn").get_trials(deepcopy=False)
    assert len(trials) == TRIALS and sorted(t.number for t in trials) == list(range(TRIALS))
    assert all(t.state.name == "COMPLETE" for t in trials)
    kinds = runs_by_kind(tracking_uri, "load")
    (root,) = kinds["tune"]
    assert root.info.status == "FINISHED"
    runs = kinds["trial"]
    numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in runs)
    assert numbers == list(range(TRIALS)), "every trial has exactly one MLflow run"
    assert all(r.data.tags["mlflow.parentRunId"] == root.info.run_id for r in runs)
    assert all(r.info.status == "FINISHED" and r.data.tags["optuna_state"] == "COMPLETE" for r in runs)
    assert len({r.data.tags["lmbench.worker_pid"] for r in runs}) > 1, "the trials were shared by the workers"


@pytest.mark.slow
def test_load_postgresql_and_tracking_server(pg_url, mlflow_server, isolated):  # noqa: F811
    logs = run_load(isolated, ["--storage", pg_url], ["--tracking-uri", mlflow_server.uri])
    check_load(pg_url, mlflow_server.uri, logs)
    # the server is MLflow's app and nothing more: none of MLflow 3's job consumers beside it
    server = psutil.Process(mlflow_server.proc.pid).children(recursive=True)
    commands = [" ".join(p.cmdline()) for p in server]
    assert any("uvicorn" in c for c in commands), commands
    assert not any("huey" in c for c in commands), commands


@pytest.mark.slow
def test_load_local_journal_storage(isolated):
    logs = run_load(isolated, [], [])
    assert default_storage_path("load").is_file()
    check_load(None, resolve_uri(None), logs)


@pytest.mark.slow
def test_compare_with_workers_0_runs_the_final_stage_after_remote_trials(isolated):
    driver = lmbench("compare", "--models", "rnn,gru", "--trials", "2", "--seeds", "1", "--workers", "0",
                     "--set", "name=remote", *TINY, log=isolated / "driver.log")
    worker = lmbench("worker", "--experiment", "remote", log=isolated / "worker.log")
    try:
        assert driver.wait(timeout=300) == 0, (isolated / "driver.log").read_text()[-3000:]
        assert worker.wait(timeout=60) == 0, (isolated / "worker.log").read_text()[-3000:]
    finally:
        stop_all([driver, worker])
    assert "trials done" in (isolated / "driver.log").read_text()  # it printed progress while waiting
    kinds = runs_by_kind(resolve_uri(None), "remote")
    pids = {r.data.tags["lmbench.worker_pid"] for r in kinds["trial"]}
    assert pids == {str(worker.pid)}, "the worker, not the driver, ran the trials"
    models = {r.data.tags["lmbench.model"]: r.info.run_id for r in kinds["model"]}
    assert sorted(models) == ["gru", "rnn"]
    for r in kinds["trial"]:
        assert r.data.tags["mlflow.parentRunId"] == models[r.data.tags["lmbench.model"]]
    assert len(kinds["final"]) == 2 and all(r.info.status == "FINISHED" for r in kinds["final"])
    assert (isolated / "reports" / "remote" / "results.csv").is_file()


@pytest.mark.parametrize(("args", "where"), [
    (["worker"], "--experiment"),
    (["worker", "--experiment", "x", "--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage"),
    (["worker", "--experiment", "x", "--workers", "0"], "--workers"),
    (["worker", "--experiment", "x", "--max-trials", "0"], "--max-trials"),
    (["worker", "--experiment", "nothing-here", "--wait", "0"], "--experiment"),
])
def test_worker_bad_input_exits_2(args, where, isolated):
    r = CliRunner().invoke(app, [*args, "--quiet"])
    assert r.exit_code == 2, r.output
    assert where in r.output and r.output.strip().count("\n") == 0, r.output
    assert not (isolated / "mlflow.db").exists()


def test_server_command_binds_loopback_and_proxies_artifacts(isolated):
    from lmbench.tracking.server import server_command

    cmd = server_command("127.0.0.1", 5005, "sqlite:///m.db", "arts")
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{isolated / 'm.db'}"
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(isolated / "arts")
    assert "--serve-artifacts" in cmd
