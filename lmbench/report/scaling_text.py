"""A scale sweep in words: intervals as text, the section's one-paragraph answer, and the summary
printed at the terminal when ``lmbench scale`` ends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from lmbench.report.scaling import FREE, ScaleSection, finite
from lmbench.report.scaling_files import law_row
from lmbench.stats import CONFIDENCE, format_number
from lmbench.stats.scaling import CROSSOVER_HORIZON


def interval(estimate: Any, low: Any, high: Any, fmt: Callable[[float], str] | None = None) -> str:
    """``0.31 [0.21, 0.42]``; the estimate alone when there is no interval; ``–`` for none."""
    fmt = fmt or (lambda x: format_number(x, 3))
    if not finite(estimate):
        return "–"
    if not (finite(low) and finite(high)):
        return fmt(estimate)
    return f"{fmt(estimate)} [{fmt(low)}, {fmt(high)}]"


def flops(value: float) -> str:
    return f"{value:.3g}"


# -- the answer ------------------------------------------------------------------------------


def answer(sec: ScaleSection) -> str:
    """Who is best at the largest budget, how fast each improves, and where they cross."""
    analysis = sec.analysis
    if analysis is None:
        return "No finished point runs yet: see what is missing below."
    return " ".join(
        part
        for part in (_best_sentence(sec), _alpha_sentence(sec), _crossing_sentence(sec))
        if part
    )


def _best_sentence(sec: ScaleSection) -> str:
    optima = sec.analysis.optima
    fitted = optima[optima["fittable"]] if not optima.empty else optima
    if fitted.empty:
        top = sec.runs[sec.runs["compute"] == sec.runs["compute"].max()]
        best = top.groupby("arch")["loss"].mean().idxmin()
        return (
            f"No budget has a fittable IsoFLOP parabola yet (see the suggested sizes below); at "
            f"C = {flops(top['compute'].iloc[0])} FLOPs {best} has the lowest measured mean loss."
        )
    top = fitted[fitted["compute"] == fitted["compute"].max()]
    row = top.loc[top["loss_opt"].idxmin()]
    among = f" of {', '.join(top['arch'])}" if len(top) > 1 else ""
    return (
        f"At the largest budget with a fitted optimum (C = {flops(row['compute'])} FLOPs), {row['arch']} "
        f"reaches the lowest compute-optimal test loss{among}: L* = "
        f"{interval(row['loss_opt'], row['loss_opt_low'], row['loss_opt_high'])} at N* ≈ "
        f"{format_number(row['n_opt'], 3)} parameters."
    )


def _alpha_sentence(sec: ScaleSection) -> str:
    laws = [(arch, boot) for arch, boot in sec.analysis.free.items()]
    fitted = [
        f"{interval(b.alpha.estimate, b.alpha.low, b.alpha.high)} ({a})"
        for a, b in laws
        if b.fit.loss_law.fittable
    ]
    unfit = [a for a, b in laws if not b.fit.loss_law.fittable]
    text = f"L*(C) = E + A·C^−α with α = {', '.join(fitted)}." if fitted else ""
    if unfit:
        text += f" No L*(C) law for {', '.join(unfit)} (see why below)."
    return text.strip()


def _crossing_sentence(sec: ScaleSection) -> str:
    found = [c for c in sec.analysis.crossovers if c["law"] == FREE and c.get("found")]
    if not found:
        tried = [c for c in sec.analysis.crossovers if c["law"] == FREE and "search_max" in c]
        return (
            f"The fitted laws do not cross within [C_min, {CROSSOVER_HORIZON:g}·C_max]."
            if tried
            else ""
        )
    parts = [
        f"{c['first']} and {c['second']} cross at C ≈ {flops(c['compute'])} FLOPs"
        f"{' (extrapolated)' if c['extrapolated'] else ''}, {c['lower_above']} lower above"
        for c in found
    ]
    return "Crossovers: " + "; ".join(parts) + "."


# -- the terminal ----------------------------------------------------------------------------


def summary_rows(sec: ScaleSection) -> pd.DataFrame:
    """Per architecture: L* at the largest fitted budget, alpha and E (free), N* exponent."""
    rows = []
    for arch, boot in sec.analysis.free.items() if sec.analysis else []:
        row = law_row(arch, FREE, boot)
        last = boot.budgets[-1] if boot.budgets else None
        rows.append(
            {
                "model": arch,
                "budgets fitted": str(row["n_budgets"]),
                "L* at largest": (
                    f"{interval(last.loss_opt.estimate, last.loss_opt.low, last.loss_opt.high)}"
                    f" @ {flops(last.compute)}"
                )
                if last
                else "–",
                "alpha": interval(row["alpha"], row["alpha_low"], row["alpha_high"]),
                "E": interval(row["floor"], row["floor_low"], row["floor_high"]),
                "a (N* ∝ C^a)": interval(
                    row["n_opt_exponent"], row["n_opt_exponent_low"], row["n_opt_exponent_high"]
                ),
            }
        )
    return pd.DataFrame(rows)


def print_scale(result: dict[str, Any]) -> None:
    """The sweep's laws at the terminal, its answer, and where its files and runs are."""
    from rich.console import Console
    from rich.table import Table

    sec = result["section"]
    console = Console(markup=False, highlight=False)  # intervals are [low, high], not markup
    rows = summary_rows(sec)
    if not rows.empty:
        table = Table(title=f"scale: free-E laws, {CONFIDENCE:.0%} bootstrap intervals over seeds")
        for name in rows.columns:
            table.add_column(name, justify="left" if name == "model" else "right")
        for _, row in rows.iterrows():
            table.add_row(*[str(v) for v in row])
        console.print(table)
    console.print(answer(sec), soft_wrap=True)
    for note in sec.missing:
        console.print(f"missing: {note}", soft_wrap=True)
    print(f"results: {result['path']} (and results.json); MLflow root run {result['root_run_id']}")
    if result.get("report"):
        print(f"report: {result['report']}")
