"""The report's figures (seaborn on matplotlib's Agg backend), returned as PNG bytes.

Every architecture has one colour (:func:`arch_colors`) used in every figure and table of every
report; ablated values of one architecture are shades of its colour. Error bars and bands are
the same Student-t 95% intervals as the tables (:func:`lmbench.stats.mean_ci`).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterable, Iterator

import matplotlib

matplotlib.use("Agg")  # files only: never a window, works on headless machines

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import to_hex, to_rgb  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lmbench.models import arch_names
from lmbench.stats import mean_ci  # noqa: E402

DPI = 110
BAND_NOTE = "lines: mean over seeds; bands: 95% t-CI; faint: training loss"


def arch_colors(extra: Iterable[str] = ()) -> dict[str, str]:
    """Architecture -> hex colour: registry order on seaborn's colour-blind palette, so stable."""

    names = list(dict.fromkeys([*arch_names(), *extra]))
    palette = sns.color_palette("colorblind", max(len(names), 1)).as_hex()
    return dict(zip(names, palette, strict=True))


def shades(color: str, n: int) -> list[str]:
    """``n`` shades of one colour, light to dark (the values of one ablated architecture)."""
    base = np.array(to_rgb(color))
    light, dark = base + (1 - base) * 0.6, base * 0.55
    return [to_hex(c) for c in sns.blend_palette([light, base, dark], max(n, 1))][:n]


def t_interval(values) -> tuple[float, float]:
    """seaborn ``errorbar`` callable: the t-interval of the mean (a point when it cannot be estimated)."""
    m, h = mean_ci(np.asarray(values, dtype=float))
    return (m, m) if not math.isfinite(h) else (m - h, m + h)


@contextlib.contextmanager
def figure(width: float, height: float, ncols: int = 1, **kw) -> Iterator[tuple]:
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9):
        fig, axes = plt.subplots(1, ncols, figsize=(width, height), dpi=DPI, squeeze=False, **kw)
        try:
            yield fig, axes[0]
        finally:
            plt.close(fig)


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def curves_png(curves: pd.DataFrame, colors: dict[str, str], log: bool = False, title: str = "") -> bytes:
    """Validation loss vs tokens seen per group: mean line, t-CI band over seeds; training loss faint.

    ``curves``: one row per (group, seed, step) with tokens_seen, val_loss, train_loss.
    """
    df = curves.copy()
    # seeds of one group see the same tokens at a step; the mean keeps the x values shared exactly
    df["tokens"] = df.groupby(["group", "step"])["tokens_seen"].transform("mean")
    order = [g for g in colors if g in set(df["group"])]
    with figure(7.5, 4.3) as (fig, (ax,)):
        train = df.dropna(subset=["train_loss", "tokens"])
        if not train.empty:
            sns.lineplot(train, x="tokens", y="train_loss", hue="group", hue_order=order, palette=colors,
                         errorbar=None, alpha=0.3, lw=1, legend=False, ax=ax)
        val = df.dropna(subset=["val_loss", "tokens"])
        if not val.empty:
            sns.lineplot(val, x="tokens", y="val_loss", hue="group", hue_order=order, palette=colors,
                         errorbar=t_interval, marker="o", markersize=4, ax=ax)
        if log:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("tokens seen" + (" (log)" if log else ""))
        ax.set_ylabel("loss, nats/token" + (" (log)" if log else ""))
        ax.set_title(title or BAND_NOTE, fontsize=9)
        if ax.get_legend() is not None:
            ax.legend(title=None, fontsize=8)
        return png(fig)


def ablation_png(table: pd.DataFrame, color: str, metric: str = "test_loss", label: str = "test loss") -> bytes:
    """Metric vs value per ablated parameter: mean ± 95% CI, the baseline starred and dashed."""
    params = list(dict.fromkeys(table["param"]))
    with figure(min(4.2 * len(params), 12) + 0.8, 3.9, ncols=len(params), sharey=True) as (fig, axes):
        for ax, p in zip(axes, params, strict=True):
            t = table[table["param"] == p].reset_index(drop=True)
            x = np.arange(len(t))
            mean = t[f"{metric}_mean"].to_numpy(float)
            ci = np.nan_to_num(t[f"{metric}_ci"].to_numpy(float))
            ax.errorbar(x, mean, yerr=ci, fmt="o", color=color, capsize=5, lw=1.5, label="mean ± 95% CI")
            base = t["is_baseline"].to_numpy(bool)
            if base.any():
                ax.scatter(x[base], mean[base], marker="*", s=260, color=color, edgecolor="black", zorder=3,
                           label="baseline")
                ax.axhline(mean[base][0], ls="--", lw=0.8, color="grey")
            ax.set_xticks(x, [str(v) for v in t["value"]])
            ax.set_xlabel(str(p))
        axes[0].set_ylabel(f"{label} (mean ± 95% CI)")
        axes[0].legend(fontsize=8)
        return png(fig)


def search_png(trials: pd.DataFrame, importances: dict[str, float], color: str, note: str = "") -> bytes:
    """One study: objective per trial with the best so far, and the parameter importances."""
    with figure(10, 3.8, ncols=2, gridspec_kw={"width_ratios": [3, 2]}) as (fig, (hist, imp)):
        done = trials[trials["state"] == "COMPLETE"].sort_values("number") if not trials.empty else trials
        if not done.empty:
            hist.scatter(done["number"], done["value"], color=color, s=28, label="complete", zorder=3)
            hist.step(done["number"], done["value"].cummin(), where="post", color=color, lw=1.5, label="best so far")
        stopped = trials[trials["state"].isin(["PRUNED", "FAIL"])] if not trials.empty else trials
        if not stopped.empty:  # no final value: ticks along the bottom edge
            hist.scatter(stopped["number"], [0.03] * len(stopped), transform=hist.get_xaxis_transform(),
                         marker="|", s=120, color="grey", label="pruned / failed")
        hist.xaxis.set_major_locator(MaxNLocator(integer=True))
        hist.set_xlabel("trial")
        hist.set_ylabel("validation loss")
        hist.legend(fontsize=8)
        if importances:
            names = list(importances)[::-1]  # most important on top
            imp.barh(names, [importances[n] for n in names], color=color)
            imp.set_xlabel("importance (PED-ANOVA)")
        else:
            imp.set_axis_off()
            imp.text(0.5, 0.5, note or "no importances", ha="center", va="center", wrap=True, fontsize=9)
        return png(fig)
