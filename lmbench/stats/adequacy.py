"""Is a comparison adequate? Verdicts on its tuning budget, on training convergence and on the
power of its seeds: pure functions of numbers the runs and studies already hold.

* **Tuning** levelled off when the best value of the study improved by no more than
  :data:`LEVEL_THRESHOLD` (relative) over the last third of its trials; otherwise a ranking may
  reflect the tuning budget rather than the architectures, and the verdict says how many trials
  would put the last real improvement in the first two thirds.
* **Training** converged when the best validation loss improved by no more than
  :data:`CONVERGED_THRESHOLD` (relative) over the last :data:`LAST_STRETCH` of a run (mean over
  the seeds).
* **Power** of a paired t-test on shared seeds (two-sided, alpha :data:`ALPHA`): the smallest
  difference the seeds detect with probability :data:`POWER`, from the sample standard deviation
  of the per-seed differences and the noncentral t distribution (``scipy.stats.nct``, integrated
  directly where scipy's is unreliable), and how many seeds a given difference would need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LEVEL_THRESHOLD = 0.01  # best value of a study: relative improvement that still counts as progress
CONVERGED_THRESHOLD = 0.01  # best validation loss: relative improvement over the last stretch
LAST_STRETCH = 0.2  # the last fifth of a run's budget
ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000  # beyond this a difference is "not detectable at this variance"


# ---------------------------------------------------------------------------------------------
# tuning


@dataclass(frozen=True)
class TuningVerdict:
    """``levelled`` is None when fewer than 3 trials completed (nothing to judge)."""

    trials: int
    completed: int
    window: int  # trials in the last third
    improvement: float  # relative improvement of the best value over the window
    levelled: bool | None
    add: int  # trials to add so that the last third starts after the last real improvement
    threshold: float


def tuning_verdict(values: Sequence[float | None], threshold: float = LEVEL_THRESHOLD) -> TuningVerdict:
    """Verdict on a study's trials in order (``None``/NaN: pruned or failed, no final value)."""
    vals = [math.nan if v is None else float(v) for v in values]
    trials = len(vals)
    window = math.ceil(trials / 3)
    finite = [v for v in vals if math.isfinite(v)]
    if len(finite) < 3:
        return TuningVerdict(trials, len(finite), window, math.nan, None, 0, threshold)
    best = min(finite)
    before = min((v for v in vals[: trials - window] if math.isfinite(v)), default=math.inf)
    improvement = (before - best) / abs(best) if best else before - best
    levelled = bool(improvement <= threshold)
    return TuningVerdict(trials, len(finite), window, improvement, levelled,
                         0 if levelled else _trials_to_level(vals, best, threshold), threshold)


def _trials_to_level(vals: list[float], best: float, threshold: float) -> int:
    """Trials to add so that, with no further progress, the last third follows the first trial
    whose value was within ``threshold`` of the best (``T - ceil(T/3) >= k``)."""
    running = np.fmin.accumulate(np.where(np.isfinite(vals), vals, np.inf))
    k = int(np.argmax(running <= best + threshold * abs(best))) + 1
    total = k
    while total - math.ceil(total / 3) < k:
        total += 1
    return max(1, total - len(vals))


# ---------------------------------------------------------------------------------------------
# training


@dataclass(frozen=True)
class TrainingVerdict:
    """``still_improving`` is None when no run has two evaluations around the last stretch."""

    runs: int
    judged: int
    improvement: float  # mean over the judged runs of the relative improvement in the last stretch
    still_improving: bool | None
    threshold: float
    stretch: float


def training_verdict(curves: Sequence[Sequence[tuple[float, float]]], threshold: float = CONVERGED_THRESHOLD,
                     stretch: float = LAST_STRETCH) -> TrainingVerdict:
    """Verdict on the validation curves of a model's final runs: ``[(step, val_loss), ...]`` each."""
    gains = []
    for curve in curves:
        points = sorted((float(x), float(v)) for x, v in curve if math.isfinite(v))
        if len(points) < 2:
            continue
        cut = points[-1][0] * (1 - stretch)
        before = [v for x, v in points if x <= cut]
        if not before:
            continue
        best = min(v for _, v in points)
        gains.append((min(before) - best) / abs(best) if best else min(before) - best)
    if not gains:
        return TrainingVerdict(len(curves), 0, math.nan, None, threshold, stretch)
    mean = float(np.mean(gains))
    return TrainingVerdict(len(curves), len(gains), mean, bool(mean > threshold), threshold, stretch)


