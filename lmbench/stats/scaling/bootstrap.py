"""Bootstrap confidence intervals over seeds for every fitted quantity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from lmbench.stats.inference import CONFIDENCE, _check_confidence
from lmbench.stats.scaling.fits import (
    _fit_arch,
    _loss_law_batch,
    _n_opt_law_batch,
    _parabola_batch,
    _validated_points,
)
from lmbench.stats.scaling.results import (
    _NAN,
    _OK,
    MIN_WHOLE_SEEDS,
    BudgetInterval,
    Interval,
    ScalingBootstrap,
    ScalingFit,
)

# ---------------------------------------------------------------------------------------------
# bootstrap


@dataclass
class _Draws:
    """Where resampled seed indices come from: one shared (R, S) draw of whole seeds (applied to
    every point, so resamples are paired across points and architectures) or fresh per point."""

    rng: np.random.Generator
    n_resamples: int
    seed_index: np.ndarray | None

    def indices(self, n_values: int) -> np.ndarray:
        if self.seed_index is not None:
            return self.seed_index
        return self.rng.integers(0, n_values, (self.n_resamples, n_values))


def _resampling_mode(frame: pd.DataFrame, requested: str) -> tuple[str, list[Any] | None]:
    """("seeds", the shared seed set) or ("points", None); see :func:`bootstrap_scaling`."""
    if requested not in ("auto", "seeds", "points"):
        raise ValueError(f"resampling must be 'auto', 'seeds' or 'points', got {requested!r}")
    seed_sets = frame.groupby(["arch", "compute", "params"])["seed"].agg(frozenset)
    shared = sorted(seed_sets.iloc[0]) if seed_sets.nunique() == 1 else None
    if requested == "seeds" and shared is None:
        raise ValueError("resampling='seeds' needs every point to have the same seed set")
    if requested == "seeds" or (requested == "auto" and len(shared or ()) >= MIN_WHOLE_SEEDS):
        return "seeds", shared
    return "points", None


def _resampled_runs(
    at_budget: pd.DataFrame, draws: _Draws, small_sample: bool
) -> tuple[np.ndarray, np.ndarray]:
    """ln N per run (n_runs,) and the resampled losses (R, n_runs) of one budget's runs.

    ``small_sample`` scales each resampled deviation from the point's mean by sqrt(m / (m - 1)): a
    plain bootstrap of m values has variance (m - 1)/m of the sample variance, which with 2-3
    seeds makes intervals markedly too narrow (the same reason lmbench uses t, not z, intervals).
    """
    log_parts, loss_parts = [], []
    for params, point in at_budget.groupby("params", sort=True):
        values = point.sort_values("seed")["loss"].to_numpy(dtype=float)
        size, mean = values.size, float(values.mean())
        scale = math.sqrt(size / (size - 1)) if small_sample and size > 1 else 1.0
        loss_parts.append(mean + scale * (values[draws.indices(size)] - mean))
        log_parts.append(np.full(size, math.log(float(params))))
    return np.concatenate(log_parts), np.hstack(loss_parts)


def _resample_optima(
    fit: ScalingFit, runs: pd.DataFrame, draws: _Draws, small_sample: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per resample and fitted budget: (n_opt, loss_opt) (R, B) and whether all parabolas held."""
    shape = (draws.n_resamples, len(fit.fitted))
    n_opt, loss_opt = np.full(shape, _NAN), np.full(shape, _NAN)
    ok = np.ones(draws.n_resamples, dtype=bool)
    for column, parabola in enumerate(fit.fitted):
        at_budget = runs[runs["compute"] == parabola.compute]
        log_n, losses = _resampled_runs(at_budget, draws, small_sample)
        n_opt[:, column], loss_opt[:, column], _, status = _parabola_batch(log_n, losses)
        ok &= status == _OK
    return n_opt, loss_opt, ok


