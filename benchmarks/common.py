"""Shared helpers of the benchmarks: an isolated environment, the spec, A/B timing, the result record.

Every benchmark module is a script with a ``main()`` that prints exactly one JSON object (see
:func:`result`) on stdout; progress goes to stderr. ``run.py`` runs each one in its own process.
A script can also be run alone: ``.venv/bin/python benchmarks/bench_loop.py --smoke``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPEC_PATH = REPO / "experiments" / "shakespeare_char_gpt.yaml"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
NEVER = 10**9  # an eval/checkpoint interval that is never reached inside a timed window


def shakespeare_source() -> Path:
    """The local copy of Tiny Shakespeare the benchmarks use (they never download)."""
    candidates = [
        os.environ.get("LMBENCH_BENCH_SHAKESPEARE"),
        REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt",
        Path("~/.cache/lmbench/data/tinyshakespeare/input.txt").expanduser(),
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise SystemExit(
        "Tiny Shakespeare not found (benchmarks never download): put input.txt in "
        f"{candidates[1]} or point $LMBENCH_BENCH_SHAKESPEARE at it"
    )


def stage_data(data_dir: Path) -> Path:
    """Copy Tiny Shakespeare to ``<data_dir>/tinyshakespeare/input.txt`` (checked by sha256)."""
    dest = data_dir / "tinyshakespeare" / "input.txt"
    if not dest.is_file():
        src = shakespeare_source()
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        if digest != TINYSHAKESPEARE_SHA256:
            raise SystemExit(f"{src} has sha256 {digest}, expected {TINYSHAKESPEARE_SHA256}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    return dest


def bench_env(root: Path) -> dict[str, str]:
    """Environment variables that keep a benchmark off the user's caches, data and MLflow store."""
    return {
        "LMBENCH_BENCH_ROOT": str(root),
        "LMBENCH_DATA_DIR": str(root / "data"),
        "LMBENCH_CACHE_DIR": str(root / "token-cache"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }


def parse_args(description: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    p = argparse.ArgumentParser(description=(description or "").strip().split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, not the numbers")
    p.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    if extra:
        extra(p)
    return p.parse_args()


def setup(args) -> Path:
    """Make the scratch folder the working directory and point lmbench at private data, caches and
    MLflow store: under ``$LMBENCH_BENCH_ROOT`` (set by ``run.py``, so the benchmarks of one run
    share the token cache) or else under the scratch folder itself.
    """
    if args.workdir is None:
        args.workdir = Path(tempfile.mkdtemp(prefix="lmbench-bench-"))
        say(f"scratch folder {args.workdir} (not deleted)")
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update(bench_env(Path(os.environ.get("LMBENCH_BENCH_ROOT") or work)))
    stage_data(Path(os.environ["LMBENCH_DATA_DIR"]))
    os.chdir(work)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return work


def bench_spec(*overrides: str):
    """``experiments/shakespeare_char_gpt.yaml`` on the CPU, plus ``--set``-style overrides."""
    from lmbench.config import load_spec

    return load_spec(SPEC_PATH, ["train.device=cpu", *overrides])


def say(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


def interleaved(pairs: int, run_a: Callable[[], float], run_b: Callable[[], float],
                label: str = "") -> tuple[list[float], list[float]]:
    """Run A and B alternately (A B A B ...), ``pairs`` times each, and return both lists of timings.

    Each pair is two neighbouring runs, so its ratio A/B is nearly free of the machine's slow
    drift; a burst of load that spans two runs spoils two pairs in opposite directions, which
    the median of the ratios (:func:`ratio_stats`) then ignores.
    """
    a_times, b_times = [], []
    for i in range(pairs):
        a, b = run_a(), run_b()
        a_times.append(a)
        b_times.append(b)
        say(f"{label} pair {i + 1}/{pairs}: A {a:.3f}s  B {b:.3f}s  A/B {a / b:.3f}")
    return a_times, b_times


def rounds(n: int, runs: dict[str, Callable[[], float]], label: str = "") -> dict[str, list[float]]:
    """Each of ``runs`` once per round, in order (A B C A B C ...), ``n`` rounds: the timings by
    name. :func:`interleaved` for more than two variants; ratios of any two of them are per round."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(n):
        for name, run in runs.items():
            out[name].append(run())
        say(f"{label} round {i + 1}/{n}: " + "  ".join(f"{k} {v[-1]:.3f}s" for k, v in out.items()))
    return out


def spread(values: list[float]) -> dict[str, Any]:
    """Median and range of a figure measured several times."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "values": [round(v, 6) for v in values]}


def span(stats: dict[str, Any], fmt: str = "{:.2f}") -> str:
    """``median (min-max)`` of :func:`spread` or :func:`ratio_stats`, for a summary line."""
    return f"{fmt.format(stats['median'])} ({fmt.format(stats['min'])}\u2013{fmt.format(stats['max'])})"


def ratio_stats(a: list[float], b: list[float]) -> dict[str, Any]:
    """Median (and spread) of the per-pair ratios A/B."""
    ratios = [x / y for x, y in zip(a, b, strict=True)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "ratios": [round(r, 4) for r in ratios]}


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def result(name: str, *, value: float | None, unit: str, target: str, passed: bool | None,
           summary: str, details: dict[str, Any], smoke: bool) -> dict[str, Any]:
    """The record a benchmark prints: ``passed`` is None when the target is not judged."""
    return {"name": name, "value": value, "unit": unit, "target": target, "passed": passed,
            "summary": summary, "smoke": smoke, "details": details}


def readme_section(command: str, text: str, note: str = "") -> str:
    """A benchmark's section of the README (markdown, under its row of the generated table): the
    command it ran and what that command printed, verbatim."""
    body = text.strip("\n")
    return f"`{command}`{(' ' + note) if note else ''}\n\n```\n{body}\n```\n"


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, default=str), flush=True)


# ---------------------------------------------------------------------------------------------
# driving lmbench's real loop in segments


def make_trainer(spec, data, tracker=None):
    """A :class:`lmbench.training.loop.Trainer` on its own copy of ``spec`` (run_more mutates the budget)."""
    import uuid
    from pathlib import Path

    from lmbench.training.loop import Built, Trainer

    spec = spec.model_copy(deep=True)
    run_id = uuid.uuid4().hex
    return Trainer(spec, data, Built.of(spec, data.vocab_size), run_id=run_id,
                   ckpt_root=Path("checkpoints") / run_id, tracker=tracker, quiet=True)


def run_more(trainer, steps: int) -> None:
    """``steps`` more optimizer steps through the real loop, ``Trainer.run``.

    ``Trainer.run`` stops when ``spec.train.budget`` is spent and takes no step count, so the
    budget is moved forward to ``step + steps``.
    """
    from lmbench.config import BudgetSpec

    trainer.spec.train.budget = BudgetSpec(steps=trainer.loop.step + steps)
    trainer.run()
