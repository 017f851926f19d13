"""Orchestration of lmbench commands: train, tune, compare, ablate (and `run`, which dispatches).

MLflow tree (design.md): experiment root run (kind=compare|ablate|tune) -> one run per model (or
per ablation value) -> trial runs (stage=search) and final seed runs (stage=final, seed=k).
Re-running a command finds its earlier runs by their tags and continues: finished trials and
seed runs are never redone, so a finished command is idempotent.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmbench import checkpoint
from lmbench.errors import SpecError, UserError
from lmbench.spec import ExperimentSpec, build_spec, dump_raw
from lmbench.train import TrainResult, train

log = logging.getLogger(__name__)
REPORTS = Path("reports")
METRICS = ["test_loss", "test_ppl", "test_accuracy", "test_bits_per_token", "test_excess", "final_val_loss",
           "train_tokens_per_sec", "train_seconds", "test_bleu", "final_val_bleu"]


# -- train --------------------------------------------------------------------------------------


def run_training(spec: ExperimentSpec, *, quiet: bool = False, workdir: Path = Path(".")) -> TrainResult:
    """`lmbench train`: one tracked training run of a validated spec."""
    from lmbench.data import prepare_data
    from lmbench.tracking import Tracker

    data = prepare_data(spec.data, progress=not quiet)  # bad data fails before MLflow is touched
    tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
    return train(spec, tracker=tracker, data=data, quiet=quiet, workdir=workdir)


def find_checkpoint(target: str, tracking_uri: str | None = None) -> Path:
    """Resolve ``--resume``: a checkpoint path, or an MLflow run id whose checkpoints are local."""
    path = Path(target)
    if path.exists():
        return checkpoint.locate(path, "last")
    from lmbench.tracking import find_run

    run = find_run(target, tracking_uri)
    if run is None:
        raise UserError("--resume", f"{target!r} is neither a checkpoint path nor a run in the tracking store")
    ckpt_dir = run.data.tags.get("lmbench.checkpoint_dir")
    if not ckpt_dir or not Path(ckpt_dir).exists():
        raise UserError("--resume", f"run {target} has no checkpoint on this machine (looked in {ckpt_dir})")
    return checkpoint.locate(Path(ckpt_dir), "last")


def resume_training(target: str, *, tracking_uri: str | None = None, device: str | None = None,
                    quiet: bool = False) -> TrainResult:
    """`lmbench train --resume`: continue a run from its last checkpoint, in the same MLflow run."""
    from lmbench.tracking import Tracker

    ckpt_dir = find_checkpoint(target, tracking_uri)
    state = checkpoint.load_state(ckpt_dir)
    overrides = [f"train.device={device}"] if device else []
    if tracking_uri:
        overrides.append(f"tracking.tracking_uri={tracking_uri}")
    spec = build_spec(state["spec"], overrides)
    tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
    workdir = ckpt_dir.parent.parent.parent  # <workdir>/checkpoints/<run_id>/<ckpt-dir>
    return train(spec, tracker=tracker, resume=ckpt_dir, resume_run_id=state["run_id"], quiet=quiet, workdir=workdir)


# -- the run tree -------------------------------------------------------------------------------


def root_key(spec: ExperimentSpec) -> str:
    """Identity of a command's root run: the spec without the knobs that only say 'how much more'."""
    raw = dump_raw(spec)
    # which models/params run now is not part of the identity: each has its own child run
    for section, key in (("search", "trials"), ("search", "workers"), ("search", "devices"), ("search", "storage"),
                         ("search", "heartbeat_interval"), ("search", "grace_period"), ("search", "max_retries"),
                         ("compare", "seeds"), ("compare", "models"), ("ablate", "seeds"), ("ablate", "params"),
                         ("ablate", "values"), ("tracking", "tracking_uri")):
        raw[section].pop(key, None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def ensure_run(spec: ExperimentSpec, name: str, tags: dict[str, str], parent_run_id: str | None = None,
               params: dict[str, Any] | None = None):
    """The run with these tags (under this parent) from an earlier invocation, reopened; else a new one."""
    from lmbench.tracking import PARENT_TAG, Tracker

    tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
    clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    if parent_run_id:
        clauses.append(f"tags.`{PARENT_TAG}` = '{parent_run_id}'")
    found = tracker.client.search_runs([tracker.experiment_id], " and ".join(clauses),
                                       order_by=["attributes.start_time DESC"], max_results=1)
    if found:
        tracker.reopen(found[0].info.run_id)
    else:
        tracker.start(name, params or {}, tags, parent_run_id)
    return tracker


def finished_child(tracker, parent_run_id: str, tags: dict[str, str]):
    """A FINISHED child run with these tags, if an earlier invocation completed it."""
    from lmbench.tracking import PARENT_TAG

    clauses = [f"tags.`{PARENT_TAG}` = '{parent_run_id}'", "attributes.status = 'FINISHED'"]
    clauses += [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    found = tracker.client.search_runs([tracker.experiment_id], " and ".join(clauses), max_results=1)
    return found[0] if found else None


class tree_run:
    """Context manager: a parent run that ends FINISHED, FAILED or KILLED like its children."""

    def __init__(self, tracker):
        self.tracker = tracker

    def __enter__(self):
        return self.tracker

    def __exit__(self, exc_type, exc, tb) -> None:
        from lmbench.train import Terminated

        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, (KeyboardInterrupt, Terminated)):
            status = "KILLED"
        else:
            status = "FAILED"
        self.tracker.finish(status)


# -- seed runs ----------------------------------------------------------------------------------


@dataclass
class SeedRun:
    seed: int
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]


