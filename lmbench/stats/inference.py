"""Honest statistics over a handful of seeds: means with t confidence intervals, paired tests, tables.

Every comparison in lmbench is made over a few seeds (typically 3-5), so:

* **Confidence intervals use the Student t distribution**, not the normal one. With n seeds the
  sample standard deviation is itself a noisy estimate; the t quantile with n - 1 degrees of
  freedom accounts for that (t_{0.975, 2} = 4.30 versus z = 1.96), so a 3-seed CI is honestly wide.
* **Comparisons are paired on seed.** Every model (or ablated value) is trained with the same seeds,
  hence the same initialisation RNG stream and the same data order. Seed-to-seed variance that is
  common to both arms (an easy/hard data order, a lucky init) cancels in the per-seed difference,
  so a paired t test on the differences (``scipy.stats.ttest_rel``) is far more sensitive than an
  unpaired test on the two groups - and it is the correct test for this design.
* **Nothing is silently dropped.** A non-finite value (a diverged run) makes the mean / CI / test it
  takes part in NaN, so it shows up as "-" instead of quietly improving an average.
* **Perplexity is averaged as perplexity.** ``test_ppl_mean`` is the mean of the per-seed
  perplexities (with its CI computed on them). Because exp is convex this is >= exp(mean loss);
  the latter is reported separately as ``ppl_of_mean_loss`` (the perplexity of the average loss,
  i.e. the geometric mean of the per-seed perplexities) - both are labelled, neither is mixed up.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

CONFIDENCE = 0.95
"""Default two-sided confidence level of every interval and table in lmbench."""

_NAN = float("nan")

# ---------------------------------------------------------------------------------------------
# scalar statistics


def _check_confidence(confidence: float) -> float:
    level = float(confidence)
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return level


def _as_float_array(
    values: Sequence[float] | np.ndarray | pd.Series, name: str = "values"
) -> np.ndarray:
    if isinstance(values, pd.Series | pd.Index):
        arr = values.to_numpy(dtype=float, na_value=np.nan)  # nullable dtypes: <NA> -> nan
    else:
        arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _t_quantile(confidence: float, df: int) -> float:
    from scipy import stats  # on first use: ~1 s of import a training worker never needs

    return float(stats.t.ppf((1.0 + confidence) / 2.0, df))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t confidence interval of the mean.

    half-width = t_{(1+c)/2, n-1} * s / sqrt(n), with s the sample standard deviation (ddof=1).
    The t distribution (not the normal) is used because n is a handful of seeds.

    Returns ``(value, nan)`` for a single value (no spread can be estimated), ``(nan, nan)`` for
    no values, and ``(nan, nan)`` if any value is non-finite (NaN or +-inf, e.g. a diverged run):
    such values are never dropped silently.
    """
    level = _check_confidence(confidence)
    sample = _as_float_array(values)
    n_values = sample.size
    if n_values == 0 or not np.all(np.isfinite(sample)):
        return _NAN, _NAN
    mean = float(np.mean(sample))
    if n_values == 1:
        return mean, _NAN
    std = float(np.std(sample, ddof=1))
    return mean, _t_quantile(level, n_values - 1) * std / math.sqrt(n_values)


def paired_test(
    first: Sequence[float], second: Sequence[float], confidence: float = CONFIDENCE
) -> dict[str, float | int]:
    """Paired two-sided t test of ``first`` against ``second``, paired by position (same seed at
    same index).

    Pairing is right here because both arms share seeds and data order; the per-seed difference
    removes the variance common to both. Returns a dict with

    * ``mean_diff``: mean of first - second (negative = ``first`` has the lower value),
    * ``ci``: half-width of the t CI of the mean difference (see :func:`mean_ci`),
    * ``t``: the t statistic and ``p``: its two-sided p-value (``scipy.stats.ttest_rel``),
    * ``n``: number of pairs.

    Edge cases: n < 2 gives NaN ci/t/p (mean_diff is still reported for n == 1); any non-finite
    value gives NaN mean_diff/ci/t/p. When the differences have zero variance (up to float
    rounding: their range is within 16 ulp of the data's magnitude) the test is degenerate:
    ci = 0 and, if the mean difference is also zero (e.g. identical inputs), t = 0, p = 1.0 and
    mean_diff = 0; otherwise (a constant non-zero offset) t = +-inf and p = 0.0.
    Different lengths raise ValueError.
    """
    level = _check_confidence(confidence)
    first_values = _as_float_array(first, "a")
    second_values = _as_float_array(second, "b")
    if first_values.size != second_values.size:
        raise ValueError(f"paired_test needs equal lengths, got {first_values.size} and {second_values.size}")
    n_pairs = int(first_values.size)
    out: dict[str, float | int] = {"mean_diff": _NAN, "ci": _NAN, "t": _NAN, "p": _NAN, "n": n_pairs}
    if n_pairs == 0 or not (np.all(np.isfinite(first_values)) and np.all(np.isfinite(second_values))):
        return out
    diffs = first_values - second_values
    out["mean_diff"] = float(np.mean(diffs))
    if n_pairs == 1:
        return out
    scale = max(float(np.max(np.abs(first_values))), float(np.max(np.abs(second_values))))
    tol = 16.0 * np.finfo(float).eps * scale
    if float(np.ptp(diffs)) <= tol:
        out["ci"] = 0.0
        if abs(out["mean_diff"]) <= tol:
            out.update(mean_diff=0.0, t=0.0, p=1.0)
        else:
            out.update(t=math.copysign(math.inf, out["mean_diff"]), p=0.0)
        return out
    out["ci"] = mean_ci(diffs, level)[1]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        from scipy import stats

        res = stats.ttest_rel(first_values, second_values)
    out["t"] = float(res.statistic)
    out["p"] = float(res.pvalue)
    return out


# ---------------------------------------------------------------------------------------------
