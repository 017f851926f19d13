"""Fits for IsoFLOP scaling studies: per-budget parabolas, power laws across budgets, bootstrap
confidence intervals over seeds, and crossovers between architectures. Pure numerics.

The pipeline (Chinchilla "approach 2", Hoffmann et al. 2022):

1. **Per budget** C, loss against log N (N = non-embedding parameters) is fitted by the parabola
   ``loss = a (ln N)^2 + b ln N + c`` by least squares on every seed's point. Its vertex gives the
   compute-optimal size ``N*(C) = exp(-b / 2a)`` and loss ``L*(C)``. A vertex is only trusted when
   it lies strictly inside the measured sizes: an extrapolated minimum is a guess, so the budget
   is reported as not fittable, with the sizes to add (:func:`fit_parabola`).
2. **Across budgets**, ``N*(C) = k C^a`` is a straight line in log-log (:func:`fit_n_opt_law`) and
   ``L*(C) = E + A C^-alpha`` (E: irreducible loss) is fitted by bounded least squares on L* with
   E >= 0, A > 0, alpha > 0 (:func:`fit_loss_law`). For fixed alpha the model is linear in (E, A),
   so the fit profiles alpha: a log grid over all of ``ALPHA_BOUNDS`` finds the basin (no initial
   guess to get wrong), golden-section search polishes it, and (E, A) come in closed form. Every
   step is vectorised over many loss vectors, which is what makes the bootstrap cheap. E can also
   be fixed to a known floor (the entropy of a synthetic corpus).
3. **Bootstrap over seeds** (:func:`bootstrap_scaling`): the seed values are resampled, the whole
   pipeline is refitted, and percentile intervals are reported. When every point has the same seed
   set (of >= ``MIN_WHOLE_SEEDS`` seeds), whole seeds are resampled (a seed's shared data order /
   init stays together, and resamples are paired across architectures); otherwise each point's
   seeds are resampled on their own. Resamples in which any fit fails are dropped and counted.
4. **Crossovers** (:func:`find_crossover`, :func:`crossover`): where two fitted L*(C) curves cross,
   searched on log C over [C_min, horizon * C_max], with a paired bootstrap interval.

Results are small frozen dataclasses whose ``to_dict()`` is JSON-safe (non-finite numbers -> None).

Known limits, measured on synthetic data (independent noise per run, nominal 95%, 5 budgets x 5
sizes): per-point resampling with 3 seeds covers alpha ~0.935 of the time but one budget's L* only
~0.88 (L* rests on the few runs near the vertex, ~6 effective degrees of freedom, where a
percentile interval is as optimistic as a z interval); whole-seed resampling of 4-5 seeds covers
alpha ~0.90-0.92 even after the t correction. More seeds are the real fix. With exactly three
budgets a free-E law has as many parameters as points: it interpolates (rmse 0), so alpha's
interval is wide and resamples whose alpha runs to a bound are dropped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lmbench.stats.inference import CONFIDENCE, _check_confidence

__all__ = [
    "ALPHA_BOUNDS",
    "CROSSOVER_HORIZON",
    "DEFAULT_RATIO",
    "MIN_WHOLE_SEEDS",
    "POINT_COLUMNS",
    "BudgetInterval",
    "Crossover",
    "Interval",
    "LossLawFit",
    "ParabolaFit",
    "PowerLawFit",
    "ScalingBootstrap",
    "ScalingFit",
    "bootstrap_scaling",
    "crossover",
    "find_crossover",
    "fit_loss_law",
    "fit_n_opt_law",
    "fit_parabola",
    "fit_scaling",
    "size_ladder",
    "tokens_for_budget",
]

DEFAULT_RATIO = 2.0
"""Size ratio between neighbouring ladder rungs when it cannot be read off the data."""

ALPHA_BOUNDS = (1e-4, 5.0)
"""Search range of the loss-law exponent; a fit that runs into either end is not identified."""

MIN_WHOLE_SEEDS = 4
"""Fewest shared seeds for which ``resampling="auto"`` resamples whole seeds (35 distinct draws)."""

CROSSOVER_HORIZON = 100.0
"""Crossovers are searched up to this multiple of the largest measured budget."""

POINT_COLUMNS = ("compute", "params", "seed", "loss")
"""Columns of the run table the fits read (plus an optional ``arch``): one row per run."""

_NAN = float("nan")
# the profile error is smooth in log alpha, so the neighbours of its minimum on a grid 5.6% apart
# bracket the true minimum; golden-section search then narrows that bracket below 1e-9
_ALPHA_GRID = np.log(np.geomspace(*ALPHA_BOUNDS, 200))
_GOLDEN_STEPS = 40
_CROSSING_GRID = 512
_BISECTION_STEPS = 60

# fit status codes, shared by the scalar fits and their vectorised bootstrap twins
_OK, _NO_MINIMUM, _BELOW, _ABOVE, _NOT_DECREASING, _AT_BOUND = range(6)

# ---------------------------------------------------------------------------------------------
# result types


def _json_safe(value: Any) -> Any:
    if isinstance(value, _Result):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


class _Result:
    """Base of the result dataclasses: ``to_dict()`` for results.json / scaling.csv."""

    def to_dict(self) -> dict[str, Any]:
        """Fields as JSON-safe values: nested results as dicts, tuples as lists, NaN/inf as None.
        Bulky per-resample arrays (field metadata ``export=False``) are left out."""
        return {
            spec.name: _json_safe(getattr(self, spec.name))
            for spec in dataclasses.fields(self)  # type: ignore[arg-type]
            if spec.metadata.get("export", True)
        }


@dataclass(frozen=True)
class ParabolaFit(_Result):
    """One architecture at one budget: ``loss = a (ln N)^2 + b ln N + c`` and its vertex.

    ``fittable`` False means no trustworthy optimum (``reason`` says why; ``n_opt`` and ``loss_opt``
    are NaN) and ``suggested_sizes`` lists the sizes to train next to bracket the optimum.
    """

    compute: float
    fittable: bool
    reason: str
    n_opt: float
    loss_opt: float
    coef: tuple[float, float, float]  # (a, b, c); NaN when no parabola could be fitted
    sizes: tuple[float, ...]  # distinct measured sizes, ascending
    suggested_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class PowerLawFit(_Result):
    """Compute-optimal size against compute: ``N*(C) = k C^a``."""

    fittable: bool
    reason: str
    coefficient: float  # k
    exponent: float  # a
    n_budgets: int

    def predict(self, compute: float | np.ndarray) -> float | np.ndarray:
        return self.coefficient * np.asarray(compute, dtype=float) ** self.exponent


@dataclass(frozen=True)
class LossLawFit(_Result):
    """Compute-optimal loss against compute: ``L*(C) = E + A C^-alpha``.

    ``floor_fixed``: E was given (not fitted). ``rmse``: root mean squared residual on L*; with
    exactly three budgets and a free E the law interpolates, so it is 0 and says nothing about fit.
    """

    fittable: bool
    reason: str
    floor: float  # E, the irreducible loss
    amplitude: float  # A
    alpha: float
    floor_fixed: bool
    n_budgets: int
    rmse: float = _NAN

    def predict(self, compute: float | np.ndarray) -> float | np.ndarray:
        log_c = np.log(np.asarray(compute, dtype=float))
        values = _law_values(np.array([[self.floor, self.amplitude, self.alpha]]), log_c.ravel())[0]
        return float(values[0]) if log_c.ndim == 0 else values.reshape(log_c.shape)


@dataclass(frozen=True)
class ScalingFit(_Result):
    """The whole point-estimate pipeline for one architecture: a parabola per budget (ascending C),
    then both laws fitted on the budgets whose parabola is fittable."""

    arch: str
    parabolas: tuple[ParabolaFit, ...]
    n_opt_law: PowerLawFit
    loss_law: LossLawFit

    @property
    def fitted(self) -> tuple[ParabolaFit, ...]:
        """The parabolas the laws were fitted on."""
        return tuple(parabola for parabola in self.parabolas if parabola.fittable)


@dataclass(frozen=True)
class Interval(_Result):
    """A point estimate and its bootstrap percentile interval (NaN bounds: not available)."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class BudgetInterval(_Result):
    """Bootstrap intervals of one budget's compute-optimal size and loss."""

    compute: float
    n_opt: Interval
    loss_opt: Interval


