"""What lmbench prints: every table whole at 80 columns and when piped, no library INFO chatter.

A cell is found whole in the output (``2.917 ± 0.027``, never ``2.917 ± 0…``) and no line is wider
than the terminal: columns that do not fit go to a continued table that repeats the row labels.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from rich.cells import cell_len
from typer.testing import CliRunner

from lmbench.cli import app
from lmbench.models import describe_archs
from lmbench.stats import format_mean_ci, format_p
from lmbench.tracking.tracker import resolve_uri

NAME = "term"
FAST = ["--quick", "--models", "rnn,gru", "--trials", "2", "--seeds", "2", "--set", f"name={NAME}",
        "--set", "train.budget={steps: 10}", "--set", "train.eval_interval=4", "--set", "data.seq_len=16",
        "--set", "train.eval_tokens=200", "--set", "train.final_eval_tokens=400", "--set", "data.size=4000",
        "--set", "train.log_interval=4"]
# the libraries' routine INFO lines (Optuna, MLflow's store setup, alembic): never on the console
CHATTER = ("A new study created", "Using an existing study", "Creating initial MLflow database tables",
           "Updating database tables", "Context impl", "Will assume transactional DDL")
METRICS = ("test_loss", "test_ppl", "test_accuracy", "test_excess", "params_non_embedding",
           "train_tokens_per_sec", "train_seconds")


@pytest.fixture(scope="module")
def piped(tmp_path_factory) -> tuple[Path, str]:
    """A real quick compare in its own process, stdout and stderr piped into one string."""
    work = tmp_path_factory.mktemp("terminal")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "MLFLOW_TRACKING_URI")}
    env.update(OMP_NUM_THREADS="1", LMBENCH_CACHE_DIR=str(work / "token-cache"))
    r = subprocess.run([sys.executable, "-m", "lmbench.cli", "compare", *FAST], cwd=work, env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    return work, r.stdout


def expected_cells(work: Path) -> list[str]:
    """Every cell of the compare table, formatted from results.json (what the table is made of)."""
    table = json.loads((work / "reports" / NAME / "results.json").read_text())["table"]
    cells = []
    for row in table:
        cells.append(row["model"])
        cells += [format_mean_ci(row[f"{m}_mean"], row[f"{m}_ci"]) for m in METRICS if f"{m}_mean" in row]
        best = row.get("best")
        cells.append("ref" if best else format_mean_ci(row["delta_vs_best"], row["delta_ci"], signed=True))
        cells.append(format_p(row.get("p_vs_best")))
    assert any("±" in c for c in cells)
    return cells


def check_fits(output: str, cells: list[str], width: int = 80) -> None:
    table = [line for line in output.splitlines() if line[:1] in "┏┃┡│└"]  # (a path may be longer)
    assert table, output
    wide = [line for line in table if cell_len(line) > width]
    assert not wide, f"lines wider than {width}:\n" + "\n".join(wide)
    assert "…" not in output, output
    missing = [c for c in cells if c not in output]
    assert not missing, f"cells not shown whole: {missing}\n{output}"


@pytest.mark.slow
def test_piped_compare_shows_every_cell_and_no_library_chatter(piped):
    work, out = piped
    check_fits(out, expected_cells(work))
    said = [line for line in out.splitlines() if any(c in line for c in CHATTER)]
    assert not said, said


def test_studies_name_their_objective_and_curves_end_with_the_budget(piped, monkeypatch):
    import optuna

    from lmbench.report.frames import load_experiment

    work, _ = piped
    monkeypatch.chdir(work)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(f"studies/{NAME}.journal"))
    for arch in ("rnn", "gru"):  # Optuna Dashboard shows "val_loss", not "Objective 0"
        assert optuna.load_study(study_name=f"{NAME}/{arch}", storage=storage).metric_names == ["val_loss"]
    (section,) = load_experiment(NAME).sections
    val = section.curves.dropna(subset=["val_loss"])
    # evaluations every 4 steps of a 10-step budget: 4, 8 and, at the end of the budget, 10
    assert sorted(set(val["step"])) == [4, 8, 10]
    assert (val.groupby(["group", "seed"])["step"].max() == 10).all()


def test_compare_table_at_80_columns(piped, monkeypatch):
    work, _ = piped
    monkeypatch.chdir(work)
    monkeypatch.setenv("LMBENCH_CACHE_DIR", str(work / "token-cache"))
    # the finished command is idempotent: it prints its table again without training
    r = CliRunner().invoke(app, ["compare", "--quiet", *FAST], env={"COLUMNS": "80"}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    check_fits(r.output, expected_cells(work))
    assert "compare (continued)" in r.output  # ten columns do not fit in 80: the rest follow, whole


def test_train_table_at_80_columns():
    r = CliRunner().invoke(app, ["train", "--model", "gru", "--quick", "--quiet", "--set", "train.budget={steps: 4}",
                                 "--set", "train.eval_interval=4", "--set", "data.size=4000",
                                 "--set", "train.final_eval_tokens=400"],
                           env={"COLUMNS": "80"}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    run_id = re.search(r"run ([0-9a-f]{32})", r.output)[1]
    metrics = MlflowClient(resolve_uri(None)).get_run(run_id).data.metrics
    shown = ("loss", "ppl", "accuracy", "bits_per_token", "bits_per_char", "floor", "excess", "bleu")
    cells = [f"{metrics[f'{split}_{m}']:.4f}" for split in ("final_val", "test") for m in shown
             if f"test_{m}" in metrics]
    assert len(cells) >= 10
    check_fits(r.output, cells)


@pytest.mark.parametrize("width", [80, 56])
def test_models_tables_fit(width):
    r = CliRunner().invoke(app, ["models"], env={"COLUMNS": str(width)}, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    cells = [str(v) for arch in describe_archs() for f in arch["fields"] for v in (f["name"], f["type"], f["default"])]
    check_fits(r.output, cells, width)
