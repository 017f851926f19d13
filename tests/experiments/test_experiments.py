"""compare / ablate / tune end to end: real Optuna studies, real MLflow store, real training."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from scipy import stats as sps
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.models import arch_names
from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.storage import default_storage_path, study_name

FAST = ["--set", "train.budget={steps: 16}", "--set", "search.budget=null", "--set", "train.eval_interval=4", "--set", "train.log_interval=4",
        "--set", "data.size=8000", "--set", "data.seq_len=16", "--set", "train.eval_tokens=600"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def runs_of(exp: str):
    c = MlflowClient(resolve_uri(None))  # the default store of the current directory
    e = c.get_experiment_by_name(exp)
    return c.search_runs([e.experiment_id], max_results=5000)


def study(exp: str, arch: str):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(default_storage_path(exp))))
    return optuna.load_study(study_name=study_name(exp, arch), storage=storage)


def tree(exp: str):
    runs = runs_of(exp)
    by_kind: dict[str, list] = {}
    for r in runs:
        by_kind.setdefault(r.data.tags.get("lmbench.kind"), []).append(r)
    return runs, by_kind


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One quick compare of every architecture, shared by the checks below."""
    work = tmp_path_factory.mktemp("compare")
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    r = cli("compare", "--models", ",".join(arch_names()), "--quick", "--trials", "3", "--seeds", "2", "--quiet",
            "--set", "name=cmp", *FAST)
    yield work, r
    mp.undo()


def test_compare_prints_and_writes_results(compared, monkeypatch):
    work, r = compared
    monkeypatch.chdir(work)
    assert r.exit_code == 0, r.output
    assert "★" in r.output
    table = pd.read_csv(work / "reports" / "cmp" / "results.csv", index_col=0)
    assert sorted(table.index) == sorted(arch_names())
    assert table["best"].sum() == 1 and bool(table.iloc[0]["best"])
    payload = json.loads((work / "reports" / "cmp" / "results.json").read_text())
    assert len(payload["runs"]) == 2 * len(arch_names())
    # adequacy verdicts: printed, in results.json, and the still-improving column in the table
    adequacy = payload["meta"]["adequacy"]
    assert set(adequacy["tuning"]) == set(adequacy["training"]) == set(arch_names())
    assert {row["name"] for row in adequacy["power"]} == set(arch_names()) - {table.index[0]}
    assert "still_improving" in table.columns
    for line in adequacy["lines"]:
        assert " ".join(line.split()) in " ".join(r.output.split())
    assert "power: with 2 seeds" in r.output


def test_compare_studies_and_mlflow_tree(compared, monkeypatch):
    work, _ = compared
    monkeypatch.chdir(work)
    runs, kinds = tree("cmp")
    assert all(r.info.status != "RUNNING" for r in runs)
    (root,) = kinds["compare"]
    assert root.info.status == "FINISHED"
    models = {r.data.tags["lmbench.model"]: r for r in kinds["model"]}
    assert set(models) == set(arch_names())
    for arch, mrun in models.items():
        assert mrun.data.tags["mlflow.parentRunId"] == root.info.run_id
        s = study("cmp", arch)
        assert len(s.trials) == 3 and sorted(t.number for t in s.trials) == [0, 1, 2]
        trials = [r for r in kinds["trial"] if r.data.tags["mlflow.parentRunId"] == mrun.info.run_id]
        assert len(trials) == 3
        for t in trials:
            assert t.data.tags["stage"] == "search"
            ot = s.trials[int(t.data.tags["optuna.trial_number"])]
            assert t.data.tags["optuna_state"] == ot.state.name
            expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[ot.state.name]
            assert t.info.status == expected
        finals = [r for r in kinds["final"] if r.data.tags["mlflow.parentRunId"] == mrun.info.run_id]
        assert sorted(int(f.data.tags["seed"]) for f in finals) == [0, 1]
        assert all(f.data.tags["stage"] == "final" and f.info.status == "FINISHED" for f in finals)
        # the final runs use the study's best parameters
        best = s.best_trial.params  # several optimizers searched: lr_<optimizer> is the lr
        lr = best["lr"] if "lr" in best else best[f"lr_{best['optimizer']}"]
        assert all(float(f.data.params["train.lr"]) == pytest.approx(lr) for f in finals)
        if "optimizer" in best:
            assert all(f.data.params["train.optimizer.kind"] == best["optimizer"] for f in finals)
    # final runs carry a curve plot; trials do not (their metric history is the curve)
    client = MlflowClient(resolve_uri(None))
    arts = lambda r: {a.path for a in client.list_artifacts(r.info.run_id)}  # noqa: E731
    assert "curve.png" in arts(kinds["final"][0])
    done = [t for t in kinds["trial"] if t.info.status == "FINISHED"]
    assert done and "curve.png" not in arts(done[0]) and "checkpoint" in arts(done[0])