def seed_runs(spec: ExperimentSpec, parent_run_id: str, seeds: int, label: str, tags: dict[str, str],
              quiet: bool) -> list[SeedRun]:
    """Train ``spec`` with seeds base..base+K-1 (the same for every model/value), reusing finished ones."""
    from lmbench.tracking import Tracker

    out = []
    for k in range(seeds):
        seed = spec.train.seed + k
        run_tags = {**tags, "stage": "final", "seed": str(seed)}
        tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
        done = finished_child(tracker, parent_run_id, run_tags)
        if done is None:
            log.info("%s: final run with seed %d", label, seed)
            seeded = build_spec(dump_raw(spec), [f"train.seed={seed}"])
            train(seeded, tracker=tracker, parent_run_id=parent_run_id, run_name=f"{label}-seed-{seed}",
                  tags={"lmbench.kind": "final", **run_tags}, quiet=quiet)
            done = tracker.client.get_run(tracker.run_id)
        out.append(SeedRun(seed, done.info.run_id, dict(done.data.metrics), dict(done.data.params)))
    return out


def rows_of(runs: list[SeedRun], **columns: Any) -> list[dict[str, Any]]:
    rows = []
    for r in runs:
        row = {**columns, "seed": r.seed, "run_id": r.run_id}
        row.update({m: r.metrics[m] for m in METRICS if m in r.metrics})
        if "params.non_embedding" in r.params:
            row["params_non_embedding"] = int(r.params["params.non_embedding"])
        rows.append(row)
    return rows


