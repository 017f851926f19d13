"""Real experiments for the report tests, built once per test session and shared on disk.

``test_report.py``, ``test_report_browser.py`` and ``test_ui_browser.py`` read them; the first module
that asks builds them (a real quick compare and a real quick ablation, ~30 s on 2 cores), the others
find the finished folder. Under pytest-xdist the folder sits in the temp dir all workers share,
built under a file lock, so the modules' workers build it once, not once each. (The tests only
read it: the reports they write go to their own folders.)
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lmbench.cli import app

COMPARE = 'cmp <&"x'  # special characters in the experiment name: escaped everywhere
ABLATE = "abl"
MODELS = ["rnn", "gru", "gpt"]
SEEDS = 2
FAST = ["--quick", "--quiet", "--set", "train.budget={steps: 16}", "--set", "search.budget=null",
        "--set", "train.eval_interval=4", "--set", "train.log_interval=4", "--set", "data.seq_len=16",
        "--set", "train.eval_tokens=600"]
# BLEU of short continuations, so final runs carry test_bleu and samples/samples.json
BLEU = ["--set", "eval.bleu=true", "--set", "eval.bleu_prompts=4", "--set", "eval.samples=3",
        "--set", "eval.prefix_tokens=6", "--set", "eval.continuation_tokens=6"]
# words with markup characters: the generated samples must come out escaped
WORDS = ["the", "cat", "sat", "on", "a", "mat", "<b>", "&", '"yes"', "R&D", "</i>", "and", "dog", "ran", "<script>"]


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def write_corpus(path: Path, n_lines: int = 600) -> None:
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12)))
                              for _ in range(n_lines)) + "\n")


def build(work: Path) -> dict[str, object]:
    """A quick compare (synthetic data) and a quick ablation (a corpus with markup) in ``work``."""
    compare = cli("compare", "--models", ",".join(MODELS), "--trials", "2", "--seeds", str(SEEDS),
                  "--set", f"tracking.experiment={COMPARE}", "--set", "data.size=8000", *FAST)
    assert compare.exit_code == 0, compare.output
    write_corpus(work / "corpus.txt")
    ablate = cli("ablate", "--model", "gru", "--param", "n_layers", "--values", "1,2", "--seeds", str(SEEDS),
                 "--data", "corpus.txt", "--set", f"name={ABLATE}", *FAST, *BLEU)
    assert ablate.exit_code == 0, ablate.output
    return {"compare": compare.output, "ablate": ablate.output}


def shared_experiments(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """The folder with both experiments (stores, studies, reports), built on first use."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker's basetemp is a child of the run's
        root = root.parent
    work = root / "report-experiments"
    with open(root / "report-experiments.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if the build fails
        done = work / "outputs.json"
        if not done.exists():
            shutil.rmtree(work, ignore_errors=True)  # a build that failed half-way
            work.mkdir()
            mp = pytest.MonkeyPatch()
            mp.chdir(work)
            mp.setenv("LMBENCH_CACHE_DIR", str(work / "token-cache"))
            mp.delenv("MLFLOW_TRACKING_URI", raising=False)
            try:
                outputs = build(work)
            finally:
                mp.undo()
            done.write_text(json.dumps(outputs))
    return work, json.loads(done.read_text())