# ---------------------------------------------------------------------------------------------
# power of a paired t-test


def paired_power(difference: float, sd: float, seeds: int, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t-test on ``seeds`` pairs rejects at ``alpha`` when the
    true mean difference is ``difference`` and the differences have standard deviation ``sd``."""
    if seeds < 2 or not math.isfinite(sd) or not math.isfinite(difference):
        return math.nan
    if sd == 0:
        return 1.0 if difference else alpha
    from scipy import integrate
    from scipy import stats as _st  # scipy on first use (see stats.inference)

    df = seeds - 1
    crit = float(_st.t.ppf(1 - alpha / 2, df))
    shift = abs(difference) / sd * math.sqrt(seeds)

    if df > 1:
        power = float(_st.nct.sf(crit, df, shift) + _st.nct.cdf(-crit, df, shift))
        if math.isfinite(power):
            return power
    # T = (Z + shift) / sqrt(V / df) with V ~ chi2(df), integrated over the quantiles of V: scipy's
    # nct is wrong at df = 1 (2 seeds) and gives NaN far in its tails
    def rejects(quantile: float) -> float:
        bound = crit * math.sqrt(float(_st.chi2.ppf(quantile, df)) / df)
        return float(_st.norm.sf(bound - shift) + _st.norm.cdf(-bound - shift))

    return float(integrate.quad(rejects, 0.0, 1.0, limit=200)[0])


def min_detectable_difference(sd: float, seeds: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference detected with probability ``power`` (NaN below 2 seeds)."""
    if seeds < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    from scipy import optimize

    high = sd
    while paired_power(high, sd, seeds, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: paired_power(d, sd, seeds, alpha) - power, 0.0, high, xtol=sd * 1e-9))


