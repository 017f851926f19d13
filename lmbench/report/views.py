"""What a person reads: titles, one-sentence answers and tables of formatted cells.

Shared by the HTML and Markdown writers. Numbers are formatted by :mod:`lmbench.stats` (mean ± CI
with the CI to two significant digits, p-values as 0.012 or <0.001); every cell keeps its raw
value for sorting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lmbench.report.frames import Section
from lmbench.report.studies import StudyView
from lmbench.stats import CONFIDENCE, format_mean_ci, format_number, format_p

ALPHA = 1 - CONFIDENCE
# (metric, header) of the compare table, shown when the metric was recorded
COMPARE_COLUMNS = [("test_loss", "test loss"), ("test_ppl", "perplexity"), ("test_accuracy", "token accuracy"),
                   ("test_bleu", "BLEU"), ("test_excess", "excess over floor"),
                   ("params_non_embedding", "params (non-emb.)"), ("train_tokens_per_sec", "tokens/s"),
                   ("train_seconds", "train s")]
ABLATION_COLUMNS = [("test_loss", "test loss"), ("test_ppl", "perplexity"), ("test_accuracy", "token accuracy"),
                    ("test_bleu", "BLEU"), ("test_excess", "excess over floor")]


@dataclass
class Cell:
    text: str
    sort: Any = None  # the raw value: sorting, CSV, tests
    color: str | None = None  # a colour swatch (the architecture's colour)


@dataclass
class TableView:
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    strong: list[bool] = field(default_factory=list)  # rows shown in bold (the best)


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _ci_cell(row: pd.Series, key: str, signed: bool = False) -> Cell:
    mean, ci = row.get(f"{key}_mean"), row.get(f"{key}_ci")
    return Cell(format_mean_ci(mean, ci, signed=signed), _num(mean))


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def title(sec: Section) -> str:
    if sec.kind == "compare":
        return "Comparison of " + ", ".join(sec.groups)
    if sec.kind == "ablate":
        return f"Ablation of {sec.arch}: " + ", ".join(sec.baselines) if sec.baselines else f"Ablation of {sec.arch}"
    return f"Hyperparameter search of {sec.arch}"


def question(sec: Section) -> str:
    if sec.kind == "compare":
        return ("With the same tuning budget and the same seeds, which architecture reaches the lowest test loss: "
                f"{_join(sec.groups) if sec.groups else '?'}?")
    if sec.kind == "ablate":
        params = [p for p in sec.root.data.params.get("params", "").split(",") if p]
        return f"What does each of {_join(params) if params else '?'} contribute to {sec.arch}, one at a time?"
    return f"Which hyperparameters give {sec.arch} the lowest validation loss?"


def answer(sec: Section) -> str:
    """The result in one sentence, with the uncertainty stated."""
    if sec.kind == "tune":
        return _tune_answer(sec)
    if sec.table is None or sec.table.empty:
        return "No finished final runs yet: see what is missing below."
    return _compare_answer(sec.table) if sec.kind == "compare" else _ablation_answer(sec.table)


def _compare_answer(table: pd.DataFrame) -> str:
    if not table["best"].any():
        return "No model has a finite test loss."
    best = table.index[table["best"].to_numpy(bool)][0]
    b = table.loc[best]
    text = f"{best} has the lowest mean test loss ({format_mean_ci(b['test_loss_mean'], b['test_loss_ci'])}"
    if "test_ppl_mean" in table:
        text += f", perplexity {format_mean_ci(b['test_ppl_mean'], b['test_ppl_ci'])}"
    text += f", {int(b['n_seeds'])} seed{'s' if b['n_seeds'] != 1 else ''})"
    others = [m for m in table.index if m != best]
    close = [m for m in others if not _num(table.at[m, "p_vs_best"]) < ALPHA and _num(table.at[m, "n_paired"]) >= 2]
    worse = [m for m in others if _num(table.at[m, "p_vs_best"]) < ALPHA]
    untested = [m for m in others if m not in close and m not in worse]
    level = f"{CONFIDENCE:.0%}"
    if close:
        verb = "is" if len(close) == 1 else "are"
        text += (f"; {_join(close)} {verb} within its {level} CI (the paired difference in test loss includes 0)")
    if worse:
        verb = "is" if len(worse) == 1 else "are"
        text += f"; {_join(worse)} {verb} worse (paired t-test on shared seeds, p < {ALPHA:g})"
    if untested:
        text += f"; {_join(untested)} cannot be tested against it (fewer than 2 shared seeds)"
    return text + "."


def _ablation_answer(table: pd.DataFrame) -> str:
    parts = []
    for param, t in table.groupby("param", sort=False):
        best = t[t["best"]]
        base = t[t["is_baseline"]]
        if best.empty:
            parts.append(f"{param}: no finite result")
            continue
        b = best.iloc[0]
        if bool(b["is_baseline"]):
            parts.append(f"{param}: the baseline value {b['value']} gives the lowest test loss")
            continue
        sig = "significant" if _num(b["p"]) < ALPHA else "not significant"
        ref = f" {base.iloc[0]['value']}" if not base.empty else ""
        parts.append(f"{param}: {b['value']} gives the lowest test loss, "
                     f"{format_mean_ci(b['delta'], b['delta_ci'], signed=True)} vs the baseline{ref} "
                     f"(paired t-test p = {format_p(b['p'])}, {sig} at {CONFIDENCE:.0%})")
    return "; ".join(parts) + "."


def _tune_answer(sec: Section) -> str:
    for s in sec.studies:
        done = s.trials[s.trials["state"] == "COMPLETE"] if not s.trials.empty else s.trials
        if not done.empty:
            best = done.loc[done["value"].idxmin()]
            params = ", ".join(f"{k.removeprefix('params_')}={format_number(v) if isinstance(v, float) else v}"
                               for k, v in best.items() if str(k).startswith("params_"))
            return (f"Best validation loss {format_number(best['value'])} (trial {int(best['number'])} of "
                    f"{len(s.trials)}) with {params}.")
    return "No completed trial yet."


def results_view(sec: Section, colors: dict[str, str]) -> TableView:
    """Compare: one row per model, best first; mean ± CI, paired test vs the best. (The best
    hyperparameters are a table of their own, :func:`params_view`: as a column they made every
    row as tall as its longest list, and the table wider than a window.)"""
    table = sec.table
    cols = [(k, h) for k, h in COMPARE_COLUMNS if f"{k}_mean" in table]
    view = TableView(["model", *[h for _, h in cols], "Δ loss vs best", "p vs best", "seeds"])
    for model, row in table.iterrows():
        best = bool(row["best"])
        improving = " (still improving)" if bool(row.get("still_improving", False)) else ""  # report.adequacy
        cells = [Cell(("★ " if best else "") + str(model) + improving, str(model), colors.get(str(model)))]
        cells += [_ci_cell(row, k) for k, _ in cols]
        cells.append(Cell("ref" if best else format_mean_ci(row["delta_vs_best"], row["delta_ci"], signed=True),
                          _num(row["delta_vs_best"])))
        cells.append(Cell(format_p(row["p_vs_best"]), _num(row["p_vs_best"])))
        cells.append(Cell(str(int(row["n_seeds"])), int(row["n_seeds"])))
        view.rows.append(cells)
        view.strong.append(best)
    return view


def params_view(sec: Section, colors: dict[str, str]) -> TableView | None:
    """Compare: the best trial's hyperparameters of every model, one column per parameter."""
    models = [str(m) for m in sec.table.index] if sec.table is not None else []
    names = list(dict.fromkeys(k for m in models for k in sec.best_params.get(m, {})))
    if not names:
        return None
    view = TableView(["model", *names])
    for model in models:
        params = sec.best_params.get(model, {})
        cells = [Cell(model, model, colors.get(model))]
        for name in names:
            value = params.get(name)
            text = "–" if value is None else format_number(value) if isinstance(value, float) else str(value)
            cells.append(Cell(text, _sortable(value) if value is not None else None))
        view.rows.append(cells)
        view.strong.append(False)
    return view


