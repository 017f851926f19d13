"""`lmbench scale` end to end: one real sweep (tiny budgets) shared by the checks below, a sweep
whose worker is killed mid-point and finished by another, the report in a browser, bad input.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from _services import FAST_LIVENESS, lmbench, stop_all, wait_until
from conftest import need
from mlflow import MlflowClient
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.models import build_model
from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.points import scale_study_name
from lmbench.tuning.storage import default_storage_path

# one test process builds the shared sweep (make test runs two: pytest-xdist --dist loadgroup)
pytestmark = pytest.mark.xdist_group("scale")

MODELS = ["rnn", "gpt"]  # a recurrent model and one with attention FLOPs
BUDGETS = [1e9, 2e9]
SIZES, SEEDS = 3, 2
SWEEP = [
    "scale",
    "--quick",
    "--quiet",
    "--models",
    ",".join(MODELS),
    "--compute",
    ",".join(map(str, BUDGETS)),
    "--sizes",
    str(SIZES),
    "--seeds",
    str(SEEDS),
    "--set",
    "name=sc",
    "--set",
    "train.final_eval_tokens=600",
]
N_POINTS = len(MODELS) * len(BUDGETS) * SIZES * SEEDS
CHROMIUM = Path("/usr/bin/chromium")


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def runs_of(experiment: str) -> list:
    client = MlflowClient(resolve_uri(None))
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=5000) if exp else []


def by_kind(runs: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for run in runs:
        out.setdefault(run.data.tags.get("lmbench.kind"), []).append(run)
    return out


def study_of(experiment: str, arch: str):
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(default_storage_path(experiment)))
    )
    return optuna.load_study(study_name=scale_study_name(experiment, arch), storage=storage)


@pytest.fixture(scope="module")
def swept(tmp_path_factory, one_torch_thread):
    """One quick sweep: 2 models x 2 budgets x 3 sizes x 2 seeds, in its own folder (one torch
    thread: tiny models gain nothing from two, and two spin against other tests for 2 cores)."""
    work = tmp_path_factory.mktemp("scale")
    patch = pytest.MonkeyPatch()
    patch.chdir(work)
    result = cli(*SWEEP)
    yield work, result
    patch.undo()


@pytest.fixture
def in_sweep(swept, monkeypatch):
    work, result = swept
    monkeypatch.chdir(work)
    assert result.exit_code == 0, result.output
    return work


# -- the shared sweep ------------------------------------------------------------------------


def _flops_per_token(run) -> float:
    """FLOPs of one training step counted by torch on the model rebuilt from the run's params,
    per token; torch's counter does not see the fused attention kernel on CPU, so attention's
    12 x layers x T x d (forward + backward of QK^T and AV) is added by hand."""
    params = run.data.params
    config = {
        key.removeprefix("model.config."): None if value == "None" else yaml.safe_load(value)
        for key, value in params.items()
        if key.startswith("model.config.")
    }
    model = build_model(
        params["model.arch"], int(params["data.vocab_size_actual"]), params["model.preset"], config
    )
    batch, seq = 2, int(params["data.seq_len"])
    with FlopCounterMode(display=False) as counter:
        logits, _ = model(torch.randint(0, 50, (batch, seq)))
        logits.float().logsumexp(-1).sum().backward()
    flops = counter.get_total_flops() / (batch * seq)
    if model.attention_layers:
        flops += 12 * config["n_layers"] * seq * config["d_model"]
    return flops


def test_every_run_spends_its_budget_within_2_percent(in_sweep):
    points = by_kind(runs_of("sc"))["point"]
    assert len(points) == N_POINTS
    for run in points:
        budget = float(run.data.tags["scale.compute"])
        tokens = run.data.metrics["tokens_seen"]
        assert tokens == float(
            run.data.params["train.budget.tokens"]
        )  # the schedule spans exactly D
        spent = tokens * _flops_per_token(run)
        assert abs(spent / budget - 1) < 0.02, (run.info.run_name, spent, budget)


def test_the_tree_statuses_and_studies(in_sweep):
    kinds = by_kind(runs_of("sc"))
    (root,) = kinds["scale"]
    assert root.info.status == "FINISHED"
    models = {run.data.tags["lmbench.model"]: run for run in kinds["model"]}
    assert sorted(models) == sorted(MODELS)
    for arch, model_run in models.items():
        assert model_run.info.status == "FINISHED"
        assert model_run.data.tags["mlflow.parentRunId"] == root.info.run_id
        assert json.loads(model_run.data.tags["scale.hparams"])["train"]["schedule"] == "cosine"
        budgets = [
            r for r in kinds["budget"] if r.data.tags["mlflow.parentRunId"] == model_run.info.run_id
        ]
        assert sorted(float(r.data.tags["scale.compute"]) for r in budgets) == BUDGETS
        for budget in budgets:
            assert budget.info.status == "FINISHED"
            assert budget.data.tags["scale.points_finished"] == str(SIZES * SEEDS)
            assert budget.data.tags["scale.points_failed"] == "0"
            points = [
                r for r in kinds["point"] if r.data.tags["mlflow.parentRunId"] == budget.info.run_id
            ]
            assert len(points) == SIZES * SEEDS
            assert {r.data.tags["seed"] for r in points} == {str(s) for s in range(SEEDS)}
            assert len({r.data.params["params.non_embedding"] for r in points}) == SIZES
            assert all(
                r.info.status == "FINISHED" and r.data.tags["stage"] == "scale" for r in points
            )
        trials = study_of("sc", arch).get_trials(deepcopy=False)
        assert len(trials) == len(BUDGETS) * SIZES * SEEDS
        assert all(t.state.name == "COMPLETE" for t in trials)


def test_results_hold_every_point_and_fit(in_sweep):
    payload = json.loads((in_sweep / "reports" / "sc" / "results.json").read_text())
    assert len(payload["points"]) == N_POINTS and payload["missing"] == []
    assert sorted(payload["fits"]) == sorted(MODELS)
    for fits in payload["fits"].values():
        assert len(fits["free"]["fit"]["parabolas"]) == len(BUDGETS)
        assert fits["fixed"]["fit"]["loss_law"]["floor_fixed"] is True  # synthetic: E at the floor
        assert not fits["free"]["fit"]["loss_law"][
            "fittable"
        ]  # two budgets cannot fit a free-E law
    assert {c["law"] for c in payload["crossovers"]} == {"free E", "E = floor"}
    table = pd.read_csv(in_sweep / "reports" / "sc" / "scaling.csv")
    assert (table["record"] == "point").sum() == N_POINTS
    assert set(table["record"]) >= {"point", "optimum", "law", "crossover"}
    optima = table[table["record"] == "optimum"]
    assert len(optima) == len(MODELS) * len(BUDGETS)
    unfit = optima[optima["fittable"].astype(str) == "False"]
    assert unfit["reason"].notna().all()  # a budget without a fit says why (and which sizes to add)


def test_a_rerun_redoes_nothing(in_sweep):
    before = {r.info.run_id for r in runs_of("sc")}
    trials = {arch: len(study_of("sc", arch).get_trials(deepcopy=False)) for arch in MODELS}
    again = cli(*SWEEP)
    assert again.exit_code == 0, again.output
    kinds = by_kind(runs_of("sc"))
    assert {r.info.run_id for runs in kinds.values() for r in runs} == before
    assert all(r.info.status == "FINISHED" for runs in kinds.values() for r in runs)
    assert {arch: len(study_of("sc", arch).get_trials(deepcopy=False)) for arch in MODELS} == trials


def test_the_report_rebuilds_from_the_stores(in_sweep):
    result = cli("report", "sc", "--format", "md", "--out", "md")
    assert result.exit_code == 0, result.output
    text = (in_sweep / "md" / "index.md").read_text()
    for title in (
        "IsoFLOP curves",
        "Compute-optimal frontier and scaling laws",
        "Crossovers",
        "Every run",
    ):
        assert f"### {title}" in text
    assert (in_sweep / "md" / "plots" / "scale-isoflop.png").is_file()
    assert cli("report", "sc", "--format", "csv", "--out", "csv").exit_code == 0
    assert (in_sweep / "csv" / "scaling.csv").is_file()


PROBE = """<script>
window.addEventListener("load", function () {
  var sec = document.querySelector("section#scale");
  var out = {images: Array.prototype.map.call(sec.querySelectorAll("img"), function (i) { return i.naturalWidth; }),
             figures: sec.querySelectorAll("figure").length, tables: sec.querySelectorAll("table").length,
             pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth};
  var pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.parametrize("width", [1280, 390])
def test_the_report_renders_every_plot_in_a_browser(in_sweep, tmp_path, width):
    need(CHROMIUM.is_file(), f"{CHROMIUM} is missing (apt-get install chromium)")
    html = (in_sweep / "reports" / "sc" / "index.html").read_text()
    page = tmp_path / "probe.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-sync",
        "--virtual-time-budget=10000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    done = subprocess.run(
        [str(CHROMIUM), *flags, f"--window-size={width},900", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stderr[-2000:]
    seen = json.loads(
        found.group(1).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    )
    fitted = any(
        p["fittable"]
        for fits in json.loads((in_sweep / "reports" / "sc" / "results.json").read_text())[
            "fits"
        ].values()
        for p in fits["free"]["fit"]["parabolas"]
    )
    assert (
        seen["figures"] == len(seen["images"]) == (2 if fitted else 1)
    )  # IsoFLOP (+ frontier if any fit)
    assert all(w > 0 for w in seen["images"])
    assert seen["tables"] >= 5  # hyperparameters, laws, optima, crossovers, every run
    assert seen["pageWidth"] <= seen["viewport"]  # wide tables scroll in their box, not the page


# -- a worker killed mid-sweep -------------------------------------------------------------


def _running_point_with_checkpoint(experiment: str):
    for run in by_kind(runs_of(experiment)).get("point", []):
        folder = run.data.tags.get("lmbench.checkpoint_dir")
        if run.info.status == "RUNNING" and folder and (Path(folder) / "last.json").is_file():
            return run
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_point_is_retried_and_the_sweep_completes(isolated):
    """`scale --workers 0` waits for `lmbench worker`s; the first one is SIGKILLed mid-point, a
    second one retries that point from its checkpoint and runs the rest; nothing runs twice."""
    sweep = [
        "scale",
        "--quick",
        "--models",
        "rnn",
        "--compute",
        "2e9",
        "--sizes",
        "3",
        "--seeds",
        "1",
        "--workers",
        "0",
        "--set",
        "name=kill",
        "--set",
        "train.checkpoint_interval=4",
        *FAST_LIVENESS,
    ]
    driver = lmbench(*sweep, log=isolated / "driver.log")
    first = lmbench("worker", "--experiment", "kill", log=isolated / "w0.log")
    second = None
    found = {}

    def caught() -> bool:
        found["run"] = _running_point_with_checkpoint("kill")
        return found["run"] is not None

    try:
        wait_until(caught, 240, "a running point with a checkpoint", [driver, first])
        victim = found["run"]
        os.kill(int(victim.data.tags["lmbench.worker_pid"]), signal.SIGKILL)
        first.wait(timeout=30)
        second = lmbench("worker", "--experiment", "kill", log=isolated / "w1.log")
        assert driver.wait(timeout=300) == 0, (isolated / "driver.log").read_text()[-3000:]
        assert second.wait(timeout=60) == 0, (isolated / "w1.log").read_text()[-3000:]
    finally:
        stop_all([p for p in (driver, first, second) if p is not None])
    points = by_kind(runs_of("kill"))["point"]
    dead = next(r for r in points if r.info.run_id == victim.info.run_id)
    assert dead.info.status == "KILLED"
    finished = [r for r in points if r.info.status == "FINISHED"]
    assert len(finished) == 3 and len(points) == 4  # three points, one of them retried once
    (retry,) = [
        r
        for r in finished
        if r.data.tags.get("optuna.retry_of") == victim.data.tags["optuna.trial_number"]
    ]
    assert retry.data.tags["scale.target_params"] == victim.data.tags["scale.target_params"]
    assert retry.data.tags["lmbench.resumed_from"].startswith(
        victim.data.tags["lmbench.checkpoint_dir"]
    )
    trials = study_of("kill", "rnn").get_trials(deepcopy=False)
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 3 + ["FAIL"]
    assert all(
        r.info.status == "FINISHED"
        for kind in ("scale", "model", "budget")
        for r in by_kind(runs_of("kill"))[kind]
    )


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, where",
    [
        (["--compute", "1e6"], "scale.compute"),  # too small to train the smallest rung 25 steps
        (["--sizes", "1"], "scale.sizes"),
        (["--models", "rnn,nope"], "scale.models.1"),
        (["--from", "never-ran"], "scale.from"),
    ],
)
def test_bad_input_exits_2_and_creates_nothing(isolated, args, where):
    result = cli("scale", "--quick", "--models", "rnn", *args)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: {where}")
    assert (
        sorted(p.name for p in isolated.iterdir()) == []
    )  # no store, studies, reports or checkpoints