def test_compare_statistics_match_independent_computation(compared, monkeypatch):
    work, _ = compared
    monkeypatch.chdir(work)
    table = pd.read_csv(work / "reports" / "cmp" / "results.csv", index_col=0)
    _, kinds = tree("cmp")
    per_model: dict[str, dict[int, float]] = {}
    for f in kinds["final"]:
        per_model.setdefault(f.data.tags["lmbench.model"], {})[int(f.data.tags["seed"])] = f.data.metrics["test_loss"]
    best = table.index[0]
    for arch, by_seed in per_model.items():
        x = np.array([by_seed[s] for s in sorted(by_seed)])
        half = sps.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
        assert table.loc[arch, "test_loss_mean"] == pytest.approx(x.mean(), rel=1e-9)
        assert table.loc[arch, "test_loss_ci"] == pytest.approx(half, rel=1e-6)
        if arch != best:
            b = np.array([per_model[best][s] for s in sorted(by_seed)])
            p = sps.ttest_rel(x, b).pvalue
            assert table.loc[arch, "p_vs_best"] == pytest.approx(p, rel=1e-6, nan_ok=True)
    assert table["test_loss_mean"].is_monotonic_increasing


def test_compare_is_idempotent_and_continues(compared, monkeypatch):
    work, _ = compared
    monkeypatch.chdir(work)
    before = len(runs_of("cmp"))
    r = cli("compare", "--models", "gru", "--quick", "--trials", "3", "--seeds", "2", "--quiet", "--set", "name=cmp", *FAST)
    assert r.exit_code == 0, r.output
    assert len(runs_of("cmp")) == before, "a finished compare must not train anything again"
    # a larger --trials is a total: exactly one more trial and its run
    r = cli("compare", "--models", "gru", "--quick", "--trials", "4", "--seeds", "2", "--quiet", "--set", "name=cmp", *FAST)
    assert r.exit_code == 0, r.output
    assert len(study("cmp", "gru").trials) == 4