def seeds_needed(difference: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 max_seeds: int = MAX_SEEDS) -> int | None:
    """Fewest seeds whose paired test detects ``difference`` with probability ``power``; None when
    more than ``max_seeds`` (or the difference is 0)."""
    if not (math.isfinite(difference) and math.isfinite(sd)) or difference == 0:
        return None
    if sd == 0:
        return 2
    if paired_power(difference, sd, max_seeds, alpha) < power:
        return None
    low, high = 2, max_seeds  # power grows with the seeds: the first one that reaches it
    while low < high:
        mid = (low + high) // 2
        if paired_power(difference, sd, mid, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return low


@dataclass(frozen=True)
class PowerRow:
    """One paired comparison (a model vs the best, a value vs the baseline)."""

    name: str
    seeds: int
    mean_diff: float
    sd: float
    p: float
    detectable: float  # min_detectable_difference
    seeds_for_observed: int | None  # seeds_needed(|mean_diff|)


def power_row(name: str, diffs: Sequence[float], p: float) -> PowerRow:
    """The power of one comparison from its per-seed differences (and its test's p-value)."""
    arr = np.asarray([d for d in diffs if math.isfinite(d)], dtype=float)
    seeds = int(arr.size)
    sd = float(arr.std(ddof=1)) if seeds >= 2 else math.nan
    mean = float(arr.mean()) if seeds else math.nan
    return PowerRow(name, seeds, mean, sd, float(p), min_detectable_difference(sd, seeds),
                    seeds_needed(abs(mean), sd) if seeds >= 2 else None)


# ---------------------------------------------------------------------------------------------
# verdicts in words


def _num(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else "?"


def tuning_text(model: str, verdict: TuningVerdict) -> str:
    if verdict.levelled is None:
        return f"{model}: too few completed trials ({verdict.completed} of {verdict.trials}) to judge the search"
    gain = f"{verdict.improvement:.1%}" if math.isfinite(verdict.improvement) else "everything"
    span = f"the last {verdict.window} of {verdict.trials} trials"
    if verdict.levelled:
        return f"{model}: the search levelled off (best value improved {gain} over {span}; threshold {verdict.threshold:.0%})"
    return (f"{model}: the search is still improving (best value improved {gain} over {span}; threshold "
            f"{verdict.threshold:.0%}): the ranking may reflect the tuning budget - add at least "
            f"{verdict.add} trials (--trials {verdict.trials + verdict.add})")


def training_text(model: str, verdict: TrainingVerdict) -> str:
    if verdict.still_improving is None:
        return f"{model}: too few validation points to judge convergence"
    span = f"the last {verdict.stretch:.0%} of the budget"
    gain = f"{verdict.improvement:.1%}"
    if verdict.still_improving:
        return (f"{model}: still improving at the end of training (validation loss -{gain} over {span}, mean "
                f"of {verdict.judged} runs; threshold {verdict.threshold:.0%}): raise train.budget")
    return f"{model}: converged (validation loss -{gain} over {span}; threshold {verdict.threshold:.0%})"


def power_text(rows: Sequence[PowerRow], reference: str, metric: str = "test loss", alpha: float = ALPHA,
               power: float = POWER) -> list[str]:
    """What the seeds can and cannot tell, in words."""
    judged = [r for r in rows if r.seeds >= 2]
    if not rows:
        return []
    if not judged:
        return ["power: fewer than 2 shared seeds: no paired test is possible (run --seeds 3 or more)"]
    seeds = max(r.seeds for r in judged)
    sizes = ", ".join(f"{r.name} {_num(r.detectable)}" for r in judged)
    lines = [f"power: with {seeds} seeds, the paired tests (α = {alpha:g}) detect with {power:.0%} probability "
             f"only differences in {metric} of at least: {sizes}"]
    if all(not (r.p < alpha) for r in judged):
        largest = max(judged, key=lambda r: abs(r.mean_diff) if math.isfinite(r.mean_diff) else -1)
        need = largest.seeds_for_observed
        seeds_text = (f"about {need} seeds" if need is not None else
                      f"more than {MAX_SEEDS} seeds (not detectable at this variance)")
        lines.append(f"power: nothing differs significantly from {reference}; detecting the largest observed "
                     f"difference ({largest.name}: {largest.mean_diff:+.3g}) with {power:.0%} power would take "
                     f"{seeds_text}")
    return lines


# ---------------------------------------------------------------------------------------------
# a whole comparison


def paired_diffs(per_seed: Mapping[str, Mapping[Any, float]], reference: str) -> dict[str, list[float]]:
    """Per group, its per-seed differences to ``reference`` on the seeds both have."""
    ref = per_seed.get(reference, {})
    return {name: [float(vals[s]) - float(ref[s]) for s in sorted(vals) if s in ref]
            for name, vals in per_seed.items() if name != reference}


def compare_verdicts(trials: Mapping[str, Sequence[float | None]], curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]],
                     per_seed: Mapping[str, Mapping[Any, float]], best: str, p_values: Mapping[str, float],
                     metric: str = "test loss") -> dict[str, Any]:
    """Every verdict of a comparison: per model its tuning and training verdicts, the power of
    the tests against ``best``, the lines to print and which models are still improving."""
    tuning = {model: tuning_verdict(values) for model, values in trials.items()}
    training = {model: training_verdict(c) for model, c in curves.items()}
    rows = [power_row(name, diffs, p_values.get(name, math.nan))
            for name, diffs in paired_diffs(per_seed, best).items()]
    lines = [f"tuning: {tuning_text(m, v)}" for m, v in tuning.items()]
    lines += [f"training: {training_text(m, v)}" for m, v in training.items()]
    lines += power_text(rows, best, metric)
    return {"tuning": {m: asdict(v) for m, v in tuning.items()},
            "training": {m: asdict(v) for m, v in training.items()},
            "power": [asdict(r) for r in rows], "lines": lines,
            "still_improving": {m: bool(v.still_improving) for m, v in training.items()},
            "thresholds": {"tuning": LEVEL_THRESHOLD, "training": CONVERGED_THRESHOLD, "stretch": LAST_STRETCH,
                           "alpha": ALPHA, "power": POWER}}


def ablation_verdicts(per_seed: Mapping[str, Mapping[Any, float]], baseline: str, p_values: Mapping[str, float],
                      metric: str = "test loss") -> dict[str, Any]:
    """The power of every value's paired test against the baseline."""
    rows = [power_row(name, diffs, p_values.get(name, math.nan))
            for name, diffs in paired_diffs(per_seed, baseline).items()]
    return {"power": [asdict(r) for r in rows], "lines": power_text(rows, baseline, metric),
            "thresholds": {"alpha": ALPHA, "power": POWER}}
