"""Where two architectures' L*(C) curves cross, with a bootstrap interval."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lmbench.stats.scaling.results import (
    _BISECTION_STEPS,
    _CROSSING_GRID,
    _NAN,
    CROSSOVER_HORIZON,
    Crossover,
    LossLawFit,
    ScalingBootstrap,
    _law_values,
)

# ---------------------------------------------------------------------------------------------
# crossovers


def _first_crossing(law_a: np.ndarray, law_b: np.ndarray, low: float, high: float) -> np.ndarray:
    """ln C of the lowest sign change of L*_a - L*_b in [low, high] (ln C), per row; NaN if none.

    A grid finds the first bracketing pair of points, bisection refines it. Identical curves (a
    zero difference everywhere) do not count as crossing.
    """
    grid = np.linspace(low, high, _CROSSING_GRID)
    negative = np.signbit(_law_values(law_a, grid) - _law_values(law_b, grid))
    change = negative[:, :-1] != negative[:, 1:]
    found = change.any(axis=1)
    first = np.argmax(change, axis=1)
    lower, upper = grid[first], grid[first + 1]
    lower_negative = negative[np.arange(negative.shape[0]), first]
    for _ in range(_BISECTION_STEPS):
        middle = (lower + upper) / 2
        diff = _law_values(law_a, middle[:, None]) - _law_values(law_b, middle[:, None])
        same_side = np.signbit(diff[:, 0]) == lower_negative
        lower, upper = np.where(same_side, middle, lower), np.where(same_side, upper, middle)
    return np.where(found, (lower + upper) / 2, _NAN)


def _lower_above(law_a: LossLawFit, law_b: LossLawFit, names: tuple[str, str], log_c: float) -> str:
    loss_a, loss_b = (float(law.predict(math.exp(log_c))) for law in (law_a, law_b))
    if loss_a == loss_b:
        return ""
    return names[0] if loss_a < loss_b else names[1]


def find_crossover(
    law_a: LossLawFit,
    law_b: LossLawFit,
    c_min: float,
    c_max: float,
    *,
    names: tuple[str, str] = ("a", "b"),
    horizon: float = CROSSOVER_HORIZON,
) -> Crossover:
    """Compute where two L*(C) laws cross, searched on log C in [c_min, horizon * c_max] (c_min,
    c_max: the measured budgets). Point estimate only; :func:`crossover` adds a bootstrap CI."""
    if not (0 < c_min <= c_max and horizon >= 1):
        raise ValueError(
            f"need 0 < c_min <= c_max and horizon >= 1; got {c_min}, {c_max}, {horizon}"
        )
    search_max = horizon * c_max
    low, high = math.log(c_min), math.log(search_max)
    found, cross, lower = False, _NAN, ""
    laws = zip(names, (law_a, law_b), strict=True)
    unfit = [f"{name}: {law.reason}" for name, law in laws if not law.fittable]
    if unfit:
        reason = "loss law not fittable (" + "; ".join(unfit) + ")"
    else:
        rows = [np.array([[law.floor, law.amplitude, law.alpha]]) for law in (law_a, law_b)]
        log_cross = float(_first_crossing(*rows, low, high)[0])
        found = not math.isnan(log_cross)
        reason = "" if found else f"no crossing within [{c_min:.3g}, {search_max:.3g}] FLOPs"
        cross = math.exp(log_cross) if found else _NAN
        # who is ahead just past the crossing, or anywhere in the window when there is none
        lower = _lower_above(
            law_a, law_b, names, log_cross + 1e-3 * (high - low) if found else high
        )
    return Crossover(
        first=names[0],
        second=names[1],
        found=found,
        reason=reason,
        compute=cross,
        extrapolated=found and cross > c_max,
        lower_above=lower,
        c_min=float(c_min),
        c_max=float(c_max),
        search_max=float(search_max),
    )


def crossover(
    first: ScalingBootstrap, second: ScalingBootstrap, *, horizon: float = CROSSOVER_HORIZON
) -> Crossover:
    """:func:`find_crossover` of two bootstrapped architectures, with a paired bootstrap interval.

    Pass results of one :func:`bootstrap_scaling` call: resample i of both then used the same
    seed draw. The window is the budgets both fitted. The interval is the percentile interval of
    the crossing compute over the paired resamples that cross in the window; ``fraction_crossing``
    says how many do (well below 1: the crossing itself is uncertain, read the interval with care).
    """
    budgets = [[p.compute for p in boot.fit.fitted] for boot in (first, second)]
    if not all(budgets):
        raise ValueError("both architectures need fitted budgets to place a crossover")
    c_min, c_max = max(min(b) for b in budgets), min(max(b) for b in budgets)
    if c_min > c_max:
        raise ValueError(f"the architectures' fitted budgets do not overlap: {budgets}")
    names = (first.fit.arch, second.fit.arch)
    point = find_crossover(
        first.fit.loss_law, second.fit.loss_law, c_min, c_max, names=names, horizon=horizon
    )
    if first.law_samples.shape != second.law_samples.shape:
        raise ValueError("bootstraps differ in n_resamples: run them in one bootstrap_scaling call")
    paired = np.isfinite(first.law_samples).all(1) & np.isfinite(second.law_samples).all(1)
    log_cross = _first_crossing(
        first.law_samples[paired],
        second.law_samples[paired],
        math.log(c_min),
        math.log(point.search_max),
    )
    crossing = log_cross[np.isfinite(log_cross)]
    ci_low = ci_high = _NAN
    if crossing.size >= 2:  # quantiles of ln C: exp keeps them quantiles of C
        tail = (1 - first.percentile_level) / 2
        ci_low, ci_high = np.exp(np.quantile(crossing, [tail, 1 - tail]))
    return dataclasses.replace(
        point,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        fraction_crossing=float(crossing.size / paired.sum()) if paired.any() else _NAN,
        n_resamples=int(paired.sum()),
        n_failed=int((~paired).sum()),
        confidence=first.confidence,
    )
