"""End-to-end training: real data, real models, a real MLflow SQLite store in a temp dir."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.config import BudgetSpec, ScheduleSpec, build_spec
from lmbench.models import arch_names
from lmbench.tracking.tracker import Tracker
from lmbench.training.loop import NonFiniteLoss
from lmbench.training.run import train
from lmbench.training.schedule import Schedule, progress

QUICK = ["model.preset=small", "train.budget={steps: 24}", "train.eval_interval=8", "train.eval_tokens=1500",
         "train.log_interval=1", "train.batch_size=8", "data.seq_len=24", "data.size=12000",
         "train.device=cpu", "train.checkpoint_interval=5"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating MLflow's schema costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def client(uri: str) -> MlflowClient:
    return MlflowClient(uri)


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, key))


@pytest.mark.parametrize("arch", arch_names())
def test_quick_train_every_architecture_lands_in_mlflow(arch, store, isolated):
    result = CliRunner().invoke(app, ["train", "--model", arch, "--quick", "--quiet", "--tracking-uri", store,
                                      "--device", "cpu", "--set", "name=e2e"])
    assert result.exit_code == 0, result.output
    c = client(store)
    exp = c.get_experiment_by_name("e2e")
    runs = c.search_runs([exp.experiment_id], f"tags.`lmbench.model` = '{arch}'", order_by=["start_time DESC"])
    run = runs[0]
    assert run.info.status == "FINISHED"
    p, t, m = run.data.params, run.data.tags, run.data.metrics
    assert p["model.arch"] == arch and p["data.source"] == "synthetic" and p["train.budget.steps"] == "40"
    assert int(p["params.non_embedding"]) > 0
    for tag in ("lmbench.git_sha", "lmbench.spec_hash", "lmbench.version", "torch.version", "device", "device.name"):
        assert t.get(tag), tag
    assert len(history(store, run.info.run_id, "train_loss")) == 8  # 40 steps, logged every 5
    assert len(history(store, run.info.run_id, "val_loss")) == 2
    assert m["test_ppl"] == pytest.approx(math.exp(m["test_loss"]), rel=1e-6)
    assert m["test_excess"] == pytest.approx(m["test_loss"] - m["test_floor"], abs=1e-9)
    assert 0 <= m["test_accuracy"] <= 1 and m["test_floor"] > 0
    assert m["final_val_loss"] > 0 and m["test_bits_per_char"] > 0
    arts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"spec.yaml", "tokenizer", "checkpoint", "curve.png", "summary.json"} <= arts
    ckpt = {a.path for a in c.list_artifacts(run.info.run_id, "checkpoint")}
    assert {"checkpoint/model.safetensors", "checkpoint/model.json"} <= ckpt
    png = Path(c.download_artifacts(run.info.run_id, "curve.png", str(isolated)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _train(store, overrides, **kw):
    spec = build_spec({"name": "unit"}, QUICK + overrides)
    return train(spec, tracker=Tracker(spec.experiment_name, store), quiet=True, **kw)


@pytest.mark.parametrize("arch", ["lstm", "gpt"])
def test_resume_reproduces_the_uninterrupted_losses(arch, store, isolated):
    """Deterministic CPU run interrupted at step 10 and resumed == the uninterrupted run."""
    common = [f"model.arch={arch}", "model.config.dropout=0.2", "train.deterministic=true"]
    full = _train(store, common)

    def interrupt(step, tokens, metrics):
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(store, common, on_step=interrupt, workdir=isolated / "b")
    c = client(store)
    killed = c.search_runs([c.get_experiment_by_name("unit").experiment_id], order_by=["start_time DESC"])[0]
    assert killed.info.status == "KILLED"
    assert killed.data.tags["lmbench.stop_reason"] == "interrupted at step 10"

    # lstm resumes from the checkpoint path, gpt from the MLflow run id: both forms of --resume
    target = str(isolated / "b" / "checkpoints" / killed.info.run_id) if arch == "lstm" else killed.info.run_id
    result = CliRunner().invoke(app, ["train", "--resume", target, "--tracking-uri", store, "--quiet"])
    assert result.exit_code == 0, result.output
    resumed = c.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED"
    a = history(store, full.run_id, "train_loss")
    b = history(store, killed.info.run_id, "train_loss")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 25))
    assert [v for _, v in a] == pytest.approx([v for _, v in b], rel=1e-6, abs=1e-7)
    assert resumed.data.metrics["test_loss"] == pytest.approx(full.final["test_loss"], rel=1e-6)


def test_exception_marks_run_failed(store):
    def crash(step, tokens, metrics):
        if step == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        _train(store, [], on_step=crash)
    run = _latest(store)
    assert run.info.status == "FAILED"
    assert "simulated crash" in run.data.tags["lmbench.failure"]


def test_nan_loss_fails_the_run_with_the_reason(store, monkeypatch):
    from lmbench.training import loop as train_mod

    holder = {}
    orig = train_mod.Trainer.__init__

    def init(self, *a, **k):  # keep a handle on the model so the hook can corrupt it
        orig(self, *a, **k)
        holder["model"] = self.model

    def poison(step, tokens, metrics):
        if step == 2:
            for p in holder["model"].parameters():
                p.data.fill_(float("nan"))

    monkeypatch.setattr(train_mod.Trainer, "__init__", init)
    spec = build_spec({"name": "unit"}, QUICK + ["model.arch=gru"])
    with pytest.raises(NonFiniteLoss):
        train(spec, tracker=Tracker("unit", store), quiet=True, on_step=poison)
    run = _latest(store)
    assert run.info.status == "FAILED"
    assert "non-finite training loss" in run.data.tags["lmbench.failure"]


def _latest(store):
    c = client(store)
    return c.search_runs([c.get_experiment_by_name("unit").experiment_id], order_by=["start_time DESC"])[0]


def test_early_stopping_when_validation_stalls(store):
    # an lr so small that fp32 weights cannot change: validation loss is exactly flat
    result = _train(store, ["model.arch=rnn", "train.lr=1e-12", "train.weight_decay=0", "train.early_stopping=2",
                            "train.budget={steps: 1000}", "train.schedule.kind=constant"])
    assert result.stop_reason == "early_stopping"
    assert result.steps == 24  # first eval sets the best, two more without improvement
    assert _latest(store).data.tags["lmbench.stop_reason"] == "early_stopping"


def test_token_and_seconds_budgets(store):
    r = _train(store, ["model.arch=gpt", "train.budget={tokens: 1000}"])
    per_step = 8 * 24
    assert 1000 <= r.tokens < 1000 + per_step and r.steps == math.ceil(1000 / per_step)
    t0 = time.perf_counter()
    r = _train(store, ["model.arch=gpt", "train.budget={seconds: 1.5}"])
    assert r.seconds >= 1.5 and r.stop_reason == "budget"
    assert time.perf_counter() - t0 < 60


def test_schedules():
    cos = Schedule(ScheduleSpec(kind="cosine", warmup_steps=10, min_lr_ratio=0.1), 1.0)
    assert cos.lr(0, 0.0) == pytest.approx(0.1)  # warmup 1/10
    assert cos.lr(50, 0.5) == pytest.approx(0.55)
    assert cos.lr(99, 1.0) == pytest.approx(0.1)
    exp = Schedule(ScheduleSpec(kind="exponential", gamma=0.5), 2.0)
    assert exp.lr(3, 0.3) == pytest.approx(0.25)
    pl = Schedule(ScheduleSpec(kind="plateau", factor=0.5, patience=1), 1.0)
    for loss in (1.0, 1.0, 1.0):  # one improvement then two stalls > patience 1
        pl.on_eval(loss)
    assert pl.lr(5, 0.5) == pytest.approx(0.5)
    restored = Schedule(ScheduleSpec(kind="plateau", factor=0.5, patience=1), 1.0)
    restored.load_state_dict(pl.state_dict())
    assert restored.lr(5, 0.5) == pl.lr(5, 0.5)
    assert progress(BudgetSpec(tokens=100), 3, 50, 9.0) == 0.5
    assert progress(BudgetSpec(seconds=3), 3, 50, 1.5) == 0.5


def test_sigterm_ends_the_run_killed_with_a_checkpoint(store, isolated):
    """A real subprocess killed with SIGTERM: status KILLED, last checkpoint written, resumable."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    cmd = [sys.executable, "-m", "lmbench.cli", "train", "--model", "lstm", "--quiet", "--device", "cpu",
           "--set", "name=sigterm", *[a for o in QUICK for a in ("--set", o)],
           "--set", "train.budget={steps: 1000000}"]  # after QUICK, so the run cannot finish first
    proc = subprocess.Popen(cmd, env=env, cwd=isolated, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    c = client(store)
    run = None
    deadline = time.time() + 120
    while time.time() < deadline:
        exp = c.get_experiment_by_name("sigterm")
        runs = c.search_runs([exp.experiment_id]) if exp else []
        if runs and c.get_metric_history(runs[0].info.run_id, "train_loss"):
            run = runs[0]
            break
        time.sleep(0.5)
    assert run is not None, proc.communicate(timeout=5)[0]
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode != 0, out
    final = c.get_run(run.info.run_id)
    assert final.info.status == "KILLED", out
    ckpt_root = Path(final.data.tags["lmbench.checkpoint_dir"])
    assert (ckpt_root / "last.json").is_file()


def test_cli_lists_models_and_data(isolated):
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0
    for name in arch_names():
        assert name in r.output
    r = CliRunner().invoke(app, ["data"])
    assert r.exit_code == 0 and "tinyshakespeare" in r.output and "synthetic" in r.output


def test_cli_import_is_light():
    """`lmbench --help` must stay fast: the CLI module imports no torch, mlflow or pydantic."""
    code = "import sys, lmbench.cli; print(sorted(m for m in ('torch','mlflow','optuna','pydantic','pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("content", "where"), [
    (None, "missing.txt"),
    (b"", "empty.txt"),
    (b"hello\nworld\xff\xfe more\n" * 3, "bad.txt"),
])
def test_bad_data_exits_2_without_a_run(content, where, isolated):
    path = isolated / where
    if content is not None:
        path.write_bytes(content)
    r = CliRunner().invoke(app, ["train", "--quick", "--quiet", "--data", str(path), "--set", "data.tokenizer=char"])
    assert r.exit_code == 2, r.output
    assert where in r.output
    assert not (isolated / "mlflow.db").exists() and not (isolated / "mlartifacts").exists()
    if where == "bad.txt":
        assert "11" in r.output  # byte offset of the first undecodable byte


