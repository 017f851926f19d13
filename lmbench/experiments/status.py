"""`lmbench status`: where an experiment stands, read only from its stores.

Per model: its study's trials (complete, pruned, failed, running, queued out of the total) and
the best value so far; the final seed runs done; the trials running now with the host, pid and
device of their process and the age of their heartbeat; and an ETA from the trials' own
durations. Everything comes from the Optuna studies (journal or PostgreSQL) and the MLflow store
(local or a tracking server), so it works from any machine that reaches them.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from lmbench.config import build_spec
from lmbench.errors import UserError
from lmbench.report.studies import find_storage
from lmbench.tracking import schema
from lmbench.tracking.alive import heartbeat_age, reap_dead_runs
from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.trials import progress_of, total_trials
from lmbench.tuning.workers import published


@dataclass
class ModelStatus:
    """One model's study and final runs."""

    model: str
    total: int = 0  # trials the study is to have
    counts: dict[str, int] = field(default_factory=dict)  # complete, pruned, failed, running, waiting, done
    best: float | None = None  # best val_loss so far
    trial_seconds: list[float] = field(default_factory=list)  # durations of finished trials
    budget_ratio: float = 1.0  # a final run's budget over a trial's (when both count the same unit)
    seeds_done: int = 0
    seeds_total: int = 0
    final_seconds: list[float] = field(default_factory=list)

    @property
    def trials_left(self) -> int:
        return max(0, self.total - self.counts.get("done", 0))

    @property
    def seeds_left(self) -> int:
        return max(0, self.seeds_total - self.seeds_done)


@dataclass
class RunningTrial:
    model: str
    number: str
    host: str
    pid: str
    device: str
    heartbeat_age: float | None  # seconds


@dataclass
class ExperimentStatus:
    name: str
    models: list[ModelStatus]
    running: list[RunningTrial]
    notes: list[str]

    @property
    def finished(self) -> bool:
        return bool(self.models) and all(not m.trials_left and not m.counts.get("running")
                                         and not m.seeds_left for m in self.models)

    @property
    def workers(self) -> int:
        return max(1, len({(r.host, r.pid) for r in self.running}))

    def eta_seconds(self) -> float | None:
        """Trials left x their mean duration / the workers running them, plus the final runs left
        (one after another) x a final run's duration (measured, or a trial's scaled by budget)."""
        total, known = 0.0, False
        for m in self.models:
            trial = statistics.mean(m.trial_seconds) if m.trial_seconds else None
            final = statistics.mean(m.final_seconds) if m.final_seconds else (
                trial * m.budget_ratio if trial is not None else None)
            if (m.trials_left and trial is None) or (m.seeds_left and final is None):
                return None  # nothing measured yet to go by
            total += (m.trials_left * trial / self.workers if m.trials_left else 0.0)
            total += m.seeds_left * final if m.seeds_left else 0.0
            known = True
        return total if known else None


def experiment_status(experiment: str, storage: str | None = None, tracking_uri: str | None = None) -> ExperimentStatus:
    """Read the experiment's studies and runs; an experiment that is in neither is a UserError."""
    runs = _runs(experiment, tracking_uri)
    notes: list[str] = []
    stored = next((r.data.params.get("search.storage") for r in runs if "search.storage" in r.data.params), None)
    studies = find_storage(experiment, storage, stored, notes)
    found = published(studies, experiment) if studies is not None else []
    if not found and not runs:
        raise UserError("EXPERIMENT", f"no runs or studies of experiment {experiment!r} here "
                        "(run it first, or pass --storage / --tracking-uri)")
    models = [_model_status(studies, experiment, arch, raw, runs) for arch, raw, _ in found]
    for arch in _final_only(runs, {m.model for m in models}):
        models.append(_model_status(None, experiment, arch, None, runs))
    running = [_running(r) for r in runs if r.info.status == "RUNNING" and r.data.tags.get(schema.KIND) == "trial"]
    return ExperimentStatus(experiment, models, running, notes)


def _runs(experiment: str, tracking_uri: str | None) -> list:
    """The experiment's runs, newest first, after ending those of dead processes (never creates a store)."""
    from mlflow import MlflowClient

    uri = resolve_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    client = MlflowClient(uri)
    reap_dead_runs(client)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    out, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        out += list(page)
        token = page.token
        if not token:
            return out


def _model_status(studies, experiment: str, arch: str, raw: dict | None, runs: list) -> ModelStatus:
    status = ModelStatus(arch)
    if studies is not None and raw is not None:
        import optuna

        spec = build_spec(raw)
        study = optuna.load_study(study_name=f"{experiment}/{arch}", storage=studies)
        status.total = total_trials(spec, arch)
        status.counts = _counts(study)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
        status.best = min(t.value for t in done) if done else None
        status.trial_seconds = [(t.datetime_complete - t.datetime_start).total_seconds()
                                for t in study.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_start]
        status.budget_ratio = _budget_ratio(spec)
    finals = _finals(runs, arch)
    status.seeds_total = _seeds_asked(runs) or 0  # none for a tune
    status.seeds_done = len({r.data.tags.get(schema.SEED) for r in finals if r.info.status == "FINISHED"})
    status.final_seconds = [(r.info.end_time - r.info.start_time) / 1000 for r in finals
                            if r.info.status == "FINISHED" and r.info.end_time]
    return status


def _counts(study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    by_state = {state: sum(t.state == state for t in trials) for state in TrialState}
    return {"complete": by_state[TrialState.COMPLETE], "pruned": by_state[TrialState.PRUNED],
            "failed": by_state[TrialState.FAIL], "running": by_state[TrialState.RUNNING],
            "waiting": by_state[TrialState.WAITING], "done": progress_of(study)["done"]}


def _budget_ratio(spec) -> float:
    trial, final = spec.search.budget or spec.train.budget, spec.train.budget
    return final.amount / trial.amount if trial.kind == final.kind else 1.0


def _finals(runs: list, arch: str) -> list:
    """Final (seed) runs of ``arch`` under the latest compare root."""
    roots = [r for r in runs if r.data.tags.get(schema.KIND) == "compare" and schema.PARENT_TAG not in r.data.tags]
    if not roots:
        return []
    parents = {r.info.run_id for r in runs if r.data.tags.get(schema.PARENT_TAG) == roots[0].info.run_id}
    return [r for r in runs if r.data.tags.get(schema.KIND) == "final" and schema.model_of(r.data.tags) == arch
            and r.data.tags.get(schema.PARENT_TAG) in parents]


def _seeds_asked(runs: list) -> int | None:
    roots = [r for r in runs if r.data.tags.get(schema.KIND) == "compare" and schema.PARENT_TAG not in r.data.tags]
    seeds = roots[0].data.params.get("seeds") if roots else None
    return int(seeds) if seeds and seeds.isdigit() else None


def _final_only(runs: list, known: set[str]) -> list[str]:
    """Models with final runs but no published study here (e.g. studies in another storage)."""
    archs = [schema.model_of(r.data.tags) for r in runs if r.data.tags.get(schema.KIND) == "final"]
    return [a for a in dict.fromkeys(archs) if a and a not in known and _finals(runs, a)]


def _running(run) -> RunningTrial:
    tags: dict[str, Any] = run.data.tags
    return RunningTrial(schema.model_of(tags) or "?", tags.get(schema.TRIAL_NUMBER, "?"), tags.get(schema.HOST, "?"),
                        tags.get(schema.PID) or tags.get(schema.WORKER_PID, "?"), tags.get(schema.DEVICE, "?"),
                        heartbeat_age(tags, time.time()))