@dataclass(frozen=True)
class ScalingBootstrap(_Result):
    """Bootstrap over seeds of one architecture's pipeline (see :func:`bootstrap_scaling`).

    ``resampling``: ``"seeds"`` (whole seeds, paired across architectures) or ``"points"`` (each
    point's seeds on their own). ``percentile_level``: the quantile level the ``confidence``
    intervals were read at (wider than it for whole seeds, see :func:`_percentile_level`).
    ``n_failed``: resamples dropped because a fit failed; intervals come from the other
    ``n_resamples - n_failed``. ``reason`` is non-empty when no interval could
    be computed. ``law_samples`` holds each resample's (E, A, alpha) (NaN rows: failed) for paired
    crossovers; it is not exported by ``to_dict``.
    """

    fit: ScalingFit
    confidence: float
    percentile_level: float
    n_resamples: int
    n_failed: int
    resampling: str
    reason: str
    budgets: tuple[BudgetInterval, ...]
    n_opt_coefficient: Interval
    n_opt_exponent: Interval
    floor: Interval
    amplitude: Interval
    alpha: Interval
    law_samples: np.ndarray = field(repr=False, compare=False, metadata={"export": False})


@dataclass(frozen=True)
class Crossover(_Result):
    """Where the L*(C) curves of ``first`` and ``second`` cross (the lowest crossing if several).

    ``found`` False: no crossing in [c_min, search_max] (``reason`` says so). ``extrapolated``: the
    crossing lies beyond the measured c_max. ``lower_above``: the architecture with the lower loss
    just above the crossing (or everywhere in the window, when there is none). Bootstrap fields
    (NaN / 0 without one): ``fraction_crossing`` of the ``n_resamples`` paired resamples cross in
    the window, and [ci_low, ci_high] is the percentile interval of their crossing compute.
    """

    first: str
    second: str
    found: bool
    reason: str
    compute: float
    extrapolated: bool
    lower_above: str
    c_min: float
    c_max: float
    search_max: float
    ci_low: float = _NAN
    ci_high: float = _NAN
    fraction_crossing: float = _NAN
    n_resamples: int = 0
    n_failed: int = 0
    confidence: float = CONFIDENCE


