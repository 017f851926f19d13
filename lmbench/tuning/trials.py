"""Running trials: asking a study for work, training it as a tracked run, telling the outcome.

A trial is an ordinary training run (the one loop in :mod:`lmbench.training`) with a trial budget,
whose validation loss is reported to Optuna at every evaluation so the pruner can stop it.
Each trial is also an MLflow run under the model's run, tagged with its study, number and final
Optuna state (pruned trials end KILLED, failed ones FAILED)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from typing import Any

from optuna.pruners import NopPruner
from optuna.trial import TrialState

from lmbench import secrets
from lmbench.config import ExperimentSpec, grid_values, model_spec, sized, space_for
from lmbench.data import prepare_data
from lmbench.errors import SpecError
from lmbench.signals import Terminated
from lmbench.tracking import schema
from lmbench.tracking.tracker import Tracker
from lmbench.training.loop import RunStopped
from lmbench.training.run import train
from lmbench.tuning.liveness import RETRY_HISTORY, retry_history
from lmbench.tuning.samplers import suggest
from lmbench.tuning.storage import study_lock, with_retries

log = logging.getLogger(__name__)


def counted(trial, retried: frozenset[int] | set[int] = frozenset()) -> bool:
    """Trials that use up the budget: finished ones, except failed ones that were retried (their
    retry counts instead) and those interrupted by the user (a re-run trains a new one)."""

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return (trial.state == TrialState.FAIL and trial.number not in retried
            and not trial.user_attrs.get("interrupted", False))


def progress_of(study) -> dict[str, int]:
    """Counted (finished), running and waiting (queued retries) trials of a study."""

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY, [])}
    return {"done": sum(counted(t, retried) for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "waiting": sum(t.state == TrialState.WAITING for t in trials)}


def next_trial(study, storage, total: int, experiment: str, live=None):
    """Recover dead trials, then ask for a trial: a queued retry first, else a new one unless the
    study already has ``total`` counted or running ones. Storage hiccups are retried."""

    def locked():
        with study_lock(storage, experiment):
            if live is not None:
                live.recover(study)
            progress = progress_of(study)
            if not progress["waiting"] and progress["done"] + progress["running"] >= total:
                return None
            trial = study.ask()  # pops a waiting retry before it creates a new trial
            if live is not None:
                try:
                    live.beat(storage, study, trial)  # alive from the start, before the lock is released
                except Exception:
                    _abandon(study, trial)
                    raise
            return trial

    return with_retries(locked, "asking for a trial")


def _abandon(study, trial) -> None:
    """Best effort: a trial that never got its first heartbeat is failed and not counted, rather
    than left RUNNING (Optuna's RDB heartbeat never judges a trial that has no heartbeat yet)."""

    with contextlib.suppress(Exception):
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)


def best_params(study) -> dict[str, Any] | None:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if math.isfinite(t.value)]
    return min(done, key=lambda t: t.value).params if done else None


def trial_spec(spec: ExperimentSpec, arch: str, params: dict[str, Any]) -> ExperimentSpec:
    """The training spec of one trial: its params and the per-trial budget."""
    budget = spec.search.budget or spec.train.budget
    budgeted = model_spec(spec, arch, params, [f"train.budget={json.dumps(budget.model_dump(exclude_none=True))}"])
    return sized(budgeted, prepare_data(spec.data).vocab_size)


def last_eval(spec: ExperimentSpec, step: int, tokens: int) -> bool:
    """Whether the budget runs out before the next periodic evaluation (steps and tokens budgets;
    a seconds budget cannot tell, so every evaluation of it may prune)."""
    budget, interval = spec.train.budget, spec.train.eval_interval
    if budget.kind == "steps":
        return step + interval >= budget.amount
    if budget.kind == "tokens":
        return tokens + interval * tokens / max(step, 1) >= budget.amount
    return False


def run_trial(study, trial, spec: ExperimentSpec, arch: str, parent_run_id: str | None, live) -> str:
    """Train one trial as a tracked run and tell Optuna how it ended; returns the Optuna state
    (:func:`train_told`). ``live``: :class:`lmbench.tuning.liveness.Liveness`."""

    space = space_for(spec, arch)
    params = with_retries(lambda: suggest(trial, space), "drawing the trial's parameters")
    try:
        tspec = trial_spec(spec, arch, params)
    except SpecError as error:  # a combination the model rejects (e.g. heads not dividing width)
        return tell_failed(study, trial, f"invalid parameters: {error}")

    def on_eval(step: int, tokens: int, metrics: dict[str, float]) -> None:
        with_retries(lambda: trial.report(metrics["val_loss"], step), "reporting to the study")
        if last_eval(tspec, step, tokens) or isinstance(study.pruner, NopPruner):
            # pruning now would save nothing and throw away a nearly finished candidate; and
            # NopPruner never prunes, while asking it costs a read of the whole trial (~10 ms on PostgreSQL)
            return
        if with_retries(trial.should_prune, "asking the pruner"):
            raise RunStopped("KILLED", {schema.OPTUNA_STATE: "PRUNED"})

    tags = {schema.KIND: "trial", schema.STAGE: "search", schema.MODEL: arch, schema.STUDY: study.study_name,
            schema.TRIAL_NUMBER: str(trial.number), schema.WORKER_PID: str(os.getpid())}
    return train_told(study, trial, tspec, live, tags, parent_run_id=parent_run_id,
                      run_name=f"{arch}-trial-{trial.number}", on_eval=on_eval, final_splits=("val",))


