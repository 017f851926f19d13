"""Faults: a worker SIGKILLed mid-trial, every worker killed, pre-emption (SIGTERM), and a
tracking server that goes away during a run. Nothing may be lost or left RUNNING.

Real processes, real PostgreSQL / journal storages, a real `mlflow server`; trials train for a
few seconds of wall-clock budget and checkpoint often, so a fault lands mid-trial.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
from _services import FAST_LIVENESS, TINY, MlflowServer, lmbench, pg_url, stop_all, wait_until  # noqa: F401
from mlflow import MlflowClient

from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.storage import open_storage, study_name

# after TINY: trials of ~4 s of training that checkpoint every 10 steps
SLOW = [*TINY, "--set", "train.budget={seconds: 4}", "--set", "train.checkpoint_interval=10",
        "--set", "train.eval_interval=40", "--set", "train.log_interval=5", *FAST_LIVENESS]


def trials_of(storage_url: str | None, experiment: str):
    storage = open_storage(storage_url, experiment)
    return optuna.load_study(study_name=study_name(experiment, "rnn"), storage=storage).get_trials(deepcopy=False)


def trial_runs(experiment: str, uri: str | None = None) -> dict[int, list]:
    c = MlflowClient(resolve_uri(uri))
    exp = c.get_experiment_by_name(experiment)
    out: dict[int, list] = {}
    if exp is None:
        return out
    for r in c.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'trial'", max_results=1000):
        out.setdefault(int(r.data.tags["optuna.trial_number"]), []).append(r)
    return out


def checkpointed_running_trial(experiment: str):
    """A RUNNING trial run that has written a 'last' checkpoint, or None."""
    for runs in trial_runs(experiment).values():
        for r in runs:
            ckpt = r.data.tags.get("lmbench.checkpoint_dir")
            if r.info.status == "RUNNING" and ckpt and (Path(ckpt) / "last.json").is_file():
                return r
    return None


def wait_for_victim(experiment: str, procs) -> tuple[int, int]:
    """(trial number, worker pid) of a trial caught mid-way, after its first checkpoint."""
    found = {}

    def caught() -> bool:
        r = checkpointed_running_trial(experiment)
        if r is not None:
            found["run"] = r
        return r is not None

    wait_until(caught, 180, "a running trial with a checkpoint", procs)
    r = found["run"]
    return int(r.data.tags["optuna.trial_number"]), int(r.data.tags["lmbench.worker_pid"])


def check_retried(storage_url: str | None, experiment: str, victim: int, total: int, status: str) -> None:
    """The victim failed in Optuna and ended ``status`` in MLflow; its retry (same params) resumed
    from the victim's checkpoint and completed; the study reached its total; nothing is RUNNING."""
    trials = trials_of(storage_url, experiment)
    dead = trials[victim]
    assert dead.state.name == "FAIL"
    (retry,) = [t for t in trials if t.system_attrs.get("retry_history") == [victim]]
    assert retry.params == dead.params and retry.state.name == "COMPLETE"
    assert sum(t.state.name == "COMPLETE" for t in trials) == total
    runs = trial_runs(experiment)
    assert sorted(runs) == [t.number for t in trials], "one MLflow run per trial"
    assert all(len(v) == 1 and v[0].info.status != "RUNNING" for v in runs.values())
    (dead_run,), (retry_run,) = runs[victim], runs[retry.number]
    assert dead_run.info.status == status and dead_run.data.tags["optuna_state"] == "FAIL"
    assert retry_run.info.status == "FINISHED" and retry_run.data.tags["optuna.retry_of"] == str(victim)
    assert retry_run.data.tags["lmbench.resumed_from"].startswith(dead_run.data.tags["lmbench.checkpoint_dir"])
    steps = [m.step for m in MlflowClient(resolve_uri(None)).get_metric_history(retry_run.info.run_id, "train_loss")]
    assert min(steps) > 10, "the retry continued after the checkpoint instead of starting over"


def tune_driver(name: str, trials: int, log, *extra: str):
    """``lmbench tune`` of ``trials`` slow rnn trials that only enqueues them (``--workers 0``)."""
    return lmbench("tune", "--model", "rnn", "--trials", str(trials), "--workers", "0", "--set", f"name={name}",
                   *extra, *SLOW, log=log)


@pytest.mark.slow
def test_sigkill_mid_trial_is_retried_by_a_surviving_worker(pg_url, isolated):  # noqa: F811
    driver = tune_driver("kill", 3, isolated / "driver.log", "--storage", pg_url)
    workers = [lmbench("worker", "--experiment", "kill", "--storage", pg_url, log=isolated / f"w{i}.log")
               for i in range(2)]
    try:
        victim, pid = wait_for_victim("kill", [driver, *workers])
        os.kill(pid, signal.SIGKILL)  # found by Optuna's heartbeat on PostgreSQL after the grace period
        assert driver.wait(timeout=240) == 0, (isolated / "driver.log").read_text()[-3000:]
    finally:
        stop_all([driver, *workers])
    check_retried(pg_url, "kill", victim, 3, "KILLED")
    dead = trial_runs("kill")[victim][0]
    assert "no heartbeat" in dead.data.tags["lmbench.failure"]