# ---------------------------------------------------------------------------------------------
# helpers for planning runs


def tokens_for_budget(compute: float, flops_per_token: float) -> float:
    """Training tokens D = C / F that spend compute C (FLOPs) on a model costing F FLOPs per token
    for forward + backward (F ~ 6N for a dense transformer, hence Chinchilla's C ~ 6ND)."""
    if not (compute > 0 and flops_per_token > 0):
        raise ValueError(
            f"compute and flops_per_token must be > 0, got {compute}, {flops_per_token}"
        )
    return compute / flops_per_token


def size_ladder(center: float, n: int, ratio: float = DEFAULT_RATIO) -> tuple[int, ...]:
    """``n`` sizes, neighbours ``ratio`` apart, whose geometric mean is ``center`` (a first guess of
    the optimum), ascending and rounded to integers: an IsoFLOP ladder that brackets the guess."""
    if not (center > 0 and n >= 1 and ratio > 1):
        raise ValueError(f"need center > 0, n >= 1, ratio > 1; got {center}, {n}, {ratio}")
    offsets = np.arange(n) - (n - 1) / 2
    return tuple(max(1, round(center * ratio**offset)) for offset in offsets)


def _ladder_ratio(sizes: np.ndarray, ratio: float | None) -> float:
    """The ladder's step: given, else the geometric mean ratio of the measured sizes."""
    if ratio is not None:
        if not ratio > 1:
            raise ValueError(f"ratio must be > 1, got {ratio}")
        return float(ratio)
    if sizes.size < 2:
        return DEFAULT_RATIO
    return float((sizes[-1] / sizes[0]) ** (1.0 / (sizes.size - 1)))


