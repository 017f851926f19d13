"""What a person reads of a scale sweep: the answer, the tables and the figures of its section.

The section is made of blocks (a title, a note, figures, a table) that the HTML template and the
Markdown writer render alike. Every interval is the bootstrap interval over seeds; a law or a
crossover beyond the measured budgets is marked as an extrapolation.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

from lmbench.report.scaling import FIXED, ScaleSection
from lmbench.report.scaling_files import law_row, scaling_frame
from lmbench.report.scaling_plots import frontier_png, isoflop_png
from lmbench.report.scaling_text import answer, finite, flops, interval
from lmbench.report.views import Cell, TableView
from lmbench.stats import CONFIDENCE, format_number
from lmbench.stats.scaling import CROSSOVER_HORIZON

# -- the section -----------------------------------------------------------------------------


def present(
    sec: ScaleSection, colors: dict[str, str], figure: Callable[..., Any]
) -> dict[str, Any]:
    """The report part of a scale section (``figure(key, caption, alt, png)`` makes a figure),
    laid over the parts every section has (:func:`lmbench.report.build.present_section`)."""
    blocks = [_hparams_block(sec, colors)]
    analysis = sec.analysis
    if analysis is not None:
        blocks += [
            _isoflop_block(sec, colors, figure),
            _frontier_block(sec, colors, figure),
            _optima_block(sec, colors),
            _crossover_block(sec),
            _points_block(sec, colors),
        ]
    return {
        "id": "scale",
        "kind": "scale",
        "title": title(sec),
        "question": question(sec),
        "answer": answer(sec),
        "facts": sec.facts,
        "missing": sec.missing,
        "root_id": sec.root_id,
        "root_name": sec.root.info.run_name,
        "spec_yaml": sec.spec_yaml,
        "command": command(sec),
        "section": sec,
        "blocks": blocks,
        "figures": [f for b in blocks for f in b["figures"]],
        "csv": {"scaling.csv": scaling_frame(sec)} if not sec.runs.empty else {},
    }


def title(sec: ScaleSection) -> str:
    return "Scaling with compute of " + (", ".join(sec.groups) or "?")


def question(sec: ScaleSection) -> str:
    return (
        "Given the same compute, which architecture reaches the lowest loss, how fast does each "
        "improve with more compute, and where would their curves cross?"
    )


def command(sec: ScaleSection) -> str:
    params = sec.root.data.params
    parts = [
        "lmbench",
        "scale",
        "--models",
        params.get("models", "?"),
        "--compute",
        params.get("compute", "?"),
        "--sizes",
        params.get("sizes", "?"),
        "--seeds",
        params.get("seeds", "?"),
    ]
    if params.get("from") not in (None, "", "None"):
        parts += ["--from", params["from"]]
    return " ".join(shlex.quote(p) for p in parts)


def block(
    title: str,
    note: str = "",
    figures: list | None = None,
    view: TableView | None = None,
    cls: str = "",
) -> dict[str, Any]:
    return {"title": title, "note": note, "figures": figures or [], "view": view, "cls": cls}


# -- blocks ----------------------------------------------------------------------------------


def _swatch(arch: str, colors: dict[str, str]) -> Cell:
    return Cell(arch, arch, colors.get(arch))


def _hparams_block(sec: ScaleSection, colors: dict[str, str]) -> dict[str, Any]:
    view = TableView(["model", "hyperparameters from", "trained with", "taken from the trial"])
    for arch in sec.groups:
        info = sec.hparams.get(arch, {})
        cells = [_swatch(arch, colors), Cell(info.get("source", "?"), info.get("source", ""))]
        for values in (info.get("train", {}), info.get("params", {})):
            text = ", ".join(
                f"{k}={format_number(v, 3) if isinstance(v, float) else v}"
                for k, v in values.items()
            )
            cells.append(Cell(text or "–", json.dumps(values)))
        view.rows.append(cells)
        view.strong.append(False)
    return block(
        "Hyperparameters",
        "The same for every size and budget of an architecture; sizes are "
        "set by param-matched sizing (width first, then depth); every run's schedule spans its own "
        "budget (a plateau or exponential schedule the spec did not name becomes cosine).",
        view=view,
    )


def _isoflop_block(sec: ScaleSection, colors: dict[str, str], figure) -> dict[str, Any]:
    analysis = sec.analysis
    png = isoflop_png(sec.runs, analysis.free, colors)
    caption = (
        "IsoFLOP curves: test loss against non-embedding parameters at each compute budget; faint: "
        "each seed's run, dots: their mean, curves: the parabola in log N fitted on every run, "
        "stars: its minimum (N*, L*). No curve: the budget has no interior minimum (see below)."
    )
    return block("IsoFLOP curves", figures=[figure("isoflop", caption, "IsoFLOP curves", png)])


def _frontier_block(sec: ScaleSection, colors: dict[str, str], figure) -> dict[str, Any]:
    analysis = sec.analysis
    level = f"{CONFIDENCE:.0%}"
    caption = (
        f"Compute-optimal frontier on log–log axes: L*(C) and N*(C) per budget with {level} "
        f"bootstrap intervals over seeds; lines: the fitted laws, solid over the measured budgets, "
        f"dashed where extrapolated; bands: {level} intervals of the law."
    )
    if analysis.floor is not None:
        caption += (
            " Dotted curves: the law with E fixed at the entropy floor (the dotted line), faded"
            " where extrapolated."
        )
    view = TableView(
        ["model", "law", "budgets fitted", "N* ∝ C^a: a", "α", "E", "A", "rmse", "note"]
    )
    for law, boots in analysis.laws():
        for arch, boot in boots.items():
            row = law_row(arch, law, boot)
            cells = [
                _swatch(arch, colors),
                Cell(law, law),
                Cell(str(row["n_budgets"]), row["n_budgets"]),
            ]
            for name in ("n_opt_exponent", "alpha", "floor", "amplitude"):
                cells.append(
                    Cell(interval(row[name], row[f"{name}_low"], row[f"{name}_high"]), row[name])
                )
            cells += [
                Cell(format_number(row["rmse"], 2), row["rmse"]),
                Cell(row["reason"] or "", ""),
            ]
            view.rows.append(cells)
            view.strong.append(False)
    note = (
        f"N*(C) = k·C^a and L*(C) = E + A·C^−α fitted on the budgets with an interior optimum; "
        f"[{level} bootstrap interval over seeds]. With three budgets a free-E law has as many "
        "parameters as points (rmse 0): read its interval, not its estimate."
        + (
            f" '{FIXED}': E is the data's exact entropy floor, {format_number(analysis.floor, 4)}."
            if analysis.floor is not None
            else ""
        )
    )
    figures = []
    if any(boot.budgets for boot in analysis.free.values()):  # else there is no optimum to draw
        png = frontier_png(analysis.free, analysis.fixed, colors, analysis.floor)
        figures.append(figure("frontier", caption, "compute-optimal frontier", png))
    else:
        note += " No budget has an interior optimum yet, so there is no frontier to draw."
    return block("Compute-optimal frontier and scaling laws", note, figures, view)


def _optima_block(sec: ScaleSection, colors: dict[str, str]) -> dict[str, Any]:
    view = TableView(["model", "C (FLOPs)", "N*", "D* (tokens)", "L*", "note"])
    for _, row in sec.analysis.optima.iterrows():
        if row["fittable"]:
            note = ""
        else:
            note = row["reason"] + (
                f"; train sizes {row['suggested_sizes']} next" if row["suggested_sizes"] else ""
            )
        view.rows.append(
            [
                _swatch(row["arch"], colors),
                Cell(flops(row["compute"]), row["compute"]),
                Cell(interval(row["n_opt"], row["n_opt_low"], row["n_opt_high"]), row["n_opt"]),
                Cell(interval(row["d_opt"], row["d_opt_low"], row["d_opt_high"]), row["d_opt"]),
                Cell(
                    interval(row["loss_opt"], row["loss_opt_low"], row["loss_opt_high"]),
                    row["loss_opt"],
                ),
                Cell(note, ""),
            ]
        )
        view.strong.append(False)
    return block(
        "Compute-optimal size and tokens per budget",
        "N*: the parabola's minimum; D* = C / FLOPs-per-token at N* (interpolated over the "
        "budget's sizes); a budget without an interior minimum says which sizes to train next.",
        view=view,
    )


def _crossover_block(sec: ScaleSection) -> dict[str, Any]:
    view = TableView(
        ["pair", "law", "crossing C (FLOPs)", "lower above it", "resamples crossing", "note"]
    )
    for cross in sec.analysis.crossovers:
        pair = f"{cross['first']} / {cross['second']}"
        if cross.get("found"):
            where = interval(cross["compute"], cross.get("ci_low"), cross.get("ci_high"), flops)
            note = (
                "extrapolated (beyond the largest budget)"
                if cross["extrapolated"]
                else "within the budgets"
            )
            share = cross.get("fraction_crossing")
            cells = [
                Cell(where, cross["compute"]),
                Cell(cross["lower_above"], cross["lower_above"]),
                Cell(f"{share:.0%}" if finite(share) else "–", share),
                Cell(note, ""),
            ]
        else:
            note = cross.get("reason", "")
            if "search_max" in cross:
                note = (
                    f"no crossing within [{flops(cross['c_min'])}, {flops(cross['search_max'])}] "
                    f"(= {CROSSOVER_HORIZON:g}·C_max); {cross['lower_above']} is lower throughout"
                )
            cells = [
                Cell("–", None),
                Cell(cross.get("lower_above", ""), ""),
                Cell("–", None),
                Cell(note, ""),
            ]
        view.rows.append([Cell(pair, pair), Cell(cross["law"], cross["law"]), *cells])
        view.strong.append(bool(cross.get("found")))
    return block(
        "Crossovers",
        f"Where two L*(C) laws cross, searched over [C_min, {CROSSOVER_HORIZON:g}·C_max] "
        "of the budgets both fitted, with the interval over paired bootstrap resamples.",
        view=view,
    )


def _points_block(sec: ScaleSection, colors: dict[str, str]) -> dict[str, Any]:
    view = TableView(
        ["model", "C (FLOPs)", "N", "seed", "D (tokens)", "spent / C", "test loss", "run"]
    )
    frame = sec.runs.sort_values(["arch", "compute", "params", "seed"], key=_arch_order(sec))
    for _, row in frame.iterrows():
        view.rows.append(
            [
                _swatch(row["arch"], colors),
                Cell(flops(row["compute"]), row["compute"]),
                Cell(format_number(row["params"]), row["params"]),
                Cell(str(row["seed"]), row["seed"]),
                Cell(format_number(row["tokens"]), row["tokens"]),
                Cell(f"{row['spent_ratio']:.4f}", row["spent_ratio"]),
                Cell(format_number(row["loss"], 4), row["loss"]),
                Cell(row["run_id"], row["run_id"]),
            ]
        )
        view.strong.append(False)
    return block(
        "Every run",
        "Spent = tokens trained × the model's FLOPs per token (forward + backward, "
        "attention included).",
        view=view,
        cls="points",
    )


def _arch_order(sec: ScaleSection):
    rank = {arch: k for k, arch in enumerate(sec.groups)}
    return lambda col: col.map(rank) if col.name == "arch" else col
