"""The scale section: a scale sweep's points read back from MLflow, and the fits made on them.

The tree is root (``lmbench.kind=scale``) -> one run per architecture (``model``) -> one run per
compute budget (``budget``) -> the point runs (``point``, one per size and seed). Every finished
point run gives one row: its budget C, its achieved non-embedding size N, seed, test loss, the
tokens D it trained on and its model's FLOPs per token (so the compute it spent is checkable).

The analysis is :mod:`lmbench.stats.scaling` on those rows: per architecture a parabola in log N
per budget (N*(C), L*(C)), the power laws N*(C) = k C^a and L*(C) = E + A C^-alpha with
bootstrap intervals over seeds, and on ``synthetic`` the same with E fixed at the data's exact
entropy floor; then the crossover of every pair of architectures' L*(C).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lmbench.config import ExperimentSpec, build_spec
from lmbench.errors import UserError
from lmbench.report.frames import Section, Store, facts
from lmbench.stats.scaling import CROSSOVER_HORIZON, ScalingBootstrap, bootstrap_scaling, crossover
from lmbench.tracking import schema
from lmbench.tuning.points import ladder

N_RESAMPLES = 1000  # bootstrap resamples per fit (vectorised: well under a second per architecture)
FREE, FIXED = "free E", "E = floor"  # the two loss laws: E fitted, or E fixed at the entropy floor


@dataclass
class ScaleAnalysis:
    """The fits of one sweep. ``fixed`` is empty without a known floor (not ``synthetic``)."""

    floor: float | None
    free: dict[str, ScalingBootstrap]
    fixed: dict[str, ScalingBootstrap]
    optima: pd.DataFrame  # per (arch, budget): N*, L*, D* with intervals, or why not fittable
    crossovers: list[dict[str, Any]]

    def laws(self) -> list[tuple[str, dict[str, ScalingBootstrap]]]:
        return [(FREE, self.free)] + ([(FIXED, self.fixed)] if self.fixed else [])


@dataclass
class ScaleSection(Section):
    """The report section of a scale root: ``runs`` holds one row per finished point run."""

    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # arch -> {source, params}
    budgets: list[float] = field(default_factory=list)
    analysis: ScaleAnalysis | None = None


# -- reading the tree ------------------------------------------------------------------------


def scale_sections(store: Store) -> list[ScaleSection]:
    """The latest scale root of the experiment, read as a section (none: an empty list)."""
    roots = [
        r
        for r in store.runs
        if r.data.tags.get(schema.KIND) == "scale" and schema.PARENT_TAG not in r.data.tags
    ]
    return [scale_section(store, roots[0])] if roots else []


def scale_section(store: Store, root, own: bool = False) -> ScaleSection:
    """Every architecture's budgets and finished points under ``root``, what is missing, the fits
    (``own``: read by the command that holds the root open, whose RUNNING state is no news)."""
    sec = ScaleSection("scale", root)
    sec.spec_yaml = store.artifact_text(root.info.run_id, "spec.yaml")
    spec = _sweep_spec(sec.spec_yaml)  # the latest invocation's (a re-run may add budgets)
    expected = _expected(spec) if spec is not None else None
    rows: list[dict[str, Any]] = []
    for model_run in reversed(store.kids(root, "model")):  # oldest first: the order they ran in
        arch = schema.model_of(model_run.data.tags) or model_run.info.run_name
        sec.groups.append(arch)
        sec.hparams[arch] = json.loads(model_run.data.tags.get(schema.SCALE_HPARAMS, "{}"))
        for budget_run in reversed(store.kids(model_run, "budget")):
            compute = float(budget_run.data.tags[schema.SCALE_COMPUTE])
            rows += _points(store, budget_run, arch, compute, sec.missing)
            if expected:
                _note_unrun(rows, arch, compute, expected, sec.missing)
    sec.runs = pd.DataFrame(rows)
    sec.budgets = sorted(set(sec.runs["compute"])) if rows else []
    if root.info.status != "FINISHED" and not own:
        sec.missing.insert(
            0, f"the scale command's root run is {root.info.status}: results are partial"
        )
    usable = (
        sec.runs[(sec.runs["params"] > 0) & np.isfinite(sec.runs["loss"])] if rows else sec.runs
    )
    if len(usable) < len(sec.runs):  # a run without a size or a test loss cannot be fitted
        sec.missing.append(
            f"{len(sec.runs) - len(usable)} finished runs lack a size or a test loss"
        )
    if not usable.empty:
        sec.analysis = analyse(usable)
    sec.facts = facts(store, sec)
    settings = spec.scale.model_dump(by_alias=True) if spec is not None else root.data.params
    sec.facts["budget"] = _budget_fact(settings, len(sec.runs))
    if "train_seconds" in sec.runs:
        sec.facts.pop("training time", None)
        sec.facts["training time"] = (
            f"{sec.runs['train_seconds'].sum() / 60:.1f} min in {len(sec.runs)} point runs"
        )
    return sec


def _sweep_spec(spec_yaml: str | None) -> ExperimentSpec | None:
    """The sweep's spec from the root's ``spec.yaml`` (None: absent or unreadable)."""
    if not spec_yaml:
        return None
    import yaml

    try:
        return build_spec(yaml.safe_load(spec_yaml))
    except (UserError, yaml.YAMLError):
        return None


def _expected(spec: ExperimentSpec) -> dict[str, Any]:
    """Target sizes per budget and the seeds the sweep's spec asks for."""
    seeds = [spec.train.seed + k for k in range(spec.scale.seeds)]
    return {"ladders": {c: ladder(spec, c) for c in spec.scale.compute}, "seeds": seeds}