def _suggest_sizes(sizes: np.ndarray, step: float, side: str, target: float) -> tuple[int, ...]:
    """Sizes that continue the ladder on ``side`` ("below" / "above" / "both") far enough that the
    extrapolated optimum ``target`` (NaN: unknown) gets a measured size beyond it (1-3 rungs)."""
    if side == "both":
        return (round(sizes[0] / step), round(sizes[-1] * step))
    edge = sizes[0] if side == "below" else sizes[-1]
    rungs = 2
    if math.isfinite(target) and target > 0:
        rungs = int(np.clip(math.ceil(abs(math.log(target / edge)) / math.log(step)) + 1, 1, 3))
    factor = 1 / step if side == "below" else step
    return tuple(max(1, round(edge * factor**rung)) for rung in range(1, rungs + 1))


# ---------------------------------------------------------------------------------------------
# per-budget parabola


def _parabola_batch(
    log_n: np.ndarray, losses: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares parabolas in ln N for many loss vectors (rows of ``losses``) at once.

    The design matrix depends only on the sizes, which resampling seeds never changes, so each
    resample's fit is a product with one pseudo-inverse. ln N is centred for conditioning.
    Returns (n_opt, loss_opt, coef, status); coef rows are (a, b, c) of the uncentred ln N.
    """
    center = float(log_n.mean())
    x = log_n - center
    design = np.column_stack([x**2, x, np.ones_like(x)])
    a, b, c = (losses @ np.linalg.pinv(design).T).T
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vertex = -b / (2 * a)
        loss_opt = c - b**2 / (4 * a)
        n_opt = np.exp(center + vertex)
    status = np.select(
        [a <= 0, vertex <= x.min(), vertex >= x.max()], [_NO_MINIMUM, _BELOW, _ABOVE], _OK
    )
    coef = np.column_stack([a, b - 2 * a * center, a * center**2 - b * center + c])
    return n_opt, loss_opt, coef, status


def _unfittable_parabola(
    compute: float,
    sizes: np.ndarray,
    step: float,
    reason: str,
    side: str | None,
    target: float = _NAN,
    coef: tuple[float, float, float] = (_NAN, _NAN, _NAN),
) -> ParabolaFit:
    suggested = _suggest_sizes(sizes, step, side, target) if side and sizes.size else ()
    return ParabolaFit(
        compute, False, reason, _NAN, _NAN, coef, tuple(map(float, sizes)), suggested
    )


def fit_parabola(
    params: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    *,
    compute: float = _NAN,
    ratio: float | None = None,
) -> ParabolaFit:
    """Fit one budget's IsoFLOP curve: ``params`` and ``losses`` have one entry per run (several
    seeds of a size are separate entries; all are fitted, not their mean).

    Not fittable: a non-finite loss (a diverged run is never dropped silently), fewer than 3
    distinct sizes, a <= 0 (no minimum) or a vertex not strictly inside the measured sizes. Then
    ``suggested_sizes`` continues the ladder (step ``ratio``, default: the measured one) towards
    the optimum. ``compute`` only labels the result.
    """
    sizes_arr = np.asarray(params, dtype=float)
    loss_arr = np.asarray(losses, dtype=float)
    if sizes_arr.ndim != 1 or sizes_arr.shape != loss_arr.shape:
        raise ValueError(
            f"params and losses must be 1-D of one length: {sizes_arr.shape}, {loss_arr.shape}"
        )
    if not np.all(np.isfinite(sizes_arr) & (sizes_arr > 0)):
        raise ValueError("params must be finite and > 0")
    sizes = np.unique(sizes_arr)
    step = _ladder_ratio(sizes, ratio)
    if not np.all(np.isfinite(loss_arr)):
        bad = ", ".join(f"{n:.3g}" for n in np.unique(sizes_arr[~np.isfinite(loss_arr)]))
        reason = f"non-finite loss (diverged run?) at N = {bad}: rerun or drop it explicitly"
        return _unfittable_parabola(compute, sizes, step, reason, None)
    if sizes.size < 3:
        reason = f"{sizes.size} distinct size(s); a parabola needs >= 3"
        return _unfittable_parabola(compute, sizes, step, reason, "both")
    n_opt, loss_opt, coef, status = _parabola_batch(np.log(sizes_arr), loss_arr[None, :])
    coefs = (float(coef[0, 0]), float(coef[0, 1]), float(coef[0, 2]))
    code = int(status[0])
    if code == _NO_MINIMUM:
        falling = np.polyfit(np.log(sizes_arr), loss_arr, 1)[0] < 0
        reason = "loss is not convex in log N (a <= 0): no minimum"
        side = "above" if falling else "below"
        return _unfittable_parabola(compute, sizes, step, reason, side, coef=coefs)
    if code in (_BELOW, _ABOVE):
        side, edge = ("below", sizes[0]) if code == _BELOW else ("above", sizes[-1])
        reason = (
            f"minimum at N = {n_opt[0]:.3g} is at/{side} the measured range's edge "
            f"{edge:.3g}: no interior minimum"
        )
        return _unfittable_parabola(compute, sizes, step, reason, side, float(n_opt[0]), coefs)
    return ParabolaFit(
        compute, True, "", float(n_opt[0]), float(loss_opt[0]), coefs, tuple(map(float, sizes))
    )


# ---------------------------------------------------------------------------------------------
# power laws across budgets


def _n_opt_law_batch(log_c: np.ndarray, log_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary least squares of ln N* on ln C for each row of ``log_n``: (ln k, a)."""
    centred = log_c - log_c.mean()
    slope = (log_n - log_n.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)
    return log_n.mean(axis=1) - slope * log_c.mean(), slope


