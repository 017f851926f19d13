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


from lmbench.stats.scaling.bootstrap import bootstrap_scaling
from lmbench.stats.scaling.crossover import crossover, find_crossover
from lmbench.stats.scaling.fits import (
    fit_loss_law,
    fit_n_opt_law,
    fit_parabola,
    fit_scaling,
    size_ladder,
    tokens_for_budget,
)
from lmbench.stats.scaling.results import (
    ALPHA_BOUNDS,
    CROSSOVER_HORIZON,
    DEFAULT_RATIO,
    MIN_WHOLE_SEEDS,
    POINT_COLUMNS,
    BudgetInterval,
    Crossover,
    Interval,
    LossLawFit,
    ParabolaFit,
    PowerLawFit,
    ScalingBootstrap,
    ScalingFit,
)

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