@pytest.mark.slow
def test_all_workers_killed_then_a_fresh_worker_recovers(isolated):
    driver = tune_driver("killall", 2, isolated / "driver.log")
    first = lmbench("worker", "--experiment", "killall", log=isolated / "w0.log")
    try:
        victim, pid = wait_for_victim("killall", [driver, first])
        for p in (first, driver):  # every process of the experiment is gone
            p.kill()
            p.wait()
        assert trials_of(None, "killall")[victim].state.name == "RUNNING"  # a stale trial is left behind
        fresh = lmbench("worker", "--experiment", "killall", log=isolated / "w1.log")
        assert fresh.wait(timeout=180) == 0, (isolated / "w1.log").read_text()[-3000:]
        again = tune_driver("killall", 2, isolated / "driver2.log")
        assert again.wait(timeout=120) == 0, (isolated / "driver2.log").read_text()[-3000:]
    finally:
        stop_all([driver, first])
    check_retried(None, "killall", victim, 2, "KILLED")


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_retry_resumes(isolated):
    driver = tune_driver("preempt", 2, isolated / "driver.log")
    first = lmbench("worker", "--experiment", "preempt", log=isolated / "w0.log")
    try:
        victim, pid = wait_for_victim("preempt", [driver, first])
        t0 = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 128 + signal.SIGTERM
        assert time.monotonic() - t0 < 30
        trials = trials_of(None, "preempt")
        assert trials[victim].state.name == "FAIL"
        assert [t.params for t in trials if t.state.name == "WAITING"] == [trials[victim].params]
        (run,) = trial_runs("preempt")[victim]
        assert run.info.status == "KILLED" and run.data.tags["lmbench.stop_reason"].startswith("interrupted at step")
        second = lmbench("worker", "--experiment", "preempt", log=isolated / "w1.log")
        assert driver.wait(timeout=180) == 0, (isolated / "driver.log").read_text()[-3000:]
        assert second.wait(timeout=60) == 0
    finally:
        stop_all([driver, first])
    check_retried(None, "preempt", victim, 2, "KILLED")


@pytest.mark.slow
def test_tracking_server_outage_leaves_no_gap_in_metrics(tmp_path, isolated, monkeypatch, caplog):
    """Stop the MLflow server mid-run and start it again: every logged step is stored."""
    from lmbench.config import build_spec
    from lmbench.tracking import tracker as tracking
    from lmbench.training.run import train

    # MLflow's own HTTP retries off, so the Tracker's buffer-and-retry is what is tested; short backoff
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setattr(tracking, "MAX_BACKOFF", 2.0)
    server = MlflowServer(tmp_path)
    server.start()
    spec = build_spec({}, ["name=outage", "model.arch=rnn", "model.preset=small", "train.device=cpu",
                           "train.budget={seconds: 8}", "train.batch_size=4", "data.seq_len=16", "data.size=4000",
                           "train.eval_interval=1000000", "train.log_interval=5", "train.final_eval_tokens=400"])
    steps_seen, outage = [], {}

    def cut() -> None:  # stop the server for a few seconds while the loop keeps logging
        wait_until(lambda: len(steps_seen) > 50, 60, "training to start")
        server.stop()
        outage["stopped_at"] = len(steps_seen)
        time.sleep(3)
        outage["restarting_at"] = len(steps_seen)
        server.start()

    cutter = threading.Thread(target=cut)
    try:
        tracker = tracking.Tracker("outage", server.uri)
        cutter.start()
        result = train(spec, tracker=tracker, quiet=True, on_step=lambda step, tokens, m: steps_seen.append(step))
        cutter.join()
        assert outage["restarting_at"] > outage["stopped_at"], "steps were logged during the outage"
        assert any("could not send" in r.getMessage() for r in caplog.records), "no send failed: no outage seen"
        client = MlflowClient(server.uri)
        assert client.get_run(result.run_id).info.status == "FINISHED"
        logged = sorted(m.step for m in client.get_metric_history(result.run_id, "train_loss"))
        assert logged == list(range(5, result.steps + 1, 5)), "a gap in the metric history"
    finally:
        cutter.join()
        server.stop()


def test_storage_urls_that_cannot_be_reached_are_retried_then_reported(isolated):
    """with_retries retries real storage errors (a PostgreSQL port nothing listens on) with
    growing backoff, succeeds once the storage answers, and re-raises the last error."""
    import sqlalchemy
    import sqlalchemy.exc

    from lmbench.tuning.storage import with_retries

    dead = sqlalchemy.create_engine("postgresql://lmbench@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    alive = sqlalchemy.create_engine(f"sqlite:///{isolated / 'up.db'}")
    calls = []

    def connect():
        calls.append(time.monotonic())
        engine = dead if len(calls) < 3 else alive  # the storage comes back on the third try
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text("SELECT 1")).scalar()

    assert with_retries(connect, "test") == 1 and len(calls) == 3
    assert calls[2] - calls[1] >= 1.9 * (calls[1] - calls[0]) - 0.05  # backoff grows
    with pytest.raises(sqlalchemy.exc.OperationalError):
        with_retries(lambda: dead.connect(), "test", attempts=2)


def test_a_full_server_is_waited_for_when_opening_the_storage(pg_url):  # noqa: F811
    """PostgreSQL refusing a connection for want of slots (here: a role limited to 3 connections,
    which other clients hold) is waited out, not reported as a bad URL."""
    import psycopg

    from lmbench.tuning.storage import close_storage, open_storage

    role, db = f"lmbench_full_{os.getpid()}", pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 3")
        admin.execute(f"GRANT ALL ON DATABASE {db} TO {role}; ALTER DATABASE {db} OWNER TO {role}")
        url = f"postgresql://{role}@127.0.0.1:5432/{db}"
        holders = [psycopg.connect(url) for _ in range(3)]  # take the role's slots
        threading.Timer(1.5, lambda: [h.close() for h in holders]).start()  # ... and give them back
        t0 = time.monotonic()
        storage = open_storage(url, "full")
        waited = time.monotonic() - t0
        close_storage(storage)
        admin.execute(f"ALTER DATABASE {db} OWNER TO postgres; DROP OWNED BY {role}; DROP ROLE {role}")
    assert waited >= 1.0  # it was refused first, then got in once the slot was free
