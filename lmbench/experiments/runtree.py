"""The MLflow run tree of a command, its seed runs, and its results files.

Tree: experiment root run (kind=compare|ablate|tune) -> one run per model (or per ablation value)
-> trial runs (stage=search) and final seed runs (stage=final, seed=k). Re-running a command finds
its earlier runs by their tags and continues: finished trials and seed runs are never redone, so
a finished command is idempotent."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from lmbench.config import ExperimentSpec, build_spec, dump_raw, resolved_dict
from lmbench.files import report_dir
from lmbench.signals import Terminated
from lmbench.tracking import schema
from lmbench.tracking.schema import METRICS
from lmbench.tracking.tracker import Tracker
from lmbench.training.run import train

log = logging.getLogger(__name__)


def root_key(spec: ExperimentSpec) -> str:
    """Identity of a command's root run: the spec without the knobs that only say 'how much more'."""
    raw = dump_raw(spec)
    # which models/params run now is not part of the identity: each has its own child run
    for section, key in (("search", "trials"), ("search", "workers"), ("search", "devices"), ("search", "storage"),
                         ("search", "heartbeat_interval"), ("search", "grace_period"), ("search", "max_retries"),
                         ("compare", "seeds"), ("compare", "models"), ("ablate", "seeds"), ("ablate", "params"),
                         ("ablate", "values"), ("tracking", "tracking_uri")):
        raw[section].pop(key, None)
    if raw.get("kind") == "scale":  # more models, budgets or seeds continue the same sweep
        for key in ("models", "compute", "seeds"):
            raw["scale"].pop(key, None)
    else:  # a section the command does not read: keys stay as they were before it existed
        raw.pop("scale", None)
    return hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]


def ensure_run(spec: ExperimentSpec, name: str, tags: dict[str, str], parent_run_id: str | None = None,
               params: dict[str, Any] | None = None):
    """The run with these tags (under this parent) from an earlier invocation, reopened; else a new one."""

    tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
    found = tracker.find_runs(tags, parent=parent_run_id or None, max_results=1)
    if found:
        tracker.reopen(found[0].info.run_id)
    else:
        tracker.start(name, params or {}, tags, parent_run_id)
    return tracker


def finished_child(tracker, parent_run_id: str, tags: dict[str, str]):
    """A FINISHED child run with these tags, if an earlier invocation completed it."""

    found = tracker.find_runs(tags, parent=parent_run_id, status="FINISHED", max_results=1)
    return found[0] if found else None


class TreeRun:
    """Context manager: a parent run that ends FINISHED, FAILED or KILLED like its children."""

    def __init__(self, tracker):
        self.tracker = tracker

    def __enter__(self):
        return self.tracker

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, (KeyboardInterrupt, Terminated)):
            status = "KILLED"
        else:
            status = "FAILED"
        self.tracker.finish(status)


@dataclass
class SeedRun:
    seed: int
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]


def seed_runs(spec: ExperimentSpec, parent_run_id: str, seeds: int, label: str, tags: dict[str, str],
              quiet: bool) -> list[SeedRun]:
    """Train ``spec`` with seeds base..base+K-1 (the same for every model/value), reusing finished ones."""

    out = []
    for offset in range(seeds):
        seed = spec.train.seed + offset
        run_tags = {**tags, schema.STAGE: "final", schema.SEED: str(seed)}
        tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
        done = finished_child(tracker, parent_run_id, run_tags)
        if done is None:
            log.info("%s: final run with seed %d", label, seed)
            seeded = build_spec(dump_raw(spec), [f"train.seed={seed}"])
            train(seeded, tracker=tracker, parent_run_id=parent_run_id, run_name=f"{label}-seed-{seed}",
                  tags={schema.KIND: "final", **run_tags}, quiet=quiet)
            done = tracker.client.get_run(tracker.run_id)
        out.append(SeedRun(seed, done.info.run_id, dict(done.data.metrics), dict(done.data.params)))
    return out


def rows_of(runs: list[SeedRun], **columns: Any) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        row = {**columns, "seed": run.seed, "run_id": run.run_id}
        row.update({m: run.metrics[m] for m in METRICS if m in run.metrics})
        if "params.non_embedding" in run.params:
            row["params_non_embedding"] = int(run.params["params.non_embedding"])
        rows.append(row)
    return rows


def write_results(experiment: str, name: str, table, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
    """reports/<experiment>/<name>.csv (the table) and .json (table, per-seed rows, metadata)."""
    out = report_dir(experiment)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{name}.csv")
    payload = {"meta": meta, "table": json.loads(table.reset_index().to_json(orient="records")), "runs": rows}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    return out / f"{name}.csv"


def record_spec(root, spec: ExperimentSpec) -> None:
    """The command's spec as the root run's spec.yaml: ``lmbench compare|ablate spec.yaml`` repeats it."""

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "spec.yaml"
            path.write_text(yaml.safe_dump(dump_raw(spec), sort_keys=False))  # same spec, same root_key
            root.log_artifact(path)
    except Exception as error:  # reproducibility aid only: never the reason a command fails
        log.warning("could not log spec.yaml to run %s: %s", root.run_id, error)


def report_of(spec: ExperimentSpec) -> Path | None:
    """Build the experiment's HTML report; a failure is a warning, never the experiment's failure."""
    # imported here: its plotting libraries cost ~2 s of start-up to every command that builds none
    from lmbench.report.build import build_report

    try:
        return build_report(spec.experiment_name, tracking_uri=spec.tracking.tracking_uri,
                            storage=spec.search.storage)
    except Exception as error:
        log.warning("could not build the report of %s: %s", spec.experiment_name, error)
        return None


def results_frame(rows):
    return pd.DataFrame([{k: v for k, v in r.items() if k not in (schema.BEST_PARAMS, "run_id")} for r in rows])


def seed_means(rows: list[dict[str, Any]]) -> dict[str, float]:
    keys = [m for m in METRICS if all(m in r for r in rows)]
    return {f"mean_{k}": float(np.mean([r[k] for r in rows])) for k in keys}


def results_meta(spec: ExperimentSpec, kind: str, root_run_id: str) -> dict[str, Any]:
    return {"experiment": spec.experiment_name, "kind": kind, "root_run_id": root_run_id,
            "spec": resolved_dict(spec), "confidence": 0.95,
            "ci": "two-sided t-distribution over seeds", "test": "paired t-test on shared seeds"}