def test_interrupted_compare_resumes_without_redoing_trials(isolated, monkeypatch):
    from lmbench.training import loop as train_mod

    calls = {"n": 0}
    orig = train_mod.Trainer.train_step

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 16 * 2 + 5:  # in the third trial
            raise KeyboardInterrupt
        return orig(self)

    monkeypatch.setattr(train_mod.Trainer, "train_step", flaky)
    args = ["compare", "--models", "lstm", "--quick", "--trials", "3", "--seeds", "1", "--quiet",
            "--set", "name=resume", "--set", "search.pruner=none", *FAST]
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0
    s = study("resume", "lstm")
    done_before = {t.number: t.params for t in s.trials if t.state.name == "COMPLETE"}
    assert len(done_before) == 2
    runs, kinds = tree("resume")
    assert kinds["compare"][0].info.status == "KILLED"
    assert all(r.info.status != "RUNNING" for r in runs)
    monkeypatch.setattr(train_mod.Trainer, "train_step", orig)
    r = cli(*args)
    assert r.exit_code == 0, r.output
    s = study("resume", "lstm")
    complete = [t for t in s.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    assert {t.number: t.params for t in complete if t.number in done_before} == done_before
    _, kinds = tree("resume")
    trial_runs = {r.data.tags["optuna.trial_number"] for r in kinds["trial"] if r.info.status == "FINISHED"}
    assert len(trial_runs) == 3
    assert kinds["compare"][0].info.status == "FINISHED"


def test_nan_trial_fails_but_the_study_goes_on(isolated):
    # an absurd learning rate without clipping diverges; the other value trains normally
    r = cli("tune", "--model", "gpt", "--quick", "--trials", "3", "--quiet", "--set", "name=nan",
            "--set", "search.sampler=grid", "--set", "search.pruner=none", "--set", "train.grad_clip=null",
            "--set", "search.space.gpt.lr={categorical: [0.001, 1.0e+30]}",
            "--set", "search.space.gpt.weight_decay={categorical: [0.0]}",
            "--set", "search.space.gpt.dropout={categorical: [0.0]}",
            "--set", "search.space.gpt.d_model={categorical: [64]}",
            "--set", "search.space.gpt.n_layers={categorical: [1]}",
            "--set", "search.space.gpt.n_heads={categorical: [2]}",
            "--set", "search.space.gpt.positions={categorical: [learned]}", *FAST)
    assert r.exit_code == 0, r.output
    s = study("nan", "gpt")
    states = {t.params["lr"]: t.state.name for t in s.trials}
    assert states[1e30] == "FAIL" and states[0.001] == "COMPLETE"
    failed = [t for t in s.trials if t.state.name == "FAIL"][0]
    assert "non-finite" in failed.user_attrs["failure"]
    _, kinds = tree("nan")
    bad = [r for r in kinds["trial"] if r.data.tags["optuna.trial_number"] == str(failed.number)][0]
    assert bad.info.status == "FAILED" and bad.data.tags["optuna_state"] == "FAIL"


def test_ablation_deltas_and_shared_seeds(isolated):
    r = cli("ablate", "--model", "gru", "--param", "dropout", "--values", "0.0,0.3", "--seeds", "2", "--quick",
            "--quiet", "--set", "name=abl", *FAST)
    assert r.exit_code == 0, r.output
    table = pd.read_csv(isolated / "reports" / "abl" / "ablation.csv")
    assert list(table["value"].astype(float)) == [0.0, 0.3]  # small preset: dropout 0.0 is the baseline
    assert bool(table.loc[0, "is_baseline"])
    _, kinds = tree("abl")
    seeds: dict[str, dict[int, float]] = {}
    for f in kinds["final"]:
        seeds.setdefault(f.data.tags["ablate.value"], {})[int(f.data.tags["seed"])] = f.data.metrics["test_loss"]
    assert set(seeds) == {"baseline", "dropout=0.3"}
    assert set(seeds["baseline"]) == set(seeds["dropout=0.3"]) == {0, 1}
    diff = np.array([seeds["dropout=0.3"][s] - seeds["baseline"][s] for s in (0, 1)])
    assert table.loc[1, "delta"] == pytest.approx(diff.mean(), rel=1e-9)
    assert table.loc[1, "p"] == pytest.approx(sps.ttest_rel([seeds["dropout=0.3"][s] for s in (0, 1)],
                                                             [seeds["baseline"][s] for s in (0, 1)]).pvalue, rel=1e-6)


def test_ablation_of_the_optimizer_and_the_batch_order(isolated):
    """optimizer and data.order are ablatable; another optimizer starts from its recipe's lr."""
    r = cli("ablate", "--model", "gru", "--param", "optimizer", "--param", "order", "--values", "optimizer=adamw",
            "--values", "order=random", "--seeds", "2", "--quick", "--quiet", "--set", "name=ablopt", *FAST)
    assert r.exit_code == 0, r.output
    table = pd.read_csv(isolated / "reports" / "ablopt" / "ablation.csv")
    assert [tuple(x) for x in table[["param", "value"]].to_numpy()] == [
        ("optimizer", "sgd"), ("optimizer", "adamw"), ("order", "stream"), ("order", "random")]
    _, kinds = tree("ablopt")
    finals = {f.data.tags["ablate.value"]: f.data.params for f in kinds["final"]}
    assert finals["baseline"]["train.optimizer.kind"] == "sgd" and float(finals["baseline"]["train.lr"]) == 20.0
    assert finals["optimizer=adamw"]["train.optimizer.kind"] == "adamw"
    assert float(finals["optimizer=adamw"]["train.lr"]) == pytest.approx(1e-3)
    assert finals["order=random"]["data.order"] == "random" and finals["baseline"]["data.order"] == "stream"
    assert "power: with 2 seeds" in r.output


@pytest.mark.slow
def test_two_workers_complete_the_total(isolated):
    r = cli("tune", "--model", "rnn", "--quick", "--trials", "4", "--workers", "2", "--quiet", "--set", "name=w2", *FAST)
    assert r.exit_code == 0, r.output
    s = study("w2", "rnn")
    assert len(s.trials) == 4 and sorted(t.number for t in s.trials) == [0, 1, 2, 3]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in s.trials)
    _, kinds = tree("w2")
    (root,) = kinds["tune"]
    trials = kinds["trial"]
    assert len(trials) == 4 and all(t.data.tags["mlflow.parentRunId"] == root.info.run_id for t in trials)
    pids = {t.data.tags["lmbench.worker_pid"] for t in trials}
    assert len(pids) == 2 and str(os.getpid()) not in pids, "two spawned worker processes ran the trials"


