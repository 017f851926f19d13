"""The scale section's figures: IsoFLOP curves and the compute-optimal frontier, as PNG bytes.

Colours are the architectures' colours of every report (:func:`lmbench.report.plots.arch_colors`).
A fit is drawn only where it was made: a budget without a fittable parabola shows its points and
no curve, an architecture without a fitted law shows its optima and no line. Laws are solid over
the measured budgets and dashed beyond them (extrapolation); bands are the bootstrap intervals.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

from lmbench.report.plots import DPI, png
from lmbench.stats.scaling import ParabolaFit, ScalingBootstrap

EXTRAPOLATE = 10.0  # laws are drawn (dashed) up to this multiple of the largest fitted budget
FLOOR_STYLE = {"color": "black", "ls": ":", "lw": 1.2}


@contextlib.contextmanager
def _axes_grid(panels: int, width: float, height: float) -> Iterator[tuple]:
    """A figure with ``panels`` axes, at most 4 per row, in the report's style (closed after)."""
    cols = min(panels, 4)
    rows = math.ceil(panels / cols)
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig, axes = plt.subplots(
            rows, cols, figsize=(width * cols, height * rows), dpi=DPI, squeeze=False
        )
        try:
            flat = list(axes.ravel())
            for extra in flat[panels:]:
                extra.set_axis_off()
            yield fig, flat[:panels]
        finally:
            plt.close(fig)


def isoflop_png(
    runs: pd.DataFrame, free: dict[str, ScalingBootstrap], colors: dict[str, str]
) -> bytes:
    """Loss against size, one panel per budget: every seed's run (faint), the mean per size, and
    the fitted parabola with its vertex (a star) where the budget was fittable. (No floor line:
    it would squash the curves; the frontier shows it.)"""
    budgets = sorted(set(runs["compute"]))
    with _axes_grid(len(budgets), 4.2, 3.6) as (fig, axes):
        for ax, compute in zip(axes, budgets, strict=True):
            at = runs[runs["compute"] == compute]
            unfit = []
            for arch, points in at.groupby("arch", sort=False):
                parabola = _parabola(free.get(str(arch)), compute)
                _isoflop_arch(ax, points, parabola, colors.get(str(arch), "#444444"), str(arch))
                if parabola is None or not parabola.fittable:
                    unfit.append(str(arch))
            _log_sizes(ax)
            ax.set_title(f"C = {compute:.3g} FLOPs", fontsize=10)
            if unfit:  # per panel: a budget's fit is its own
                ax.text(
                    0.02,
                    0.98,
                    "no minimum: " + ", ".join(unfit),
                    transform=ax.transAxes,
                    fontsize=7,
                    va="top",
                    color="#56606b",
                )
            ax.set_xlabel("non-embedding parameters N")
        axes[0].set_ylabel("test loss (nats/token)")
        axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the points
        return png(fig)


