"""`lmbench ablate`: one factor at a time around a baseline, every value with the baseline's seeds."""

from __future__ import annotations

from typing import Any

from lmbench.config import (
    ExperimentSpec,
    grid_values,
    model_spec,
    param_path,
    resolved_dict,
    sized,
    space_for,
)
from lmbench.config.params import CHOICES, OPTIMIZER_KIND
from lmbench.config.spec import OPTIMIZER_KINDS
from lmbench.data import prepare_data
from lmbench.errors import SpecError, UserError
from lmbench.experiments import runtree
from lmbench.experiments.compare import prepare
from lmbench.experiments.single import budgeted
from lmbench.models import get_arch
from lmbench.stats import ablation_table
from lmbench.stats.adequacy import ablation_verdicts
from lmbench.tracking import schema
from lmbench.tuning.storage import open_storage, open_study
from lmbench.tuning.trials import best_params


def get_path(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for part in path.split("."):
        node = node[part]
    return node


def ablation_values(spec: ExperimentSpec, arch: str, name: str, baseline: Any, kind: str) -> list[Any]:
    """The values to sweep: ``ablate.values[name]``, else a grid from the search space (``lr``: the
    range of the baseline's optimizer ``kind``), else the choices of a categorical setting
    (optimizer, data.order, schedule)."""

    if name in spec.ablate.values:
        values = list(spec.ablate.values[name])
    else:
        space = space_for(spec, arch)
        path = param_path(arch, name, where="--param")
        if path == "train.lr" and name not in space:
            name = f"lr_{kind}"
        if name in space:
            values = grid_values(space[name])
        elif path in CHOICES:
            values = list(CHOICES[path])
        else:
            raise SpecError(f"ablate.values.{name}", f"no default grid for {name!r}: give --values")
    return values if baseline in values else [baseline, *values]


def value_spec(base: ExperimentSpec, arch: str, path: str, value: Any) -> ExperimentSpec:
    """The baseline with one parameter changed. Another optimizer starts from its recipe's learning
    rate (SGD's 20 would wreck Adam, Adam's 1e-3 stall SGD): an ablation compares recipes."""

    params = {path: value}
    if path == OPTIMIZER_KIND and value in OPTIMIZER_KINDS:  # (another value fails validation below)
        params["lr"] = get_arch(arch).recipe.lr_for(value)
    return model_spec(base, arch, params)


def ablate(spec: ExperimentSpec, *, quiet: bool = False) -> dict[str, Any]:
    """One factor at a time around a baseline; every value trained with the baseline's seeds."""

    ablation = spec.ablate
    arch = ablation.model or spec.model.arch
    if not ablation.params:
        raise SpecError("--param", "name at least one parameter to ablate")
    spec, notes = budgeted(spec)
    paths = {p: param_path(arch, p, where="--param") for p in ablation.params}
    base_params = {}
    if ablation.baseline == "best":
        study = open_study(spec, arch, open_storage(spec.search.storage, spec.experiment_name))
        base_params = best_params(study) or {}
        if not base_params:
            raise UserError("--baseline", f"study {study.study_name} has no completed trial to take the best from")
    base = sized(model_spec(spec, arch, base_params), prepare_data(spec.data).vocab_size)
    sweeps = {}
    for param, path in paths.items():
        baseline_value = get_path(resolved_dict(base), path)
        values = ablation_values(spec, arch, param, baseline_value, base.train.optimizer.kind)
        for value in values:  # validate every value before anything is created
            value_spec(base, arch, path, value)
        sweeps[param] = (path, baseline_value, values)
    prepare(base, [arch])
    root = runtree.ensure_run(spec, f"ablate-{arch}", {schema.KIND: "ablate", schema.ROOT_KEY: runtree.root_key(spec),
                                               schema.MODEL: arch}, params={"params": ",".join(ablation.params)})
    rows: list[dict[str, Any]] = []
    runtree.record_spec(root, spec)
    with runtree.TreeRun(root):
        base_run = runtree.ensure_run(spec, "baseline", {schema.KIND: "value", schema.ABLATE_VALUE: "baseline"}, root.run_id)
        with runtree.TreeRun(base_run):
            base_runs = runtree.seed_runs(base, base_run.run_id, ablation.seeds, "baseline", {schema.ABLATE_VALUE: "baseline"}, quiet)
        for param, (path, baseline_value, values) in sweeps.items():
            for value in values:
                if value == baseline_value:
                    runs = base_runs  # the baseline runs are shared by every sweep
                else:
                    label = f"{param}={value}"
                    vrun = runtree.ensure_run(spec, label, {schema.KIND: "value", schema.ABLATE_VALUE: label}, root.run_id)
                    with runtree.TreeRun(vrun):
                        vspec = value_spec(base, arch, path, value)
                        runs = runtree.seed_runs(vspec, vrun.run_id, ablation.seeds, label, {schema.ABLATE_VALUE: label}, quiet)
                rows += runtree.rows_of(runs, param=param, value=value, is_baseline=value == baseline_value)
        frame = runtree.results_frame(rows)
        table = ablation_table(frame.drop(columns=["is_baseline"]), baseline_values(sweeps), metric="test_loss")
        verdicts = power_of(rows, table)
        meta = {**runtree.results_meta(spec, "ablate", root.run_id), "budgets": notes, "adequacy": verdicts}
        path = runtree.write_results(spec.experiment_name, "ablation", table, rows, meta)
    return {"table": table, "rows": rows, "path": path, "root_run_id": root.run_id, "report": runtree.report_of(spec),
            "notes": notes + verdicts["lines"]}


def power_of(rows: list[dict[str, Any]], table) -> dict[str, Any]:
    """What the shared seeds can detect: every value's paired test against the baseline."""

    per_seed: dict[str, dict[int, float]] = {}
    for row in rows:
        label = "baseline" if row["is_baseline"] else f"{row['param']}={row['value']}"
        per_seed.setdefault(label, {})[row["seed"]] = row.get("test_loss", float("nan"))
    p_values = {f"{r['param']}={r['value']}": float(r["p"]) for _, r in table.iterrows() if not r["is_baseline"]}
    return ablation_verdicts(per_seed, "baseline", p_values)


def baseline_values(sweeps: dict[str, tuple[str, Any, list[Any]]]) -> dict[str, Any]:
    return {p: b for p, (_, b, _) in sweeps.items()}
