"""Fits of one sweep: a parabola in log N per budget, then the power laws across budgets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmbench.stats.scaling.results import (
    _ABOVE,
    _ALPHA_GRID,
    _AT_BOUND,
    _BELOW,
    _GOLDEN_STEPS,
    _NAN,
    _NO_MINIMUM,
    _NOT_DECREASING,
    _OK,
    ALPHA_BOUNDS,
    DEFAULT_RATIO,
    POINT_COLUMNS,
    LossLawFit,
    ParabolaFit,
    PowerLawFit,
    ScalingFit,
    _law_values,
)

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