def _log_sizes(ax) -> None:
    """A log axis of sizes labelled 1k, 2k, 5k, 10k...: readable within one decade too."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _parabola(boot: ScalingBootstrap | None, compute: float) -> ParabolaFit | None:
    if boot is None:
        return None
    return next((p for p in boot.fit.parabolas if p.compute == compute), None)


def _isoflop_arch(
    ax, points: pd.DataFrame, parabola: ParabolaFit | None, color: str, arch: str
) -> None:
    ax.scatter(points["params"], points["loss"], color=color, alpha=0.35, s=14, lw=0)
    means = points.groupby("params")["loss"].mean()
    fitted = parabola is not None and parabola.fittable
    ax.plot(means.index, means.to_numpy(), "o", color=color, ms=5, label=arch)
    if fitted:
        a, b, c = parabola.coef
        grid = np.linspace(math.log(means.index.min()), math.log(means.index.max()), 100)
        ax.plot(np.exp(grid), a * grid**2 + b * grid + c, color=color, lw=1.5)
        ax.plot(
            [parabola.n_opt], [parabola.loss_opt], "*", color=color, ms=14, mec="black", mew=0.6
        )


def frontier_png(
    free: dict[str, ScalingBootstrap],
    fixed: dict[str, ScalingBootstrap],
    colors: dict[str, str],
    floor: float | None,
) -> bytes:
    """Left: L*(C) on log-log axes, the fitted law E + A C^-alpha with its band (and, dotted, the
    law with E at the entropy floor, and the floor itself). Right: N*(C) and its power law."""
    with _axes_grid(2, 5.2, 4.2) as (fig, (loss_ax, size_ax)):
        for arch, boot in free.items():
            color = colors.get(arch, "#444444")
            _frontier_arch(loss_ax, size_ax, boot, fixed.get(arch), color, arch)
        if floor is not None:
            loss_ax.axhline(floor, label="entropy floor", **FLOOR_STYLE)
        for ax in (loss_ax, size_ax):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # labelled 2e10, 3e10... they overlap
            ax.set_xlabel("compute C (training FLOPs)")
        size_ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        size_ax.yaxis.set_major_formatter(EngFormatter(sep=""))
        size_ax.yaxis.set_minor_formatter(NullFormatter())
        loss_ax.set_ylabel("compute-optimal test loss L*")
        size_ax.set_ylabel("compute-optimal size N*")
        loss_ax.legend(fontsize=7)
        return png(fig)


def _frontier_arch(
    loss_ax, size_ax, boot: ScalingBootstrap, fixed: ScalingBootstrap | None, color: str, arch: str
) -> None:
    if not boot.budgets:
        return
    compute = np.array([b.compute for b in boot.budgets])
    for ax, key in ((loss_ax, "loss_opt"), (size_ax, "n_opt")):
        est = np.array([getattr(b, key).estimate for b in boot.budgets])
        low = np.array([getattr(b, key).low for b in boot.budgets])
        high = np.array([getattr(b, key).high for b in boot.budgets])
        yerr = np.nan_to_num(np.vstack([est - low, high - est]), nan=0.0).clip(min=0)
        ax.errorbar(compute, est, yerr=yerr, fmt="o", color=color, capsize=3, ms=5, label=arch)
    grid = np.geomspace(compute.min(), compute.max() * EXTRAPOLATE, 80)
    inside = grid <= compute.max() * (1 + 1e-9)
    law = boot.fit.loss_law
    if law.fittable:
        _solid_then_dashed(loss_ax, grid, np.asarray(law.predict(grid)), inside, color)
        band = _law_band(boot, grid)
        if band is not None:
            loss_ax.fill_between(grid, band[0], band[1], color=color, alpha=0.15, lw=0)
    if fixed is not None and fixed.fit.loss_law.fittable:
        values = np.asarray(fixed.fit.loss_law.predict(grid))
        _solid_then_dashed(loss_ax, grid, values, inside, color, style=":")
    size_law = boot.fit.n_opt_law
    if size_law.fittable:
        _solid_then_dashed(size_ax, grid, np.asarray(size_law.predict(grid)), inside, color)


def _solid_then_dashed(
    ax, grid: np.ndarray, values: np.ndarray, inside: np.ndarray, color: str, style: str = "-"
) -> None:
    """A law over the measured budgets, then beyond them marked as extrapolated: dashed (or, for
    a dotted law, faded)."""
    ax.plot(grid[inside], values[inside], style, color=color, lw=1.6 if style == "-" else 1.2)
    outside = ~inside
    outside[np.argmax(outside) - 1] = True  # join the extrapolated part to the measured one
    beyond = {"ls": "--", "lw": 1.2} if style == "-" else {"ls": style, "lw": 1.2, "alpha": 0.45}
    ax.plot(grid[outside], values[outside], color=color, **beyond)


def _law_band(boot: ScalingBootstrap, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Pointwise percentile band of the resampled laws (E, A, alpha) over ``grid``."""
    samples = boot.law_samples[np.isfinite(boot.law_samples).all(axis=1)]
    if len(samples) < 2:
        return None
    floor, amplitude, alpha = (samples[:, [k]] for k in range(3))
    curves = floor + amplitude * grid[None, :] ** -alpha
    tail = (1 - boot.percentile_level) / 2
    return np.quantile(curves, tail, axis=0), np.quantile(curves, 1 - tail, axis=0)