def train_told(study, trial, tspec: ExperimentSpec, live, tags: dict[str, str], *, parent_run_id: str | None,
               run_name: str, on_eval=None, final_splits: tuple[str, ...]) -> str:
    """Train ``tspec`` as the tracked run of ``trial`` and tell the study how it ended (its
    ``final_val_loss``, pruned or failed); returns the Optuna state. Shared by search trials and
    the fixed points of a scale sweep (:mod:`lmbench.tuning.points`).

    A retried trial (its worker died or was pre-empted) resumes from the last checkpoint of its
    previous attempt when that exists on this machine.
    """
    tracker = Tracker(tspec.experiment_name, tspec.tracking.tracking_uri)
    tags = dict(tags)
    history = with_retries(lambda: retry_history(trial), "reading the trial")
    resume = live.resume_point(study.study_name, trial) if history else None
    if history:
        tags.update({schema.RETRY_OF: str(history[-1]), schema.RESUMED_FROM: str(resume or "")})
        log.info("trial %d retries trial %d%s", trial.number, history[-1], f" from {resume}" if resume else "")
    try:
        result = train(tspec, tracker=tracker, parent_run_id=parent_run_id, run_name=run_name,
                       tags=tags, quiet=True, on_eval=on_eval, final_splits=final_splits, resume=resume)
    except RunStopped:
        with_retries(lambda: tell(study, trial, state=TrialState.PRUNED), "telling the study")
        return "PRUNED"
    except (KeyboardInterrupt, Terminated):  # the run checkpointed and ended KILLED
        _set_state_tag(tracker, "FAIL")
        _tell_interrupted(study, trial, live)
        raise
    except Exception as error:  # NaN loss, out of memory, ...: this trial fails, the study goes on
        _set_state_tag(tracker, "FAIL")
        return tell_failed(study, trial, f"{type(error).__name__}: {error}")
    with_retries(lambda: trial.set_user_attr("run_id", result.run_id), "recording the trial's run")
    with_retries(lambda: tell(study, trial, result.final["final_val_loss"]), "telling the study")
    _set_state_tag(tracker, "COMPLETE")
    return "COMPLETE"


def _tell_interrupted(study, trial, live) -> None:
    """A trial stopped by SIGTERM or Ctrl-C fails and is queued again with the same parameters,
    to resume from its checkpoint; once out of retries it is not counted, so a re-run samples anew."""

    retry = len(retry_history(trial)) < live.max_retries
    if not retry:
        trial.set_user_attr("interrupted", True)
    tell(study, trial, state=TrialState.FAIL)
    if retry:
        live.retry(study, study.get_trials(deepcopy=False)[trial.number])


def _set_state_tag(tracker, state: str) -> None:
    if tracker.run_id is not None:
        tracker.set_tags({schema.OPTUNA_STATE: state})


def tell_failed(study, trial, reason: str) -> str:
    first = (reason.splitlines() or [""])[0]
    log.warning("trial %d of %s failed: %s", trial.number, study.study_name, secrets.scrub(first))
    with_retries(lambda: trial.set_user_attr("failure", secrets.scrub(reason)[:2000]), "recording the failure")
    with_retries(lambda: tell(study, trial, state=TrialState.FAIL), "telling the study")
    return "FAIL"


def tell(study, trial, value: float | None = None, state=None) -> None:
    """``study.tell`` for ask/tell loops.

    Optuna's GridSampler calls ``study.stop()`` after the last grid point, which is only allowed
    inside ``study.optimize``; the trial is stored regardless, and our loop stops by itself
    because :func:`total_trials` caps a grid study at the grid's size.
    """
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        if "Study.stop" not in str(error):
            raise


def total_trials(spec: ExperimentSpec, arch: str) -> int:
    """``search.trials``, or fewer for a grid that has fewer points."""
    if spec.search.sampler != "grid":
        return spec.search.trials
    size = math.prod(len(grid_values(d, 3)) for d in space_for(spec, arch).values())
    return min(spec.search.trials, size)
