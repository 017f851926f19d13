"""Comparison and ablation tables: per-model / per-value means with t CIs and paired tests on
shared seeds (the statistics are in :mod:`lmbench.stats.inference`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lmbench.stats.inference import _NAN, CONFIDENCE, _check_confidence, mean_ci, paired_test

BASELINE_PARAM = "baseline"
"""``param`` value of ablation rows that hold the shared baseline runs (see :func:`ablation_table`)."""


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
    for metric in metrics:
        row[f"{metric}_mean"], row[f"{metric}_ci"] = mean_ci(group[metric], confidence)
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
    level = _check_confidence(confidence)
    _check_unique(runs, ["model", "seed"], "compare_table")
    metrics = _metric_columns(runs, {"model", "seed"})

    groups = {name: g for name, g in runs.groupby("model", sort=False)}
    rows = {name: _aggregate(g, metrics, level) for name, g in groups.items()}
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
            paired = _paired_on_seed(groups[name], groups[best_name], metric, level)
            tests.append((paired["mean_diff"], paired["ci"], paired["p"], paired["n"]))
    for position, col in enumerate(("delta_vs_best", "delta_ci", "p_vs_best")):
        table[col] = np.asarray([t[position] for t in tests], dtype=float)
    table["n_paired"] = np.asarray([t[3] for t in tests], dtype=int)
    table["n_seeds"] = table["n_seeds"].astype(int)
    return table


def value_label(value: Any) -> str:
    """The str under which an ablation value is grouped and shown; integral floats drop ".0".

    (A pandas column mixing 4 and 0.5 holds 4.0; it is labelled "4" like the int 4.)
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value)


def _same_value(value: Any, ref: Any) -> bool:
    """Value equality that tolerates 4 vs 4.0 vs np.int64(4) and falls back to str equality."""
    try:
        eq = value == ref
        if isinstance(eq, bool | np.bool_) and bool(eq):
            return True
    except Exception:  # arbitrary user values may not compare
        pass
    return value_label(value) == value_label(ref)


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
    level = _check_confidence(confidence)
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
        return _ablation_frame(params_cells, metrics, metric, level)

    cells: list[tuple[Any, str, pd.DataFrame, bool]] = []
    for param in params:
        cells += _param_cells(param, runs[runs["param"] == param], shared, *base_of(param))
    return _ablation_frame(cells, metrics, metric, level)


def _param_cells(param: Any, rows: pd.DataFrame, shared: pd.DataFrame, has: bool,
                 baseline: Any) -> list[tuple[Any, str, pd.DataFrame, bool]]:
    """(param, value label, seed rows, is baseline) per value of one param, in first-seen order;
    the baseline cell also takes the shared baseline rows of seeds it lacks."""
    is_base = rows["value"].map(lambda v: has and _same_value(v, baseline)).to_numpy(dtype=bool)
    own_base = rows[is_base]
    if not own_base.empty:
        label = value_label(own_base["value"].iloc[0])
    else:
        label = value_label(baseline) if has else BASELINE_PARAM
    keys = rows["value"].map(value_label).to_numpy(dtype=object)
    keys[is_base] = label
    order = list(dict.fromkeys(keys.tolist()))
    if label not in order:
        order.insert(0, label)  # only shared baseline rows: baseline first
    cells = []
    for key in order:
        group = rows[keys == key]
        _check_unique(group, ["seed"], f"ablation_table ({param}={key})")
        if key == label:
            extra = shared[~shared["seed"].isin(group["seed"])]
            group = pd.concat([group, extra]) if not extra.empty else group
        cells.append((param, key, group, key == label))
    return cells


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
            paired = _paired_on_seed(group, base, metric, confidence)
            rec.update(delta=paired["mean_diff"], delta_ci=paired["ci"], p=paired["p"], n_paired=paired["n"])
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