@pytest.mark.parametrize(("args", "where"), [
    (["compare", "--models", "lstm,foo"], "compare.models.1"),
    (["compare", "--trials", "0"], "search.trials"),
    (["compare", "--seeds", "0"], "compare.seeds"),
    (["ablate", "--model", "lstm", "--param", "n_heads"], "--param"),
    (["ablate", "--model", "gpt", "--param", "dropout", "--values", "abc"], "model.config.dropout"),
    (["ablate", "--model", "gpt", "--param", "dropout", "--values", "2.0"], "model.config.dropout"),
    (["tune", "--model", "gru", "--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage"),
    (["compare", "--set", "search.space.lstm.dropout={float: [0.5, 0.1]}"], "search.space.lstm.dropout"),
    (["compare", "--set", "search.space.lstm.heads={int: [1, 2]}"], "search.space.lstm.heads"),
])
def test_bad_input_exits_2_before_anything_is_created(args, where, isolated):
    r = CliRunner().invoke(app, [*args, "--quick", "--quiet"])
    assert r.exit_code == 2, r.output
    assert where in r.output and r.output.strip().count("\n") == 0, r.output
    assert not (isolated / "mlflow.db").exists() and not (isolated / "studies").exists()


def test_unknown_model_lists_the_valid_ones(isolated):
    r = CliRunner().invoke(app, ["compare", "--models", "lstm,foo", "--quick"])
    assert all(name in r.output for name in arch_names())


def test_match_params_sizes_every_model(isolated):
    r = cli("compare", "--models", "lstm,gpt", "--match-params", "30000", "--trials", "2", "--seeds", "1", "--quick",
            "--quiet", "--set", "name=match", *FAST)
    assert r.exit_code == 0, r.output
    runs, kinds = tree("match")
    sized = [x for x in runs if x.data.tags.get("lmbench.kind") in ("trial", "final")]
    assert len(sized) == 6
    for run in sized:
        assert abs(int(run.data.params["params.non_embedding"]) - 30000) <= 0.05 * 30000


def test_run_dispatches_on_the_spec_kind(isolated):
    spec = isolated / "tune.yaml"
    spec.write_text("name: viarun\nkind: tune\nmodel: {arch: gru, preset: small}\n"
                    "data: {size: 8000, seq_len: 16}\ntrain: {budget: {steps: 8}, eval_interval: 4, eval_tokens: 600}\n"
                    "search: {trials: 2, budget: null}\n")
    r = cli("run", str(spec), "--quiet")
    assert r.exit_code == 0, r.output
    assert "best val loss" in r.output
    assert len(study("viarun", "gru").trials) == 2