def _resample_laws(
    fit: ScalingFit, n_opt: np.ndarray, loss_opt: np.ndarray, ok: np.ndarray, floor: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Refit both laws on the resamples whose parabolas held: samples (R, 5) of
    (k, a, E, A, alpha) (NaN where not fitted) and the updated success mask."""
    samples, ok = np.full((ok.size, 5), _NAN), ok.copy()
    rows = np.flatnonzero(ok)
    log_c = np.log([parabola.compute for parabola in fit.fitted])
    if fit.n_opt_law.fittable and rows.size:
        log_k, slope = _n_opt_law_batch(log_c, np.log(n_opt[rows]))
        samples[rows, 0], samples[rows, 1] = np.exp(log_k), slope
    if fit.loss_law.fittable and rows.size:
        law, status = _loss_law_batch(log_c, loss_opt[rows], floor)
        samples[rows, 2:] = np.where((status == _OK)[:, None], law, _NAN)
        ok[rows[status != _OK]] = False
    return samples, ok


def _interval(estimate: float, samples: np.ndarray, level: float) -> Interval:
    """Percentile interval: the (1 -+ level)/2 quantiles of the finite bootstrap samples."""
    finite = samples[np.isfinite(samples)]
    if finite.size < 2 or not math.isfinite(estimate):
        return Interval(float(estimate), _NAN, _NAN)
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(low), float(high))


def _percentile_level(confidence: float, n_seeds: int | None, small_sample: bool) -> float:
    """Quantile level of the percentile intervals. Resampling S whole seeds makes every statistic
    (to first order) a mean of S seed-level terms, whose honest interval uses t with S - 1 degrees
    of freedom, not z: so the percentiles are taken at the level where the normal quantile equals
    t_{(1+c)/2, S-1} (Hesterberg's expanded percentile interval; the sqrt(S/(S-1)) part of it is
    the deviation scaling in :func:`_resampled_runs`). Per-point resampling pools many points'
    spreads, so it keeps the nominal level."""
    if not (small_sample and n_seeds and n_seeds > 1):
        return confidence
    from scipy import stats  # on first use (see stats.inference)

    t_quantile = float(stats.t.ppf((1 + confidence) / 2, n_seeds - 1))
    return float(2 * stats.norm.cdf(t_quantile) - 1)


def _law_intervals(
    fit: ScalingFit, samples: np.ndarray, ok: np.ndarray, level: float, floor: float | None
) -> dict[str, Interval]:
    """Intervals of both laws' parameters (columns of ``samples``) over the kept resamples."""
    names = ("n_opt_coefficient", "n_opt_exponent", "floor", "amplitude", "alpha")
    estimates = (
        fit.n_opt_law.coefficient,
        fit.n_opt_law.exponent,
        fit.loss_law.floor,
        fit.loss_law.amplitude,
        fit.loss_law.alpha,
    )
    intervals = {
        name: _interval(estimate, samples[ok, column], level)
        for column, (name, estimate) in enumerate(zip(names, estimates, strict=True))
    }
    if floor is not None and fit.loss_law.fittable:  # given, not estimated: no spread
        intervals["floor"] = Interval(float(floor), float(floor), float(floor))
    return intervals


def _bootstrap_arch(
    fit: ScalingFit, runs: pd.DataFrame, draws: _Draws, settings: dict[str, Any]
) -> ScalingBootstrap:
    level, floor = settings["level"], settings["floor"]
    n_opt, loss_opt, ok = _resample_optima(fit, runs, draws, settings["small_sample"])
    samples, ok = _resample_laws(fit, n_opt, loss_opt, ok, floor)
    reason, n_failed = "", int((~ok).sum())
    if runs.groupby(["compute", "params"]).size().max() < 2:
        reason, ok, n_failed = "one seed per point: no seed spread to resample", ok & False, 0
    elif not fit.fitted:
        reason = "no budget has a fittable parabola"
    budgets = tuple(
        BudgetInterval(
            parabola.compute,
            _interval(parabola.n_opt, n_opt[ok, column], level),
            _interval(parabola.loss_opt, loss_opt[ok, column], level),
        )
        for column, parabola in enumerate(fit.fitted)
    )
    return ScalingBootstrap(
        fit=fit,
        confidence=settings["confidence"],
        percentile_level=level,
        n_resamples=draws.n_resamples,
        n_failed=n_failed,
        resampling=settings["resampling"],
        reason=reason,
        budgets=budgets,
        law_samples=np.where(ok[:, None], samples[:, 2:], _NAN),
        **_law_intervals(fit, samples, ok, level, floor),
    )


def bootstrap_scaling(
    points: pd.DataFrame,
    *,
    floor: float | None = None,
    n_resamples: int = 1000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    resampling: str = "auto",
    small_sample: bool = True,
) -> dict[str, ScalingBootstrap]:
    """Point fits (as :func:`fit_scaling`) plus percentile bootstrap intervals over seeds, per arch.

    Each resample redraws seed values, refits every budget's parabola and both laws on the budgets
    the point fit used; a resample in which any of these fails is dropped and counted in
    ``n_failed``. ``resampling``: ``"seeds"`` redraws whole seeds (needs every point of every
    architecture to have the same seed set; keeps a seed's correlated runs together and pairs the
    architectures), ``"points"`` redraws each point's seeds on its own, ``"auto"`` takes "seeds"
    when possible with >= ``MIN_WHOLE_SEEDS`` seeds: with 2 seeds there are only 3 distinct
    whole-seed resamples (10 with 3 seeds), far too few for a percentile interval.
    ``small_sample`` corrects the bootstrap's small-sample bias towards too narrow intervals:
    resampled deviations are scaled by sqrt(m / (m - 1)) (:func:`_resampled_runs`) and, with
    whole seeds, the percentiles widened for t_{S-1} (:func:`_percentile_level`); False gives the
    plain percentile bootstrap. Even so, intervals from a handful of seeds tend to be somewhat too
    narrow (see the module notes). A point with a single seed adds no
    spread, so intervals then understate uncertainty (all points single-seed: no intervals).
    Resamples are drawn from ``numpy.random.default_rng(seed)``, so results are reproducible.
    """
    confidence = _check_confidence(confidence)
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2, got {n_resamples}")
    frame = _validated_points(points)
    rng = np.random.default_rng(seed)
    mode, shared = _resampling_mode(frame, resampling)
    seed_index = rng.integers(0, len(shared), (n_resamples, len(shared))) if shared else None
    draws = _Draws(rng, n_resamples, seed_index)
    settings = {
        "confidence": confidence,
        "level": _percentile_level(confidence, len(shared) if shared else None, small_sample),
        "floor": floor,
        "small_sample": small_sample,
        "resampling": mode,
    }
    return {
        str(arch): _bootstrap_arch(_fit_arch(str(arch), runs, floor), runs, draws, settings)
        for arch, runs in frame.groupby("arch", sort=False)
    }