def _budget_arrays(
    compute: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray]:
    log_c = np.log(np.asarray(compute, dtype=float))
    vals = np.asarray(values, dtype=float)
    if log_c.ndim != 1 or log_c.shape != vals.shape:
        raise ValueError(f"compute and {what} must be 1-D of one length")
    if not (np.all(np.isfinite(log_c)) and np.all(np.isfinite(vals))):
        raise ValueError(f"compute must be > 0 and finite, {what} finite")
    return log_c, vals


def fit_n_opt_law(
    compute: Sequence[float] | np.ndarray, n_opt: Sequence[float] | np.ndarray
) -> PowerLawFit:
    """Fit ``N*(C) = k C^a`` as a straight line in log-log; needs >= 2 distinct budgets."""
    log_c, sizes = _budget_arrays(compute, n_opt, "n_opt")
    n_budgets = int(np.unique(log_c).size)
    if n_budgets < 2:
        reason = f"{n_budgets} budget(s) with a fitted optimum; the N* law needs >= 2"
        return PowerLawFit(False, reason, _NAN, _NAN, n_budgets)
    log_k, slope = _n_opt_law_batch(log_c, np.log(sizes)[None, :])
    return PowerLawFit(True, "", float(np.exp(log_k[0])), float(slope[0]), n_budgets)