def ablation_view(sec: Section) -> TableView:
    """Ablate: one row per (param, value) with its delta to the baseline and a paired test."""
    table = sec.table
    cols = [(k, h) for k, h in ABLATION_COLUMNS if f"{k}_mean" in table]
    view = TableView(["param", "value", *[h for _, h in cols], "Δ loss vs baseline", "p", "seeds"])
    for _, row in table.iterrows():
        base = bool(row["is_baseline"])
        cells = [Cell(str(row["param"]), str(row["param"])),
                 Cell(("★ " if row["best"] else "") + str(row["value"]) + (" (baseline)" if base else ""),
                      _sortable(row["value"]))]
        cells += [_ci_cell(row, k) for k, _ in cols]
        cells.append(Cell("ref" if base else format_mean_ci(row["delta"], row["delta_ci"], signed=True),
                          _num(row["delta"])))
        cells.append(Cell(format_p(row["p"]), _num(row["p"])))
        cells.append(Cell(str(int(row["n_seeds"])), int(row["n_seeds"])))
        view.rows.append(cells)
        view.strong.append(bool(row["best"]))
    return view


def _sortable(v: Any) -> Any:
    x = _num(v)
    return x if math.isfinite(x) else str(v)


def trials_view(study: StudyView) -> TableView:
    """Optuna's trials: number, state, value, duration, params, and why a trial failed."""
    t = study.trials
    params = [c for c in t.columns if str(c).startswith("params_")]
    fail = "user_attrs_failure" in t.columns
    view = TableView(["trial", "state", "val loss", "duration s", *[c.removeprefix("params_") for c in params]]
                     + (["failure"] if fail else []))
    best = t.loc[t["value"].idxmin(), "number"] if t["value"].notna().any() else None
    for _, row in t.iterrows():
        cells = [Cell(str(int(row["number"])), int(row["number"])), Cell(str(row["state"]), str(row["state"])),
                 Cell(format_number(row["value"], 5), _num(row["value"])),
                 Cell(format_number(row.get("duration"), 3), _num(row.get("duration")))]
        for c in params:
            v = row[c]
            cells.append(Cell(format_number(v) if isinstance(v, float) else ("–" if pd.isna(v) else str(v)),
                              _sortable(v)))
        if fail:
            reason = row["user_attrs_failure"]
            cells.append(Cell("" if pd.isna(reason) else str(reason), ""))
        view.rows.append(cells)
        view.strong.append(row["number"] == best)
    return view
