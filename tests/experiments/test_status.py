"""`lmbench status` on a live experiment (a `--workers 0` driver and a `lmbench worker` running
trials) and on the same experiment once finished: real processes, journal studies, SQLite store."""

from __future__ import annotations

import pytest
from _services import TINY, lmbench, stop_all, wait_until
from mlflow import MlflowClient
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.tracking.tracker import resolve_uri

# trials of ~6 s of training, so that one is caught running; final runs of 2 s
SLOW = [*TINY, "--set", "search.budget={seconds: 6}", "--set", "train.budget={seconds: 2}",
        "--set", "train.eval_interval=1000"]


def running_trial(experiment: str):
    client = MlflowClient(resolve_uri(None))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = client.search_runs([exp.experiment_id], "tags.`lmbench.kind` = 'trial' and attributes.status = 'RUNNING'")
    return found[0] if found else None


def status(experiment: str) -> str:
    r = CliRunner().invoke(app, ["status", experiment], env={"COLUMNS": "200"}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.slow
def test_status_of_a_live_then_a_finished_experiment(isolated):
    driver = lmbench("compare", "--models", "rnn", "--trials", "2", "--seeds", "1", "--workers", "0",
                     "--set", "name=live", *SLOW, log=isolated / "driver.log")
    worker = lmbench("worker", "--experiment", "live", log=isolated / "worker.log")
    try:
        wait_until(lambda: running_trial("live") is not None, 180, "a running trial", [driver, worker])
        live = status("live")
        assert "live: in progress" in live, live
        row = next(line for line in live.splitlines() if line.startswith("│ rnn") and "/2" in line)
        assert row.split("│")[2].strip().endswith("/2") and row.split("│")[8].strip() == "0/1", live
        trial_row = next((line for line in live.splitlines() if "s ago" in line), live)  # the running trials
        assert f" {worker.pid} " in trial_row and " cpu " in trial_row, live
        assert "ETA:" in live
        assert driver.wait(timeout=300) == 0, (isolated / "driver.log").read_text()[-3000:]
    finally:
        stop_all([driver, worker])
    done = status("live")
    assert "live: finished" in done and "ETA" not in done and "s ago" not in done, done
    row = next(line for line in done.splitlines() if line.startswith("│ rnn"))
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:3] == ["rnn", "2/2", "2"] and cells[-1] == "1/1", done
    assert float(cells[6]) > 0  # best val_loss so far
    watched = CliRunner().invoke(app, ["status", "live", "--watch", "--interval", "0.1"], env={"COLUMNS": "200"})
    assert watched.exit_code == 0 and "live: finished" in watched.output  # --watch ends with the experiment
