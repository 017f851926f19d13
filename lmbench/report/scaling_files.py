"""A scale sweep's results files: ``reports/<experiment>/results.json`` (settings, every point,
every fit of both loss laws, every crossover) and ``scaling.csv`` (the same as one table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmbench.config import build_spec, resolved_dict
from lmbench.files import write_atomic
from lmbench.report.scaling import ScaleSection
from lmbench.stats.scaling import CROSSOVER_HORIZON, ScalingBootstrap


def results_payload(sec: ScaleSection, experiment: str) -> dict[str, Any]:
    """results.json: the settings, every point, every fit (both laws), every crossover."""
    analysis = sec.analysis
    meta = {
        "experiment": experiment,
        "kind": "scale",
        "root_run_id": sec.root_id,
        "hparams": sec.hparams,
        "budgets": sec.budgets,
        "floor": analysis.floor if analysis else None,
        "loss": "test loss (nats/token) of each run at the end of its budget",
        "confidence": 0.95,
        "ci": "percentile bootstrap over seeds (lmbench.stats.scaling)",
        "crossover_window": f"[C_min, {CROSSOVER_HORIZON:g} x C_max] of the budgets both fitted",
    }
    if sec.spec_yaml:
        import yaml

        meta["spec"] = resolved_dict(build_spec(yaml.safe_load(sec.spec_yaml)))
    fits = {}
    if analysis is not None:
        fits = {
            arch: {
                "free": boot.to_dict(),
                "fixed": analysis.fixed[arch].to_dict() if arch in analysis.fixed else None,
            }
            for arch, boot in analysis.free.items()
        }
    return {
        "meta": meta,
        "points": _records(sec.runs),
        "missing": sec.missing,
        "optima": _records(analysis.optima) if analysis else [],
        "fits": fits,
        "crossovers": analysis.crossovers if analysis else [],
    }


def scaling_frame(sec: ScaleSection) -> pd.DataFrame:
    """scaling.csv: one table, a ``record`` column says what each row is (point, optimum, law,
    crossover)."""
    parts = [sec.runs.assign(record="point")]
    analysis = sec.analysis
    if analysis is not None:
        parts.append(analysis.optima.assign(record="optimum"))
        parts.append(
            pd.DataFrame(
                [
                    law_row(arch, law, boot)
                    for law, boots in analysis.laws()
                    for arch, boot in boots.items()
                ]
            ).assign(record="law")
        )
        if analysis.crossovers:
            parts.append(pd.DataFrame(analysis.crossovers).assign(record="crossover"))
    parts = [p for p in parts if not p.empty]
    if not parts:  # no point finished (yet): the header alone
        return pd.DataFrame(columns=["record"])
    frame = pd.concat(parts, ignore_index=True)
    return frame[["record", *[c for c in frame.columns if c != "record"]]]


def law_row(arch: str, law: str, boot: ScalingBootstrap) -> dict[str, Any]:
    """One architecture's laws and their intervals, flat (the exponents table and scaling.csv)."""
    fit = boot.fit
    row: dict[str, Any] = {
        "arch": arch,
        "law": law,
        "n_budgets": len(fit.fitted),
        "n_opt_fittable": fit.n_opt_law.fittable,
        "loss_fittable": fit.loss_law.fittable,
        "reason": _law_reason(boot),
        "rmse": fit.loss_law.rmse,
        "resamples_failed": boot.n_failed,
        "resampling": boot.resampling,
    }
    for name in ("n_opt_exponent", "n_opt_coefficient", "alpha", "floor", "amplitude"):
        interval = getattr(boot, name)
        row.update(
            {name: interval.estimate, f"{name}_low": interval.low, f"{name}_high": interval.high}
        )
    return row


def _law_reason(boot: ScalingBootstrap) -> str:
    """Why a law or its intervals are missing, once (no fitted budget explains all of them)."""
    fit = boot.fit
    if not fit.fitted:
        return "no budget has a fittable parabola"
    reasons = (fit.n_opt_law.reason, fit.loss_law.reason, boot.reason)
    return "; ".join(dict.fromkeys(r for r in reasons if r))


def write_scale_files(sec: ScaleSection, experiment: str, out: Path) -> Path:
    """reports/<experiment>/results.json and scaling.csv; returns the CSV's path."""
    payload = results_payload(sec, experiment)
    write_atomic(out / "results.json", json.dumps(payload, indent=2, default=_json_default))
    write_atomic(out / "scaling.csv", scaling_frame(sec).to_csv(index=False))
    return out / "scaling.csv"


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records")) if not frame.empty else []


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