def write_results(experiment: str, name: str, table, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """reports/<experiment>/<name>.csv (the table) and .json (table, per-seed rows, metadata)."""
    out = REPORTS / experiment
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv")
    payload = {"meta": meta, "table": json.loads(table.reset_index().to_json(orient="records")), "runs": rows}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    return out / f"{name}.csv"


def record_spec(root, spec: ExperimentSpec) -> None:
    """The command's spec as the root run's spec.yaml: ``lmbench compare|ablate spec.yaml`` repeats it."""
    import tempfile

    import yaml

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "spec.yaml"
            path.write_text(yaml.safe_dump(dump_raw(spec), sort_keys=False))  # same spec, same root_key
            root.log_artifact(path)
    except Exception as e:  # reproducibility aid only: never the reason a command fails
        log.warning("could not log spec.yaml to run %s: %s", root.run_id, e)


def report_of(spec: ExperimentSpec) -> Path | None:
    """Build the experiment's HTML report; a failure is a warning, never the experiment's failure."""
    from lmbench.report import build_report

    try:
        return build_report(spec.experiment_name, tracking_uri=spec.tracking.tracking_uri,
                            storage=spec.search.storage)
    except Exception as e:
        log.warning("could not build the report of %s: %s", spec.experiment_name, e)
        return None


# -- tune / compare -----------------------------------------------------------------------------


def prepare(spec: ExperimentSpec, models: list[str]) -> None:
    """Everything that can fail on user input, before any study or run is created."""
    from lmbench.data import prepare_data
    from lmbench.search import model_spec, open_storage, sized

    for arch in models:
        sized(model_spec(spec, arch))  # validates the model and --match-params for every arch
    prepare_data(spec.data)
    if spec.search.storage:
        open_storage(spec.search.storage, spec.experiment_name)


def tune_model(spec: ExperimentSpec, arch: str, model_run_id: str) -> dict[str, Any]:
    """Bring the study to its total with the configured workers and return its best params."""
    from lmbench.search import best_params, open_storage, open_study
    from lmbench.workers import run_study

    run_study(spec, arch, model_run_id)
    study = open_study(spec, arch, open_storage(spec.search.storage, spec.experiment_name))
    best = best_params(study)
    if best is None:
        raise UserError(f"study {study.study_name}", "no trial completed (all failed or were pruned); see the "
                        "trials' lmbench.failure tags, or raise search.trials")
    return best


def compare(spec: ExperimentSpec, *, quiet: bool = False) -> dict[str, Any]:
    """Tune every model with the same budget, retrain the best of each with K seeds, and compare."""
    from lmbench.search import model_spec, sized, study_name
    from lmbench.stats import compare_table

    models = spec.compare.models
    prepare(spec, models)
    rows: list[dict[str, Any]] = []
    root = ensure_run(spec, f"compare-{spec.experiment_name}", {"lmbench.kind": "compare", "lmbench.root_key": root_key(spec)},
                      params={"models": ",".join(models), "trials": spec.search.trials, "seeds": spec.compare.seeds})
    record_spec(root, spec)
    with tree_run(root):
        if spec.search.workers == 0:  # remote workers may serve every study while we wait on the first
            from lmbench.workers import publish

            for arch in models:
                publish(spec, arch, ensure_run(spec, arch, {"lmbench.kind": "model", "lmbench.model": arch},
                                               root.run_id).run_id)
        for arch in models:
            model_run = ensure_run(spec, arch, {"lmbench.kind": "model", "lmbench.model": arch}, root.run_id)
            with tree_run(model_run):
                best = tune_model(spec, arch, model_run.run_id)
                final = sized(model_spec(spec, arch, best))
                model_run.set_tags({"optuna.study": study_name(spec.experiment_name, arch),
                                    "best_params": json.dumps(best)})
                runs = seed_runs(final, model_run.run_id, spec.compare.seeds, arch, {"lmbench.model": arch}, quiet)
                model_rows = rows_of(runs, model=arch)
                model_run.log_metrics(_means(model_rows), step=0, synchronous=True)
                rows += [{**r, "best_params": json.dumps(best)} for r in model_rows]
        table = compare_table(_frame(rows), metric="test_loss")
        path = write_results(spec.experiment_name, "results", table, rows, _meta(spec, "compare", root.run_id))
        root.set_tags({"best_model": str(table.index[0])})
    return {"table": table, "rows": rows, "path": path, "root_run_id": root.run_id, "report": report_of(spec)}


def tune(spec: ExperimentSpec, arch: str, *, quiet: bool = False) -> dict[str, Any]:
    """`lmbench tune`: one study; returns the best trial."""
    from lmbench.search import open_storage, open_study

    prepare(spec, [arch])
    root = ensure_run(spec, f"tune-{arch}", {"lmbench.kind": "tune", "lmbench.root_key": root_key(spec),
                                             "lmbench.model": arch})
    with tree_run(root):
        best = tune_model(spec, arch, root.run_id)
        study = open_study(spec, arch, open_storage(spec.search.storage, spec.experiment_name))
        root.log_metrics({"best_val_loss": study.best_value}, step=0, synchronous=True)
        root.set_tags({"best_params": json.dumps(best)})
    return {"study": study, "best_params": best, "best_value": study.best_value, "root_run_id": root.run_id}


def _frame(rows):
    import pandas as pd

    return pd.DataFrame([{k: v for k, v in r.items() if k not in ("best_params", "run_id")} for r in rows])


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    import numpy as np

    keys = [m for m in METRICS if all(m in r for r in rows)]
    return {f"mean_{k}": float(np.mean([r[k] for r in rows])) for k in keys}


def _meta(spec: ExperimentSpec, kind: str, root_run_id: str) -> dict[str, Any]:
    from lmbench.spec import resolved_dict

    return {"experiment": spec.experiment_name, "kind": kind, "root_run_id": root_run_id,
            "spec": resolved_dict(spec), "confidence": 0.95,
            "ci": "two-sided t-distribution over seeds", "test": "paired t-test on shared seeds"}


# -- ablate -------------------------------------------------------------------------------------


def get_path(raw: dict[str, Any], path: str) -> Any:
    node: Any = raw
    for part in path.split("."):
        node = node[part]
    return node


def ablation_values(spec: ExperimentSpec, arch: str, name: str, baseline: Any) -> list[Any]:
    """The values to sweep: ``ablate.values[name]``, else a grid from the search space."""
    from lmbench.search import grid_values, space_for

    if name in spec.ablate.values:
        values = list(spec.ablate.values[name])
    else:
        space = space_for(spec, arch)
        if name not in space:
            raise SpecError(f"ablate.values.{name}", f"no default grid for {name!r}: give --values")
        values = grid_values(space[name])
    return values if baseline in values else [baseline, *values]


def ablate(spec: ExperimentSpec, *, quiet: bool = False) -> dict[str, Any]:
    """One factor at a time around a baseline; every value trained with the baseline's seeds."""
    from lmbench.search import best_params, model_spec, open_storage, open_study, param_path, sized
    from lmbench.spec import resolved_dict
    from lmbench.stats import ablation_table

    a = spec.ablate
    arch = a.model or spec.model.arch
    if not a.params:
        raise SpecError("--param", "name at least one parameter to ablate")
    paths = {p: param_path(arch, p, where="--param") for p in a.params}
    base_params = {}
    if a.baseline == "best":
        study = open_study(spec, arch, open_storage(spec.search.storage, spec.experiment_name))
        base_params = best_params(study) or {}
        if not base_params:
            raise UserError("--baseline", f"study {study.study_name} has no completed trial to take the best from")
    base = sized(model_spec(spec, arch, base_params))
    sweeps = {}
    for p, path in paths.items():
        baseline_value = get_path(resolved_dict(base), path)
        values = ablation_values(spec, arch, p, baseline_value)
        for v in values:  # validate every value before anything is created
            model_spec(base, arch, extra=[f"{path}={json.dumps(v)}"])
        sweeps[p] = (path, baseline_value, values)
    prepare(base, [arch])
    root = ensure_run(spec, f"ablate-{arch}", {"lmbench.kind": "ablate", "lmbench.root_key": root_key(spec),
                                               "lmbench.model": arch}, params={"params": ",".join(a.params)})
    rows: list[dict[str, Any]] = []
    record_spec(root, spec)
    with tree_run(root):
        base_run = ensure_run(spec, "baseline", {"lmbench.kind": "value", "ablate.value": "baseline"}, root.run_id)
        with tree_run(base_run):
            base_runs = seed_runs(base, base_run.run_id, a.seeds, "baseline", {"ablate.value": "baseline"}, quiet)
        for p, (path, baseline_value, values) in sweeps.items():
            for v in values:
                if v == baseline_value:
                    runs = base_runs  # the baseline runs are shared by every sweep
                else:
                    label = f"{p}={v}"
                    vrun = ensure_run(spec, label, {"lmbench.kind": "value", "ablate.value": label}, root.run_id)
                    with tree_run(vrun):
                        vspec = model_spec(base, arch, extra=[f"{path}={json.dumps(v)}"])
                        runs = seed_runs(vspec, vrun.run_id, a.seeds, label, {"ablate.value": label}, quiet)
                rows += rows_of(runs, param=p, value=v, is_baseline=v == baseline_value)
        frame = _frame(rows)
        table = ablation_table(frame.drop(columns=["is_baseline"]), baseline_values(sweeps), metric="test_loss")
        path = write_results(spec.experiment_name, "ablation", table, rows, _meta(spec, "ablate", root.run_id))
    return {"table": table, "rows": rows, "path": path, "root_run_id": root.run_id, "report": report_of(spec)}


def baseline_values(sweeps: dict[str, tuple[str, Any, list[Any]]]) -> dict[str, Any]:
    return {p: b for p, (_, b, _) in sweeps.items()}
