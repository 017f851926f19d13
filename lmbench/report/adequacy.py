"""Was the comparison adequate? The verdicts of :mod:`lmbench.stats.adequacy`, computed from the
stores like the rest of the report (the same functions ``compare`` and ``ablate`` print them with):
did each model's search level off, did its final runs converge, what could the seeds detect."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lmbench.stats.adequacy import ablation_verdicts, compare_verdicts

FINISHED = ("COMPLETE", "PRUNED", "FAIL")  # trials that used up the budget (not running or queued)
FACTS = {"tuning": "search adequacy", "training": "convergence", "power": "power of the seeds"}


def annotate(sec: Any) -> None:
    """Add a compare or ablate section's verdicts to its facts; mark models still improving in its
    table (``sec``: a :class:`lmbench.report.frames.Section`, which imports this module)."""
    if sec.table is None or sec.table.empty or sec.runs.empty or "test_loss" not in sec.runs:
        return
    per_seed = _per_seed(sec.runs)
    if sec.kind == "compare":
        p_values = {str(m): float(sec.table.at[m, "p_vs_best"]) for m in sec.table.index}
        trials = {st.model: trial_values(st.trials) for st in sec.studies if not st.trials.empty}
        verdicts = compare_verdicts(trials, _curves(sec.curves), per_seed, str(sec.table.index[0]), p_values)
        sec.table["still_improving"] = [verdicts["still_improving"].get(str(m), False) for m in sec.table.index]
    else:
        p_values = {f"{r['param']}={r['value']}": float(r["p"]) for _, r in sec.table.iterrows() if not r["is_baseline"]}
        verdicts = ablation_verdicts(per_seed, "baseline", p_values)
    for key, fact in FACTS.items():
        lines = [line.removeprefix(f"{key}: ") for line in verdicts["lines"] if line.startswith(f"{key}: ")]
        if lines:
            sec.facts[fact] = "; ".join(lines)


def trial_values(trials: pd.DataFrame) -> list[float | None]:
    """A study's finished trials in order (Optuna's trials frame): the value of a complete one,
    None for a pruned or failed one."""
    done = trials[trials["state"].isin(FINISHED)].sort_values("number")
    return [float(v) if s == "COMPLETE" and _finite(v) else None for s, v in zip(done["state"], done["value"],
                                                                                   strict=True)]


def _per_seed(runs: pd.DataFrame) -> dict[str, dict[Any, float]]:
    out: dict[str, dict[Any, float]] = {}
    for group, seed, loss in zip(runs["group"], runs["seed"], runs["test_loss"], strict=True):
        out.setdefault(str(group), {})[seed] = float(loss)
    return out


def _curves(curves: pd.DataFrame) -> dict[str, list[list[tuple[float, float]]]]:
    """Per group, each seed's validation curve as (step, val_loss) points."""
    out: dict[str, list[list[tuple[float, float]]]] = {}
    if curves.empty or "val_loss" not in curves:
        return out
    for (group, _), run in curves.groupby(["group", "seed"], sort=False):
        points = run.dropna(subset=["val_loss"])
        out.setdefault(str(group), []).append(list(zip(points["step"], points["val_loss"], strict=True)))
    return out


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