def test_compile_flag_trains(store):
    torch._dynamo.reset()
    r = _train(store, ["model.arch=gpt", "train.compile=true", "train.budget={steps: 4}"])
    assert r.steps == 4 and math.isfinite(r.final["test_loss"])


def test_char_data_bits_per_char_equals_bits_per_token(store, shakespeare):
    r = _train(store, ["model.arch=gpt", "data.source=tinyshakespeare", "data.tokenizer=char", "train.budget={steps: 2}",
                       "data.split=[0.98, 0.01, 0.01]"])
    assert r.final["test_bits_per_char"] == pytest.approx(r.final["test_bits_per_token"], rel=1e-9)
    assert "test_floor" not in r.final  # only the synthetic corpus has a known floor


def test_data_command_shows_corpus_stats(isolated):
    r = CliRunner().invoke(app, ["data", "--source", "synthetic", "--set", "data.size=5000"])
    assert r.exit_code == 0, r.output
    assert '"floor"' in r.output and '"train"' in r.output


def test_sigterm_wrapped_in_another_error_still_ends_killed(store, monkeypatch):
    """A SIGTERM that lands inside, e.g., an import surfaces as that import's error: still KILLED."""
    from lmbench.signals import Terminated
    from lmbench.training import run as run_module  # train() calls log_run_artifacts from here

    def interrupted_import(*a, **k):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
        except Terminated as e:
            raise ImportError("initialization failed") from e

    monkeypatch.setattr(run_module, "log_run_artifacts", interrupted_import)
    with pytest.raises(ImportError):
        _train(store, ["model.arch=rnn", "train.budget={steps: 4}"])
    run = _latest(store)
    assert run.info.status == "KILLED"
    assert "lmbench.failure" not in run.data.tags


def test_an_explicit_tracking_uri_does_not_become_the_default(store, monkeypatch):
    """A Tracker on one store must not redirect later default lookups ($MLFLOW_TRACKING_URI stays).

    mlflow.set_tracking_uri writes the environment variable, so a Tracker that called it sent
    every later run of the process (tests, library users, benchmarks) to the first store.
    """
    from lmbench.tracking.tracker import Tracker, resolve_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    Tracker("explicit", store)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert resolve_uri(None).endswith(str(Path("mlflow.db").resolve()))