def _points(
    store: Store, budget_run, arch: str, compute: float, missing: list[str]
) -> list[dict[str, Any]]:
    """One row per (size, seed) from its latest finished run; the unfinished ones are noted."""
    done: dict[tuple[str, str], Any] = {}
    others: dict[tuple[str, str], Any] = {}
    for run in store.kids(budget_run, "point"):  # newest first
        key = (run.data.tags.get(schema.SCALE_TARGET, "?"), run.data.tags.get(schema.SEED, "?"))
        (done if run.info.status == "FINISHED" else others).setdefault(key, run)
    for key, run in others.items():
        if key not in done:
            why = run.data.tags.get(schema.FAILURE, "")
            missing.append(
                f"{arch} at C = {compute:.3g}: size {key[0]} seed {key[1]} {run.info.status}"
                + (f" ({why[:200]})" if why else "")
            )
    return [_row(run, arch, compute) for run in done.values()]


def _row(run, arch: str, compute: float) -> dict[str, Any]:
    tags, metrics = run.data.tags, run.data.metrics
    flops = float(tags.get(schema.SCALE_FLOPS_PER_TOKEN, "nan"))
    tokens = metrics.get("tokens_seen", math.nan)
    return {
        "arch": arch,
        "compute": compute,
        "target": int(tags.get(schema.SCALE_TARGET, 0)),
        "params": int(run.data.params.get(schema.NON_EMBEDDING, 0)),
        "seed": int(tags.get(schema.SEED, 0)),
        "loss": metrics.get("test_loss", math.nan),
        "val_loss": metrics.get("final_val_loss", math.nan),
        "floor": metrics.get("test_floor", math.nan),
        "tokens": tokens,
        "flops_per_token": flops,
        "spent": tokens * flops,
        "spent_ratio": tokens * flops / compute,
        "train_seconds": metrics.get("train_seconds", math.nan),
        "run_id": run.info.run_id,
    }


def _note_unrun(
    rows: list[dict[str, Any]],
    arch: str,
    compute: float,
    expected: dict[str, Any],
    missing: list[str],
) -> None:
    have = {(r["target"], r["seed"]) for r in rows if r["arch"] == arch and r["compute"] == compute}
    wanted = [(t, s) for s in expected["seeds"] for t in expected["ladders"].get(compute, ())]
    lacking = [f"{t:,}/seed {s}" for t, s in wanted if (t, s) not in have]
    if lacking:
        missing.append(
            f"{arch} at C = {compute:.3g}: {len(lacking)} of {len(wanted)} points not finished "
            f"(size/seed {', '.join(lacking[:6])}{', ...' if len(lacking) > 6 else ''})"
        )


def _budget_fact(params: dict[str, Any], n_runs: int) -> str:
    """The sweep's settings in one line (from its spec, or the root's params)."""
    compute = params.get("compute", "?")
    compute = ", ".join(f"{c:.3g}" for c in compute) if isinstance(compute, list) else compute
    return (
        f"compute budgets {compute} FLOPs; {params.get('sizes', '?')} sizes per "
        f"budget, {params.get('ratio', '?')}x apart, around N = sqrt(C / (6 x "
        f"{params.get('tokens_per_param', '?')})); {params.get('seeds', '?')} seed(s); each run trains "
        f"D = C / (its model's FLOPs per token) tokens ({n_runs} finished runs)"
    )