def _profile_loss_law(
    log_alpha: np.ndarray, scaled: np.ndarray, loss: np.ndarray, floor: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each alpha (shape (R, K)) the best (E, A) in closed form and the squared error.

    ``scaled`` = ln(C / C_min) of the budgets (B,), ``loss`` = L* (R, B). With x = (C/C_min)^-alpha
    the model E + A x is a straight line: the unconstrained regression, or E = 0 through the origin
    when that intercept is negative (the E >= 0 bound is active), or E = floor when fixed. An A <= 0
    (loss not falling) is infeasible: its error is +inf so any feasible alpha wins.
    """
    x = np.exp(-np.exp(log_alpha)[..., None] * scaled)  # (R, K, B)
    y = loss[:, None, :]
    through_origin = (x * y).sum(-1) / (x * x).sum(-1)
    if floor is None:
        x_dev = x - x.mean(-1, keepdims=True)
        slope = (x_dev * (y - y.mean(-1, keepdims=True))).sum(-1) / (x_dev * x_dev).sum(-1)
        intercept = y.mean(-1) - slope * x.mean(-1)
        negative = intercept < 0
        slope = np.where(negative, through_origin, slope)
        intercept = np.where(negative, 0.0, intercept)
    else:
        intercept = np.full(x.shape[:-1], float(floor))
        slope = (x * (y - floor)).sum(-1) / (x * x).sum(-1)
    sse = ((y - intercept[..., None] - slope[..., None] * x) ** 2).sum(-1)
    return intercept, slope, np.where(slope > 0, sse, np.inf)


def _golden_minimize(func: Any, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Vectorised golden-section search: each row's minimiser of ``func`` in [low, high]."""
    ratio = (math.sqrt(5) - 1) / 2
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    f_left, f_right = func(left), func(right)
    for _ in range(_GOLDEN_STEPS):
        go_left = f_left <= f_right  # the minimum is in [low, right]
        low, high = np.where(go_left, low, left), np.where(go_left, right, high)
        kept, f_kept = np.where(go_left, left, right), np.where(go_left, f_left, f_right)
        new = np.where(go_left, high - ratio * (high - low), low + ratio * (high - low))
        f_new = func(new)
        left, f_left = np.where(go_left, new, kept), np.where(go_left, f_new, f_kept)
        right, f_right = np.where(go_left, kept, new), np.where(go_left, f_kept, f_new)
    return (low + high) / 2


def _loss_law_batch(
    log_c: np.ndarray, loss: np.ndarray, floor: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Bounded least squares of ``E + A C^-alpha`` on each row of ``loss`` (R, B).

    Returns (params (R, 3) of (E, A, alpha), status (R,)). The alpha grid finds each row's basin,
    golden-section search polishes it (kept only if it improves on the grid point).
    """
    scaled = log_c - log_c.min()
    grid = np.broadcast_to(_ALPHA_GRID, (loss.shape[0], _ALPHA_GRID.size))
    best = np.argmin(_profile_loss_law(grid, scaled, loss, floor)[2], axis=1)
    last = _ALPHA_GRID.size - 1

    def sse_at(log_alpha: np.ndarray) -> np.ndarray:
        return _profile_loss_law(log_alpha[:, None], scaled, loss, floor)[2][:, 0]

    polished = _golden_minimize(
        sse_at, _ALPHA_GRID[np.maximum(best - 1, 0)], _ALPHA_GRID[np.minimum(best + 1, last)]
    )
    grid_sse, polished_sse = sse_at(_ALPHA_GRID[best]), sse_at(polished)
    log_alpha = np.where(polished_sse <= grid_sse, polished, _ALPHA_GRID[best])
    intercept, slope, _ = _profile_loss_law(log_alpha[:, None], scaled, loss, floor)
    alpha = np.exp(log_alpha)
    # A (C / C_min)^-alpha = A C_min^alpha C^-alpha
    amplitude = slope[:, 0] * np.exp(alpha * log_c.min())
    status = np.select(
        [~np.isfinite(grid_sse), (best == 0) | (best == last)], [_NOT_DECREASING, _AT_BOUND], _OK
    )
    return np.column_stack([intercept[:, 0], amplitude, alpha]), status


def _law_values(law: np.ndarray, log_c: np.ndarray) -> np.ndarray:
    """L*(C) of law rows (E, A, alpha) (R, 3) at ln C: ``log_c`` (G,) gives (R, G), every law at
    every compute; ``log_c`` (R, 1) gives (R, 1), row i's law at its own compute."""
    floor, amplitude, alpha = (law[:, [column]] for column in range(3))
    return floor + np.exp(np.log(amplitude) - alpha * log_c)


def fit_loss_law(
    compute: Sequence[float] | np.ndarray,
    loss_opt: Sequence[float] | np.ndarray,
    *,
    floor: float | None = None,
) -> LossLawFit:
    """Fit ``L*(C) = E + A C^-alpha`` by least squares on L* with E >= 0, A > 0, alpha > 0.

    ``floor``: a known E (e.g. the synthetic corpus's entropy); only A and alpha are fitted then.
    Needs >= 3 distinct budgets with a free E, >= 2 with a fixed one. Not fittable when L* does
    not fall with compute, or when alpha runs into ``ALPHA_BOUNDS`` (the data do not pin it down).
    """
    if floor is not None and not (math.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be finite and >= 0, got {floor}")
    log_c, loss = _budget_arrays(compute, loss_opt, "loss_opt")
    n_budgets, fixed = int(np.unique(log_c).size), floor is not None
    need = 2 if fixed else 3
    if n_budgets < need:
        reason = f"{n_budgets} budget(s) with a fitted optimum; the {'fixed' if fixed else 'free'}"
        reason += f"-E loss law needs >= {need}"
        return LossLawFit(False, reason, _NAN, _NAN, _NAN, fixed, n_budgets)
    law, status = _loss_law_batch(log_c, loss[None, :], floor)
    if status[0] != _OK:
        reason = (
            "L*(C) does not fall with compute (best A <= 0)"
            if status[0] == _NOT_DECREASING
            else f"alpha ran into its search bound {ALPHA_BOUNDS}: the data do not pin it down"
        )
        return LossLawFit(False, reason, _NAN, _NAN, _NAN, fixed, n_budgets)
    rmse = float(np.sqrt(np.mean((_law_values(law, log_c)[0] - loss) ** 2)))
    fitted_floor, amplitude, alpha = map(float, law[0])
    return LossLawFit(True, "", fitted_floor, amplitude, alpha, fixed, n_budgets, rmse)


# ---------------------------------------------------------------------------------------------
# whole pipeline


def _validated_points(points: pd.DataFrame) -> pd.DataFrame:
    missing = [col for col in POINT_COLUMNS if col not in points.columns]
    if missing:
        raise ValueError(f"points lack column(s) {missing}; have {list(points.columns)}")
    frame = points.copy()
    if "arch" not in frame.columns:
        frame["arch"] = ""
    frame["arch"] = frame["arch"].astype(str)
    for col in ("compute", "params", "loss"):
        frame[col] = pd.to_numeric(frame[col]).astype(float)
    positive = np.isfinite(frame[["compute", "params"]].to_numpy()) & (
        frame[["compute", "params"]].to_numpy() > 0
    )
    if not positive.all():
        raise ValueError("compute and params must be finite and > 0")
    if frame.duplicated(["arch", "compute", "params", "seed"]).any():
        raise ValueError("points repeat an (arch, compute, params, seed) run")
    return frame


def _fit_arch(arch: str, runs: pd.DataFrame, floor: float | None) -> ScalingFit:
    parabolas = tuple(
        fit_parabola(group["params"], group["loss"], compute=float(compute))
        for compute, group in runs.groupby("compute", sort=True)
    )
    fitted = [parabola for parabola in parabolas if parabola.fittable]
    budgets = [parabola.compute for parabola in fitted]
    return ScalingFit(
        arch,
        parabolas,
        fit_n_opt_law(budgets, [parabola.n_opt for parabola in fitted]),
        fit_loss_law(budgets, [parabola.loss_opt for parabola in fitted], floor=floor),
    )


def fit_scaling(points: pd.DataFrame, *, floor: float | None = None) -> dict[str, ScalingFit]:
    """Point-estimate pipeline per architecture. ``points``: one row per run with columns
    ``compute`` (FLOPs), ``params`` (non-embedding), ``seed``, ``loss`` and optionally ``arch``
    (absent: one architecture named ""). Budgets whose parabola is not fittable are left out of
    the laws (they stay in ``parabolas`` with their reason and suggested sizes)."""
    frame = _validated_points(points)
    return {
        str(arch): _fit_arch(str(arch), runs, floor)
        for arch, runs in frame.groupby("arch", sort=False)
    }


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
