"""`lmbench compare` and `lmbench tune`: studies with equal budgets, then final runs with shared seeds."""

from __future__ import annotations

import json
from typing import Any

from optuna.trial import TrialState

from lmbench.config import ExperimentSpec, model_spec, sized
from lmbench.data import prepare_data
from lmbench.errors import UserError
from lmbench.experiments import runtree
from lmbench.experiments.single import budgeted
from lmbench.stats import compare_table
from lmbench.stats.adequacy import compare_verdicts
from lmbench.tracking import schema
from lmbench.tuning.storage import open_storage, open_study, study_name
from lmbench.tuning.trials import best_params
from lmbench.tuning.workers import publish, run_study


def prepare(spec: ExperimentSpec, models: list[str]) -> None:
    """Everything that can fail on user input, before any study or run is created."""

    vocab = prepare_data(spec.data).vocab_size
    for arch in models:
        sized(model_spec(spec, arch), vocab)  # validates the model and --match-params for every arch
    if spec.search.storage:
        open_storage(spec.search.storage, spec.experiment_name)


def tune_model(spec: ExperimentSpec, arch: str, model_run_id: str) -> dict[str, Any]:
    """Bring the study to its total with the configured workers and return its best params."""

    run_study(spec, arch, model_run_id)
    study = open_study(spec, arch, open_storage(spec.search.storage, spec.experiment_name))
    best = best_params(study)
    if best is None:
        raise UserError(f"study {study.study_name}", "no trial completed (all failed or were pruned); see the "
                        "trials' lmbench.failure tags, or raise search.trials")
    return best


def compare(spec: ExperimentSpec, *, quiet: bool = False) -> dict[str, Any]:
    """Tune every model with the same budget, retrain the best of each with K seeds, and compare.

    Each model is trained with its architecture's recipe where the spec leaves a setting to its
    default; the budgets left to their defaults scale with a named or user corpus. The result
    says whether the comparison was adequate: did each search level off, did each model's final
    runs converge, and what difference could the seeds detect (:mod:`lmbench.stats.adequacy`)."""

    spec, notes = budgeted(spec)
    models = spec.compare.models
    prepare(spec, models)
    rows: list[dict[str, Any]] = []
    root = runtree.ensure_run(spec, f"compare-{spec.experiment_name}", {schema.KIND: "compare", schema.ROOT_KEY: runtree.root_key(spec)},
                      params={"models": ",".join(models), "trials": spec.search.trials, "seeds": spec.compare.seeds})
    runtree.record_spec(root, spec)
    with runtree.TreeRun(root):
        if spec.search.workers == 0:  # remote workers may serve every study while we wait on the first

            for arch in models:
                publish(spec, arch, runtree.ensure_run(spec, arch, {schema.KIND: "model", schema.MODEL: arch},
                                               root.run_id).run_id)
        for arch in models:
            model_run = runtree.ensure_run(spec, arch, {schema.KIND: "model", schema.MODEL: arch}, root.run_id)
            with runtree.TreeRun(model_run):
                best = tune_model(spec, arch, model_run.run_id)
                final = sized(model_spec(spec, arch, best), prepare_data(spec.data).vocab_size)
                model_run.set_tags({schema.STUDY: study_name(spec.experiment_name, arch),
                                    schema.BEST_PARAMS: json.dumps(best)})
                runs = runtree.seed_runs(final, model_run.run_id, spec.compare.seeds, arch, {schema.MODEL: arch}, quiet)
                model_rows = runtree.rows_of(runs, model=arch)
                model_run.log_metrics(runtree.seed_means(model_rows), step=0, synchronous=True)
                rows += [{**r, schema.BEST_PARAMS: json.dumps(best)} for r in model_rows]
        table = compare_table(runtree.results_frame(rows), metric="test_loss")
        verdicts = adequacy(spec, models, rows, table, root)
        table["still_improving"] = [verdicts["still_improving"].get(str(m), False) for m in table.index]
        meta = {**runtree.results_meta(spec, "compare", root.run_id), "budgets": notes, "adequacy": verdicts}
        path = runtree.write_results(spec.experiment_name, "results", table, rows, meta)
        root.set_tags({schema.BEST_MODEL: str(table.index[0])})
    return {"table": table, "rows": rows, "path": path, "root_run_id": root.run_id, "report": runtree.report_of(spec),
            "notes": notes + verdicts["lines"]}


def trial_values(study) -> list[float | None]:
    """A study's finished trials in order: a complete trial's value, None for a pruned or failed one."""

    done = [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)]
    return [t.value if t.state == TrialState.COMPLETE else None for t in sorted(done, key=lambda t: t.number)]


def adequacy(spec: ExperimentSpec, models: list[str], rows: list[dict[str, Any]], table, tracker) -> dict[str, Any]:
    """The adequacy verdicts of a finished comparison: each study's trials, the validation curves
    of the final runs (from MLflow) and the per-seed test losses against the best model."""

    storage = open_storage(spec.search.storage, spec.experiment_name)
    trials = {arch: trial_values(open_study(spec, arch, storage)) for arch in models}
    curves: dict[str, list[list[tuple[float, float]]]] = {}
    per_seed: dict[str, dict[int, float]] = {}
    for row in rows:
        history = tracker.client.get_metric_history(row["run_id"], "val_loss")
        curves.setdefault(row["model"], []).append([(m.step, m.value) for m in history])
        per_seed.setdefault(row["model"], {})[row["seed"]] = row.get("test_loss", float("nan"))
    p_values = {str(m): float(table.at[m, "p_vs_best"]) for m in table.index}
    return compare_verdicts(trials, curves, per_seed, str(table.index[0]), p_values)


def tune(spec: ExperimentSpec, arch: str, *, quiet: bool = False) -> dict[str, Any]:
    """`lmbench tune`: one study; returns the best trial."""

    spec, _ = budgeted(spec)
    prepare(spec, [arch])
    root = runtree.ensure_run(spec, f"tune-{arch}", {schema.KIND: "tune", schema.ROOT_KEY: runtree.root_key(spec),
                                             schema.MODEL: arch})
    with runtree.TreeRun(root):
        best = tune_model(spec, arch, root.run_id)
        study = open_study(spec, arch, open_storage(spec.search.storage, spec.experiment_name))
        root.log_metrics({"best_val_loss": study.best_value}, step=0, synchronous=True)
        root.set_tags({schema.BEST_PARAMS: json.dumps(best)})
    return {"study": study, schema.BEST_PARAMS: best, "best_value": study.best_value, "root_run_id": root.run_id}
