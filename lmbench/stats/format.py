"""Formatting numbers with their confidence intervals, and rendering result tables for the terminal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from rich.cells import cell_len
from rich.table import Table

from lmbench.stats.inference import _NAN

STAR = "★"

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
_LABELS = ("param", "value")  # columns that name a row (ablation tables)


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
    return render_tables(df, title, columns, width=None)[0]


def render_tables(df: pd.DataFrame, title: str, columns: list[tuple[str, str]] | None = None,
                  width: int | None = 80) -> list[Table]:
    """:func:`render_table` split by columns into tables no wider than ``width`` (None: one table),
    each repeating the row labels, so every value is shown whole on a narrow terminal."""
    cols = list(columns) if columns is not None else _default_columns(df)
    # an ablation's param and value name its rows: they lead every table, like a compare's model
    cols = [c for c in cols if c[0] in _LABELS] + [c for c in cols if c[0] not in _LABELS]
    show_index = not isinstance(df.index, pd.RangeIndex)
    keys = [Column(" ", "center")] + ([Column(str(df.index.name or ""))] if show_index else [])
    labels = [Column(header) for key, header in cols if key in _LABELS]
    keys += labels
    heads = []
    for key, header in cols[len(labels):]:
        numeric = f"{key}_mean" in df.columns or (
            key in df.columns and pd.api.types.is_numeric_dtype(df[key].dtype)
        )
        heads.append(Column(header, "right" if numeric else "left"))
    rows, styles = [], []
    for label, row in df.iterrows():
        is_best = bool(row.get("best", False))
        cells = [STAR if is_best else ""] + ([str(label)] if show_index else [])
        rows.append(cells + [_cell(df, row, key, is_best) for key, _ in cols])
        styles.append("bold" if is_best else None)
    return fit_tables(title, keys, heads, rows, width, styles)


def _cell(df: pd.DataFrame, row: pd.Series, key: str, is_best: bool) -> str:
    """The text of one cell of a results table (see :func:`render_table`)."""
    is_base = bool(row.get("is_baseline", False))
    if f"{key}_mean" in df.columns:
        return format_mean_ci(row[f"{key}_mean"], row.get(f"{key}_ci", _NAN))
    if key in _DELTA_CI:
        is_ref = is_best if key == "delta_vs_best" else is_base
        return "ref" if is_ref else format_mean_ci(row.get(key), row.get(_DELTA_CI[key], _NAN), signed=True)
    if key in _P_COLUMNS:
        return format_p(row.get(key))
    if key not in df.columns:
        return ""
    if key == "value" and is_base:
        return f"{row[key]} (baseline)"
    v = row[key]
    if isinstance(v, bool | np.bool_):
        return "yes" if v else ""
    if isinstance(v, int | float | np.number):
        return format_number(v)
    return str(v)


@dataclass(frozen=True)
class Column:
    header: str
    justify: Literal["left", "center", "right"] = "left"


def fit_tables(title: str, keys: list[Column], columns: list[Column], rows: list[list[str]],
               width: int | None, styles: list[str | None] | None = None) -> list[Table]:
    """Tables of ``rows`` (cells of ``keys`` then ``columns``) no wider than ``width``.

    Cells never wrap or get cut: when the columns do not fit, the ones that do not go to a next
    table (titled "... continued") that repeats the ``keys`` columns, as many tables as needed.
    A single column too wide on its own gets a table of its own (and the terminal wraps it).
    """
    chunks: list[list[int]] = [[]]
    for i in range(len(columns)):
        if chunks[-1] and width is not None and _width(keys, columns, rows, chunks[-1] + [i]) > width:
            chunks.append([])
        chunks[-1].append(i)
    n = len(keys)
    tables = []
    for part, chunk in enumerate(chunks):
        table = Table(title=title if part == 0 else _continued(title), header_style="bold")
        for col in keys + [columns[i] for i in chunk]:
            table.add_column(col.header, justify=col.justify, no_wrap=True)
        for r, row in enumerate(rows):
            table.add_row(*row[:n], *[row[n + i] for i in chunk], style=(styles or [None] * len(rows))[r])
        tables.append(table)
    return tables


def _continued(title: str) -> str:
    """The title of a continued table: the first title's subject ("compare: ...") or just that."""
    subject, colon, _ = title.partition(":")
    return f"{subject} (continued)" if colon and len(subject) <= 40 else "(continued)"


def _width(keys: list[Column], columns: list[Column], rows: list[list[str]], chunk: list[int]) -> int:
    """Characters a table of the ``keys`` and the ``chunk`` columns takes (borders and padding too)."""
    n = len(keys)
    idx = list(range(n)) + [n + i for i in chunk]
    heads = [c.header for c in keys] + [columns[i].header for i in chunk]
    widths = [max([cell_len(h)] + [cell_len(row[j]) for row in rows]) for h, j in zip(heads, idx, strict=True)]
    return sum(w + 3 for w in widths) + 1  # one space each side, one border each, plus the last border