# -- the analysis ----------------------------------------------------------------------------


def analyse(runs: pd.DataFrame, n_resamples: int = N_RESAMPLES) -> ScaleAnalysis:
    """Fits with bootstrap intervals over seeds, per architecture, and every pair's crossovers."""
    points = runs.drop_duplicates(["arch", "compute", "params", "seed"])[
        ["arch", "compute", "params", "seed", "loss"]
    ]
    floors = runs["floor"].dropna() if "floor" in runs else pd.Series(dtype=float)
    floor = float(floors.median()) if not floors.empty else None
    free = bootstrap_scaling(points, n_resamples=n_resamples)
    fixed = (
        bootstrap_scaling(points, floor=floor, n_resamples=n_resamples) if floor is not None else {}
    )
    crossovers = [
        _crossover(boots[a], boots[b], law)
        for law, boots in ((FREE, free), (FIXED, fixed))
        for a, b in itertools.combinations(list(boots), 2)
    ]
    return ScaleAnalysis(floor, free, fixed, _optima(runs, free), crossovers)


def _crossover(first: ScalingBootstrap, second: ScalingBootstrap, law: str) -> dict[str, Any]:
    """The crossing of two L*(C) laws with its interval, or why there is none to compute."""
    base = {"law": law, "first": first.fit.arch, "second": second.fit.arch, "found": False}
    unfit = [
        f"{b.fit.arch}: {b.fit.loss_law.reason}"
        for b in (first, second)
        if not b.fit.loss_law.fittable
    ]
    if unfit:
        return {**base, "reason": "no L*(C) law to compare (" + "; ".join(unfit) + ")"}
    try:
        return {"law": law, **crossover(first, second, horizon=CROSSOVER_HORIZON).to_dict()}
    except ValueError as error:  # fitted budgets that do not overlap
        return {**base, "reason": str(error)}


def _optima(runs: pd.DataFrame, free: dict[str, ScalingBootstrap]) -> pd.DataFrame:
    """Per (arch, budget): N*, L* and D* = C / F(N*) with intervals, or why not, and what to add."""
    rows = []
    for arch, boot in free.items():
        intervals = {b.compute: b for b in boot.budgets}
        for parabola in boot.fit.parabolas:
            at = runs[(runs["arch"] == arch) & (runs["compute"] == parabola.compute)]
            row = {
                "arch": arch,
                "compute": parabola.compute,
                "fittable": parabola.fittable,
                "reason": parabola.reason,
                "suggested_sizes": ", ".join(f"{n:,}" for n in sorted(parabola.suggested_sizes)),
            }
            got = intervals.get(parabola.compute)
            for name, interval in (
                ("n_opt", got.n_opt if got else None),
                ("loss_opt", got.loss_opt if got else None),
            ):
                row[name] = interval.estimate if interval else math.nan
                row[f"{name}_low"] = interval.low if interval else math.nan
                row[f"{name}_high"] = interval.high if interval else math.nan
            tokens = _tokens_at(at, parabola.compute)
            # D falls as N grows, so the size interval's ends swap
            row.update(
                d_opt=tokens(row["n_opt"]),
                d_opt_low=tokens(row["n_opt_high"]),
                d_opt_high=tokens(row["n_opt_low"]),
            )
            rows.append(row)
    return pd.DataFrame(rows)


def _tokens_at(points: pd.DataFrame, compute: float):
    """D(N) = C / F(N) at one budget: F between the budget's measured sizes piecewise linear in
    log-log (the end segments extended), since F is no power law (the head's cost is fixed)."""
    sizes = (
        points[["params", "flops_per_token"]]
        .dropna()
        .drop_duplicates("params")
        .sort_values("params")
    )
    if len(sizes) < 2:
        return lambda n: math.nan
    log_n, log_f = (
        np.log(sizes["params"].to_numpy(float)),
        np.log(sizes["flops_per_token"].to_numpy(float)),
    )

    def tokens(n: float) -> float:
        if not (finite(n) and n > 0):
            return math.nan
        x = math.log(n)
        k = int(np.clip(np.searchsorted(log_n, x), 1, len(log_n) - 1))
        slope = (log_f[k] - log_f[k - 1]) / (log_n[k] - log_n[k - 1])
        return compute / math.exp(log_f[k - 1] + slope * (x - log_n[k - 1]))

    return tokens


def finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
