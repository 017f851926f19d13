"""No run left RUNNING forever, and failures that read as one line.

Real processes and a real SQLite MLflow store: a `lmbench train` SIGKILLed mid-run is marked
KILLED ("process died") by the next command on the store and resumes to FINISHED; a run whose
machine went silent is ended after the grace period; the heartbeat is refreshed while a run is
open; a failing run ends with one line and exit 1, a non-finite spec value is refused (exit 2).
"""

from __future__ import annotations

import os
import platform
import signal
import time
from pathlib import Path

from _services import lmbench, stop_all, wait_until
from mlflow import MlflowClient
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.tracking import alive, schema, tracker
from lmbench.tracking.tracker import Tracker, resolve_uri

TINY_TRAIN = ["--model", "gru", "--quick", "--quiet", "--set", "data.size=4000", "--set", "data.seq_len=16",
              "--set", "train.batch_size=4", "--set", "train.eval_tokens=200", "--set", "train.final_eval_tokens=400",
              "--set", "train.device=cpu"]


def runs(experiment: str = "default") -> list:
    client = MlflowClient(resolve_uri(None))
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def test_a_sigkilled_train_is_marked_killed_by_the_next_command_and_resumes(isolated):
    # a 3-second budget that checkpoints every 5 steps: the kill lands after the first checkpoint
    proc = lmbench("train", *TINY_TRAIN, "--set", "train.budget={seconds: 3}", "--set", "train.checkpoint_interval=5",
                   "--set", "train.eval_interval=100000", log=isolated / "train.log")
    try:
        wait_until(lambda: any(Path("checkpoints").glob("*/last.json")), 120, "a first checkpoint", [proc])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        stop_all([proc])
    (run,) = runs()
    assert run.info.status == "RUNNING"  # nobody said otherwise: the process had no chance to
    tags = run.data.tags
    assert tags[schema.PID] == str(proc.pid) and tags[schema.HOST] == platform.node()
    assert float(tags[schema.PROCESS_START]) > 0 and alive.heartbeat_age(tags) is not None

    r = CliRunner().invoke(app, ["status", "default"])  # any later command on the same store
    (run,) = runs()
    assert run.info.status == "KILLED", r.output
    assert run.data.tags[schema.FAILURE] == schema.PROCESS_DIED

    r = CliRunner().invoke(app, ["train", "--resume", run.info.run_id, "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    (run,) = runs()
    assert run.info.status == "FINISHED" and schema.FAILURE not in run.data.tags
    assert run.data.tags[schema.PID] == str(os.getpid())  # the resuming process writes it now
    assert "test_loss" in run.data.metrics


def test_a_silent_machine_is_dead_after_the_grace_period_and_a_live_one_is_not(isolated):
    t = Tracker("grace")
    ids = {}
    for name, host, age in (("silent", "elsewhere", 2 * alive.GRACE_SECONDS), ("fresh", "elsewhere", 5.0),
                            ("mine", platform.node(), 2 * alive.GRACE_SECONDS)):
        ids[name] = t.start(name, {}, {schema.KIND: "train"})
        t.set_tags({schema.HOST: host, schema.HEARTBEAT: f"{time.time() - age:.0f}"})
    ended = alive.reap_dead_runs(t.client)
    # "mine" is this live process (its pid and start time), however old its heartbeat tag
    assert ended == [ids["silent"]]
    status = {r.info.run_name: (r.info.status, r.data.tags.get(schema.FAILURE)) for r in runs("grace")}
    assert status == {"silent": ("KILLED", schema.PROCESS_DIED), "fresh": ("RUNNING", None),
                      "mine": ("RUNNING", None)}


def test_the_heartbeat_is_refreshed_while_a_run_is_open(isolated, monkeypatch):
    monkeypatch.setattr(tracker, "HEARTBEAT_SECONDS", 0.2)
    t = Tracker("beat")
    run_id = t.start("r", {}, {})
    client = MlflowClient(resolve_uri(None))
    first = float(client.get_run(run_id).data.tags[schema.HEARTBEAT])
    monkeypatch.setattr(tracker.time, "time", lambda: first + 100.0)  # later, without waiting for it
    wait_until(lambda: float(client.get_run(run_id).data.tags[schema.HEARTBEAT]) >= first + 100, 10, "a heartbeat")
    t.finish("FINISHED")
    assert client.get_run(run_id).info.status == "FINISHED"
    t._ticker.join(5)
    assert not t._ticker.is_alive()  # finish() stops the heartbeat


def test_a_failing_run_ends_with_one_line_and_exit_1(isolated):
    r = CliRunner().invoke(app, ["train", *TINY_TRAIN, "--set", "train.lr=3.0e+38", "--set", "train.budget={steps: 8}",
                                 "--set", "train.log_interval=2"])
    (run,) = runs()
    assert r.exit_code == 1, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    assert lines[0].startswith(f"error: run {run.info.run_id} FAILED: NonFiniteLoss: non-finite training loss")
    assert run.info.status == "FAILED" and "non-finite" in run.data.tags[schema.FAILURE]
    debug = CliRunner().invoke(app, ["--debug", "train", *TINY_TRAIN, "--set", "train.lr=3.0e+38",
                                     "--set", "train.budget={steps: 8}", "--set", "train.log_interval=2"])
    assert type(debug.exception).__name__ == "NonFiniteLoss"  # --debug: the exception and its traceback


def test_non_finite_spec_values_are_refused_before_anything_is_created(isolated):
    for value in ("inf", "-inf", "nan", ".inf", "1e400"):
        r = CliRunner().invoke(app, ["train", "--model", "gru", "--set", f"train.lr={value}"])
        assert r.exit_code == 2, (value, r.output)
        assert r.output.strip().startswith("error: train.lr:") and r.output.strip().count("\n") == 0, r.output
    assert not Path("mlflow.db").exists() and not Path("checkpoints").exists()
