"""Results of the scaling fits (frozen dataclasses with JSON-safe ``to_dict``) and the fits' constants."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmbench.stats.inference import CONFIDENCE

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


def _law_values(law: np.ndarray, log_c: np.ndarray) -> np.ndarray:
    """L*(C) of law rows (E, A, alpha) (R, 3) at ln C: ``log_c`` (G,) gives (R, G), every law at
    every compute; ``log_c`` (R, 1) gives (R, 1), row i's law at its own compute."""
    floor, amplitude, alpha = (law[:, [column]] for column in range(3))
    return floor + np.exp(np.log(amplitude) - alpha * log_c)


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
