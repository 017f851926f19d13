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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table
from scipy import stats as _st

__all__ = [
    "BASELINE_PARAM",
    "CONFIDENCE",
    "ablation_table",
    "compare_table",
    "format_mean_ci",
    "format_number",
    "format_p",
    "mean_ci",
    "paired_test",
    "render_table",
    "value_label",
]

CONFIDENCE = 0.95
"""Default two-sided confidence level of every interval and table in lmbench."""

BASELINE_PARAM = "baseline"
"""``param`` value of ablation rows that hold the shared baseline runs (see :func:`ablation_table`)."""

STAR = "★"

_NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# scalar statistics


def _check_confidence(confidence: float) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return c


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
    return float(_st.t.ppf((1.0 + confidence) / 2.0, df))


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Mean and half-width of the two-sided Student-t confidence interval of the mean.

    half-width = t_{(1+c)/2, n-1} * s / sqrt(n), with s the sample standard deviation (ddof=1).
    The t distribution (not the normal) is used because n is a handful of seeds.

    Returns ``(value, nan)`` for a single value (no spread can be estimated), ``(nan, nan)`` for
    no values, and ``(nan, nan)`` if any value is non-finite (NaN or +-inf, e.g. a diverged run):
    such values are never dropped silently.
    """
    c = _check_confidence(confidence)
    x = _as_float_array(values)
    n = x.size
    if n == 0 or not np.all(np.isfinite(x)):
        return _NAN, _NAN
    mean = float(np.mean(x))
    if n == 1:
        return mean, _NAN
    s = float(np.std(x, ddof=1))
    return mean, _t_quantile(c, n - 1) * s / math.sqrt(n)


def paired_test(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> dict[str, float | int]:
    """Paired two-sided t test of ``a`` against ``b``, paired by position (same seed at same index).

    Pairing is right here because both arms share seeds and data order; the per-seed difference
    removes the variance common to both. Returns a dict with

    * ``mean_diff``: mean of a - b (negative = a has the lower value),
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
    c = _check_confidence(confidence)
    x = _as_float_array(a, "a")
    y = _as_float_array(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired_test needs equal lengths, got {x.size} and {y.size}")
    n = int(x.size)
    out: dict[str, float | int] = {"mean_diff": _NAN, "ci": _NAN, "t": _NAN, "p": _NAN, "n": n}
    if n == 0 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return out
    d = x - y
    out["mean_diff"] = float(np.mean(d))
    if n == 1:
        return out
    scale = max(float(np.max(np.abs(x))), float(np.max(np.abs(y))))
    tol = 16.0 * np.finfo(float).eps * scale
    if float(np.ptp(d)) <= tol:
        out["ci"] = 0.0
        if abs(out["mean_diff"]) <= tol:
            out.update(mean_diff=0.0, t=0.0, p=1.0)
        else:
            out.update(t=math.copysign(math.inf, out["mean_diff"]), p=0.0)
        return out
    out["ci"] = mean_ci(d, c)[1]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = _st.ttest_rel(x, y)
    out["t"] = float(res.statistic)
    out["p"] = float(res.pvalue)
    return out


# ---------------------------------------------------------------------------------------------
# tables


def _metric_columns(runs: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Numeric, non-boolean columns (input order) other than the grouping/pairing keys."""
    cols = []
    for col in runs.columns:
        if col in exclude:
            continue
        dtype = runs[col].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        cols.append(col)
    return cols


def _require(runs: pd.DataFrame, cols: Sequence[str], metric: str) -> None:
    missing = [c for c in cols if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lack column(s) {missing}; have {list(runs.columns)}")
    if metric not in runs.columns:
        raise ValueError(f"metric {metric!r} is not a column of runs; have {list(runs.columns)}")
    dtype = runs[metric].dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        raise ValueError(f"metric {metric!r} must be numeric, got dtype {dtype}")


def _aggregate(group: pd.DataFrame, metrics: Sequence[str], confidence: float) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for m in metrics:
        row[f"{m}_mean"], row[f"{m}_ci"] = mean_ci(group[m], confidence)
    if "test_loss" in metrics:
        row["ppl_of_mean_loss"] = (
            math.exp(row["test_loss_mean"]) if math.isfinite(row["test_loss_mean"]) else _NAN
        )
    row["n_seeds"] = len(group)
    return row


def _paired_on_seed(
    group: pd.DataFrame, ref: pd.DataFrame, metric: str, confidence: float
) -> dict[str, float | int]:
    """Paired test of group[metric] - ref[metric] over the seeds both have (inner join)."""
    joined = group[["seed", metric]].merge(ref[["seed", metric]], on="seed", suffixes=("_x", "_y"))
    return paired_test(joined[f"{metric}_x"], joined[f"{metric}_y"], confidence)


def _check_unique(df: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        shown = df.loc[dup, keys].drop_duplicates().to_dict("records")
        raise ValueError(f"{what}: more than one run for {shown}")


def compare_table(
    runs: pd.DataFrame, metric: str = "test_loss", confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Per-model summary of final multi-seed runs, best model first, with paired tests against it.

    ``runs``: one row per final run with columns ``model``, ``seed`` and numeric metric columns
    (``test_loss``, ``test_ppl``, ``test_accuracy``, ``tokens_per_sec``, ...; any subset, but
    ``metric`` must be present). Every numeric, non-boolean column other than ``seed`` is
    summarised; non-numeric extra columns are ignored. A duplicated (model, seed) raises ValueError.

    Output (index ``model``, sorted by ``{metric}_mean`` ascending - lower is better -, ties keep
    input order, NaN means last), columns in this order:

    * ``X_mean``, ``X_ci`` for every metric column X (mean over seeds, t CI half-width, see
      :func:`mean_ci`); ``test_ppl_mean`` is the mean of per-seed perplexities;
    * ``ppl_of_mean_loss`` = exp(test_loss_mean), only when ``test_loss`` is a column;
    * ``n_seeds``: runs of the model;
    * ``best``: True for the single row with the lowest finite ``{metric}_mean`` (none if all NaN);
    * ``delta_vs_best``, ``delta_ci``, ``p_vs_best``, ``n_paired``: paired t test (see
      :func:`paired_test`) of model - best on ``metric``, over the seeds both have (inner join on
      seed; ``n_paired`` counts them). Positive delta = worse than the best. The best row itself has
      delta_vs_best 0.0, delta_ci NaN, p_vs_best NaN and n_paired = its n_seeds.
    """
    _require(runs, ["model", "seed"], metric)
    c = _check_confidence(confidence)
    _check_unique(runs, ["model", "seed"], "compare_table")
    metrics = _metric_columns(runs, {"model", "seed"})

    groups = {name: g for name, g in runs.groupby("model", sort=False)}
    rows = {name: _aggregate(g, metrics, c) for name, g in groups.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    table = table.sort_values(f"{metric}_mean", kind="stable", na_position="last")

    finite = table[f"{metric}_mean"].map(lambda v: math.isfinite(v))
    best_name = table.index[finite.to_numpy()][0] if finite.any() else None
    table["best"] = [name == best_name for name in table.index]
    tests: list[tuple[float, float, float, int]] = []
    for name in table.index:
        if best_name is None:
            tests.append((_NAN, _NAN, _NAN, 0))
        elif name == best_name:
            tests.append((0.0, _NAN, _NAN, int(table.at[name, "n_seeds"])))
        else:
            r = _paired_on_seed(groups[name], groups[best_name], metric, c)
            tests.append((r["mean_diff"], r["ci"], r["p"], r["n"]))
    for i, col in enumerate(("delta_vs_best", "delta_ci", "p_vs_best")):
        table[col] = np.asarray([t[i] for t in tests], dtype=float)
    table["n_paired"] = np.asarray([t[3] for t in tests], dtype=int)
    table["n_seeds"] = table["n_seeds"].astype(int)
    return table


def value_label(v: Any) -> str:
    """The str under which an ablation value is grouped and shown; integral floats drop ".0".

    (A pandas column mixing 4 and 0.5 holds 4.0; it is labelled "4" like the int 4.)
    """
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return str(int(v))
    return str(v)


def _same_value(v: Any, ref: Any) -> bool:
    """Value equality that tolerates 4 vs 4.0 vs np.int64(4) and falls back to str equality."""
    try:
        eq = v == ref
        if isinstance(eq, bool | np.bool_) and bool(eq):
            return True
    except Exception:  # arbitrary user values may not compare
        pass
    return value_label(v) == value_label(ref)


def ablation_table(
    runs: pd.DataFrame,
    baseline_value: Any,
    metric: str = "test_loss",
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One-factor ablation summary: one row per (param, value), each compared to the baseline.

    ``runs``: one row per seed run with columns ``param``, ``value`` (any printable value),
    ``seed`` and numeric metric columns (as in :func:`compare_table`; ``value`` is never a metric).

    ``baseline_value``: the baseline's value, either one value used for every param or a Mapping
    ``{param: baseline value}`` (a one-factor ablation usually has a different baseline per param).

    Baseline convention - the baseline runs of param P are the union of
      (a) rows with ``param == P`` and ``value == baseline value of P`` (compared with ``==``, falling
          back to ``str`` equality, so 4, 4.0 and "4" match), and
      (b) shared rows with ``param == "baseline"`` (:data:`BASELINE_PARAM`; their ``value`` is
          ignored), which serve every param.
    So the caller may either repeat the baseline runs under each param (a), pass them once as
    shared rows (b), or both; when a seed is in both, the param's own row (a) is used.
    A seed appearing twice in one (param, value) cell otherwise raises ValueError.

    Output: a DataFrame with a RangeIndex and columns, in this order, ``param``, ``value`` (str, see
    :func:`value_label`: integral floats lose ".0", so 4 and 4.0 are one cell),
    ``X_mean``/``X_ci`` for every metric column, ``ppl_of_mean_loss`` (if ``test_loss`` is present),
    ``n_seeds``, ``is_baseline``, ``best`` (lowest finite ``{metric}_mean`` within the param),
    ``delta``, ``delta_ci``, ``p``, ``n_paired`` - a paired t test (:func:`paired_test`) of
    value - baseline on ``metric`` over the seeds both have (inner join on seed).
    The baseline row has delta 0.0, delta_ci/p NaN; with no baseline runs for a param its deltas
    are NaN. Params appear in order of first appearance, values within a param too (the baseline
    row sits where the first of its own rows appears, or first when it has only shared rows).
    When ``runs`` holds only shared baseline rows, the result is that single baseline row.
    """
    _require(runs, ["param", "value", "seed"], metric)
    c = _check_confidence(confidence)
    metrics = _metric_columns(runs, {"param", "value", "seed"})
    per_param = isinstance(baseline_value, Mapping)

    def base_of(param: Any) -> tuple[bool, Any]:
        if per_param:
            return (param in baseline_value, baseline_value.get(param))
        return True, baseline_value

    params = [p for p in pd.unique(runs["param"]) if str(p) != BASELINE_PARAM]
    shared = runs[runs["param"].astype(str) == BASELINE_PARAM]
    _check_unique(shared, ["seed"], "ablation_table (shared baseline rows)")
    if not params:
        if shared.empty:
            raise ValueError("ablation_table: runs is empty")
        has, bv = (True, baseline_value) if not per_param else (False, None)
        params_cells = [(BASELINE_PARAM, value_label(bv) if has else BASELINE_PARAM, shared, True)]
        return _ablation_frame(params_cells, metrics, metric, c)

    cells: list[tuple[Any, str, pd.DataFrame, bool]] = []
    for param in params:
        rows = runs[runs["param"] == param]
        has, bv = base_of(param)
        is_base = (
            rows["value"]
            .map(lambda v, has=has, bv=bv: has and _same_value(v, bv))
            .to_numpy(dtype=bool)
        )
        own_base = rows[is_base]
        if not own_base.empty:
            label = value_label(own_base["value"].iloc[0])
        else:
            label = value_label(bv) if has else BASELINE_PARAM
        keys = rows["value"].map(value_label).to_numpy(dtype=object)
        keys[is_base] = label
        order = list(dict.fromkeys(keys.tolist()))
        if label not in order:
            order.insert(0, label)  # only shared baseline rows: baseline first
        for key in order:
            mask = keys == key
            group = rows[mask]
            if key == label:
                _check_unique(group, ["seed"], f"ablation_table ({param}={key})")
                extra = shared[~shared["seed"].isin(group["seed"])]
                group = pd.concat([group, extra]) if not extra.empty else group
                cells.append((param, key, group, True))
            else:
                _check_unique(group, ["seed"], f"ablation_table ({param}={key})")
                cells.append((param, key, group, False))
    return _ablation_frame(cells, metrics, metric, c)


def _ablation_frame(
    cells: list[tuple[Any, str, pd.DataFrame, bool]],
    metrics: list[str],
    metric: str,
    confidence: float,
) -> pd.DataFrame:
    base_by_param = {p: g for p, _, g, is_b in cells if is_b}
    records = []
    for param, key, group, is_b in cells:
        rec: dict[str, Any] = {"param": param, "value": key}
        rec.update(_aggregate(group, metrics, confidence))
        rec["is_baseline"] = is_b
        base = base_by_param.get(param)
        if is_b:
            rec.update(delta=0.0, delta_ci=_NAN, p=_NAN, n_paired=len(group))
        elif base is None or base.empty:
            rec.update(delta=_NAN, delta_ci=_NAN, p=_NAN, n_paired=0)
        else:
            r = _paired_on_seed(group, base, metric, confidence)
            rec.update(delta=r["mean_diff"], delta_ci=r["ci"], p=r["p"], n_paired=r["n"])
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    # best value per param: lowest finite mean of `metric` (first in order on ties)
    best = np.zeros(len(table), dtype=bool)
    means = table[f"{metric}_mean"].to_numpy(dtype=float)
    for _, idx in table.groupby("param", sort=False).indices.items():
        finite = [i for i in idx if math.isfinite(means[i])]
        if finite:
            best[min(finite, key=lambda i: (means[i], i))] = True
    cols = list(table.columns)
    table.insert(cols.index("is_baseline") + 1, "best", best)
    table["value"] = table["value"].astype(object)
    table["n_seeds"] = table["n_seeds"].astype(int)
    table["n_paired"] = table["n_paired"].astype(int)
    table["is_baseline"] = table["is_baseline"].astype(bool)
    return table


# ---------------------------------------------------------------------------------------------
# rendering

_HEADERS = {
    "test_loss": "test loss",
    "test_ppl": "test ppl",
    "test_accuracy": "test acc",
    "test_excess": "excess",
    "params_non_embedding": "params (non-emb)",
    "tokens_per_sec": "tok/s",
    "train_seconds": "train s",
    "ppl_of_mean_loss": "ppl(mean loss)",
    "n_seeds": "seeds",
    "delta_vs_best": "Δ vs best",
    "p_vs_best": "p",
    "delta": "Δ vs baseline",
    "p": "p",
}
_DELTA_CI = {"delta_vs_best": "delta_ci", "delta": "delta_ci"}
_P_COLUMNS = {"p", "p_vs_best"}


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_number(x: Any, sig: int = 4) -> str:
    """A single number with ``sig`` significant digits; integers (and big values) without decimals."""
    if not _finite(x):
        return "–"
    v = float(x)
    if v == 0:
        return "0"
    if abs(v) >= 10 ** (sig - 1) or (v.is_integer() and abs(v) < 1e15):
        return f"{round(v):,}"
    return f"{v:.{sig}g}"


def format_mean_ci(mean: Any, ci: Any, signed: bool = False) -> str:
    """``mean ± ci`` with the CI to 2 significant digits and the mean to the same decimal place."""
    if not _finite(mean):
        return "–"
    m = float(mean)
    sign = "+" if signed else ""
    if not _finite(ci) or float(ci) == 0:
        tail = " ± 0" if _finite(ci) else ""
        body = format_number(m)
        if signed and m > 0:
            body = "+" + body
        return body + tail
    h = abs(float(ci))
    decimals = 1 - math.floor(math.log10(h))  # 2 significant digits in the CI
    if decimals > 8:
        return f"{m:{sign}.3g} ± {h:.2g}"
    if decimals <= 0:
        q = 10 ** (-decimals)
        return f"{round(m / q) * q:{sign},.0f} ± {round(h / q) * q:,.0f}"
    return f"{m:{sign}.{decimals}f} ± {h:.{decimals}f}"


def format_p(p: Any) -> str:
    """p-value as 0.012, or <0.001 when smaller; '–' when undefined."""
    if not _finite(p):
        return "–"
    v = float(p)
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def _default_columns(df: pd.DataFrame) -> list[tuple[str, str]]:
    cols: list[tuple[str, str]] = []
    if "param" in df.columns:
        cols.append(("param", "param"))
    if "value" in df.columns:
        cols.append(("value", "value"))
    for c in df.columns:
        if isinstance(c, str) and c.endswith("_mean"):
            base = c[: -len("_mean")]
            cols.append((base, _HEADERS.get(base, base)))
    for c in ("ppl_of_mean_loss", "n_seeds", "delta_vs_best", "p_vs_best", "delta", "p"):
        if c in df.columns:
            cols.append((c, _HEADERS[c]))
    return cols


def render_table(
    df: pd.DataFrame, title: str, columns: list[tuple[str, str]] | None = None
) -> Table:
    """A rich Table of a :func:`compare_table` / :func:`ablation_table` result.

    ``columns``: ``(key, header)`` pairs, default: every summarised metric then the derived columns.
    A key X with an ``X_mean`` column renders as "mean ± ci"; ``delta_vs_best``/``delta`` render
    with ``delta_ci`` as a signed "±"; ``p``/``p_vs_best`` as 0.012 or <0.001; other columns as
    plain values. A named, non-Range index (``model`` for compare tables) is the first column.
    Rows with ``best`` True get a leading "★"; ``is_baseline`` rows get "(baseline)" after their
    value, and the reference row of a delta column (the best / the baseline) shows "ref".
    """
    cols = list(columns) if columns is not None else _default_columns(df)
    show_index = not isinstance(df.index, pd.RangeIndex)
    table = Table(title=title, header_style="bold")
    table.add_column(" ", justify="center", no_wrap=True)
    if show_index:
        table.add_column(str(df.index.name or ""), no_wrap=True)
    for key, header in cols:
        numeric = f"{key}_mean" in df.columns or (
            key in df.columns and pd.api.types.is_numeric_dtype(df[key].dtype)
        )
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True)

    for label, row in df.iterrows():
        is_best = bool(row.get("best", False))
        is_base = bool(row.get("is_baseline", False))
        cells = [STAR if is_best else ""]
        if show_index:
            cells.append(str(label))
        for key, _ in cols:
            if f"{key}_mean" in df.columns:
                cells.append(format_mean_ci(row[f"{key}_mean"], row.get(f"{key}_ci", _NAN)))
            elif key in _DELTA_CI:
                is_ref = is_best if key == "delta_vs_best" else is_base
                cells.append(
                    "ref"
                    if is_ref
                    else format_mean_ci(row.get(key), row.get(_DELTA_CI[key], _NAN), signed=True)
                )
            elif key in _P_COLUMNS:
                cells.append(format_p(row.get(key)))
            elif key not in df.columns:
                cells.append("")
            elif key == "value" and is_base:
                cells.append(f"{row[key]} (baseline)")
            else:
                v = row[key]
                if isinstance(v, bool | np.bool_):
                    cells.append("yes" if v else "")
                elif isinstance(v, int | float | np.number):
                    cells.append(format_number(v))
                else:
                    cells.append(str(v))
        table.add_row(*cells, style="bold" if is_best else None)
    return table
