"""Scale points: the fixed grid of (budget, size, seed) runs of ``lmbench scale`` as study trials.

A scale sweep trains, per architecture and compute budget C, a ladder of model sizes N, each for
the D = C / flops_per_token tokens that spend exactly C (the model's own count, attention
included). The points live on an Optuna study ``<experiment>/scale/<arch>``: the list of points
is its user attribute ``lmbench.scale.points`` and each point is one enqueued trial whose user
attribute ``point`` is its index. Nothing is sampled (a point trial never calls ``suggest``), but
everything else is the trials' machinery: ``--workers``, ``lmbench worker``, heartbeats, retries
of dead workers from their checkpoints, and re-runs that redo nothing.

A point is never lost: the driver queues every point that no trial holds (waiting, running or
finished), and a trial that was asked for without a queued point (possible only after a trial
was interrupted beyond its retries) takes the first such point.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from lmbench.config import ExperimentSpec, build_spec, dump_raw, model_spec
from lmbench.config.raw import is_set
from lmbench.data import prepare_data
from lmbench.errors import SpecError, UserError
from lmbench.stats.scaling import size_ladder
from lmbench.tracking import schema
from lmbench.tuning.liveness import RETRY_HISTORY
from lmbench.tuning.storage import (
    STUDIES_DIR,
    default_storage_path,
    open_storage,
    study_lock,
    study_name,
    with_retries,
)
from lmbench.tuning.trials import counted, tell_failed, train_told

POINTS_ATTR = "lmbench.scale.points"  # study user attribute: every point, in index order
POINT_ATTR = "point"  # trial user attribute: the index of the point it runs
# With the spend rounded to whole batches, a run of S steps misses C by at most 1/(2S): 25 steps
# keep every run within 2% of its budget.
MIN_STEPS = 25


@dataclass(frozen=True)
class Point:
    """One run of a sweep: budget C, the size its sizing aims at, the seed, its MLflow parent (the
    budget run) and the hyperparameters of its architecture's run."""

    compute: float
    target: int
    seed: int
    parent: str
    params: dict[str, Any]

    @property
    def key(self) -> tuple[str, int, int]:
        return self.parent, self.target, self.seed


@dataclass(frozen=True)
class PointPlan:
    """What training a point means: the spec (sized model, ``train.budget`` of D tokens, the
    seed), the achieved non-embedding size, the model's FLOPs per token, D and the steps."""

    spec: ExperimentSpec
    params: int
    flops_per_token: float
    tokens: int
    steps: int


def compute_label(compute: float) -> str:
    """A budget as a tag value: the float's round-trip text, the same in every process."""
    return repr(float(compute))


def scale_study_name(experiment: str, arch: str) -> str:
    return f"{experiment}/scale/{arch}"


def open_point_study(spec: ExperimentSpec, arch: str, storage):
    """The points study of ``arch``: its sampler is never asked (points are fixed), so any will do."""
    return optuna.create_study(
        study_name=scale_study_name(spec.experiment_name, arch),
        storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=spec.search.seed),
        pruner=optuna.pruners.NopPruner(),
        direction="minimize",
        load_if_exists=True,
    )


# -- planning ------------------------------------------------------------------------------------


def ladder(spec: ExperimentSpec, compute: float) -> tuple[int, ...]:
    """The target sizes at budget C: ``scale.sizes`` rungs ``scale.ratio`` apart around the first
    guess N = sqrt(C / (6 r)) of the compute-optimal size (C ~ 6 N D with D = r N tokens)."""
    scale = spec.scale
    return size_ladder(math.sqrt(compute / (6 * scale.tokens_per_param)), scale.sizes, scale.ratio)


def size_tolerance(ratio: float) -> float:
    """How far a rung's size may miss its target: loose enough that sizing keeps the depth at
    small sizes, tight enough that neighbouring rungs (``ratio`` apart) can never meet."""
    return min(0.3, 0.75 * (ratio - 1) / (ratio + 1))


def eval_interval(steps: int, evaluations: int) -> int:
    """The smallest divisor of ``steps`` that is at least ``steps / evaluations``: at most that
    many evaluations, the last on the run's last step, so the final evaluation scores the weights
    at the end of the schedule."""
    return min(d for d in range(1, steps + 1) if steps % d == 0 and d * evaluations >= steps)


def plan_point(
    spec: ExperimentSpec,
    arch: str,
    hparams: dict[str, Any],
    vocab: int,
    compute: float,
    target: int,
    seed: int,
) -> PointPlan:
    """The training spec of one point; a SpecError naming ``scale.compute`` when the budget cannot
    train this size (no such model, or too few steps to spend C within 2%)."""
    import torch

    from lmbench.models import build_model
    from lmbench.models.sizing import SizingError, match_params

    base = model_spec(spec, arch, hparams)
    preset = base.model.preset
    try:
        overrides, counts = match_params(
            arch, vocab, preset, dict(base.model.config), target, size_tolerance(spec.scale.ratio)
        )
    except SizingError as error:
        raise SpecError(
            "scale.compute",
            f"{compute:.3g} FLOPs: the ladder needs {arch} of {target:,} "
            f"non-embedding parameters, which cannot be built ({error.reason})",
        ) from None
    with torch.device("meta"):  # counting only: no memory, no random draws
        flops = build_model(arch, vocab, preset, overrides).flops_per_token(base.data.seq_len)
    batch = base.train.batch_size * base.data.seq_len
    steps = round(compute / flops / batch)
    if steps < MIN_STEPS:
        raise SpecError(
            "scale.compute",
            f"{compute:.3g} FLOPs is too small for {arch} of "
            f"{counts['non_embedding']:,} parameters: {compute / flops:,.0f} tokens = {steps} "
            f"steps of {batch} tokens (< {MIN_STEPS}); raise the budgets or lower "
            "train.batch_size, data.seq_len or scale.ratio",
        )
    extra = [
        f"model.config={json.dumps(overrides)}",
        f"train.budget={{tokens: {steps * batch}}}",
        f"train.seed={seed}",
        "train.early_stopping=null",
        f"train.eval_interval={eval_interval(steps, spec.scale.evaluations)}",
        *budget_schedule(spec, base),
    ]
    return PointPlan(
        build_spec(dump_raw(base), extra), counts["non_embedding"], flops, steps * batch, steps
    )


def budget_schedule(spec: ExperimentSpec, base: ExperimentSpec) -> list[str]:
    """A point anneals within its own budget: a plateau or exponential schedule (the recurrent
    recipe's) follows evaluations or steps, not D, so it becomes cosine unless the spec named it."""
    if base.train.schedule.kind in ("plateau", "exponential") and not is_set(
        spec.train.schedule, "kind"
    ):
        return ["train.schedule.kind=cosine"]
    return []


def training_summary(spec: ExperimentSpec, arch: str, params: dict[str, Any]) -> dict[str, Any]:
    """The settings every point of ``arch`` trains with (for the report)."""
    base = model_spec(spec, arch, params)
    train = build_spec(dump_raw(base), budget_schedule(spec, base)).train
    return {
        "optimizer": train.optimizer.kind,
        "lr": train.lr,
        "weight_decay": train.weight_decay,
        "grad_clip": train.grad_clip,
        "schedule": train.schedule.kind,
        "batch_size": train.batch_size,
    }


def hyperparameters(spec: ExperimentSpec, arch: str) -> dict[str, Any]:
    """``{"source", "params", "train"}``: ``params`` from the best trial of ``scale.from``'s study
    of ``arch`` (without the fields that sizing decides), or none (the architecture's recipe under
    the spec's own settings); ``train``: what the points train with."""
    found = _best_trial(spec, arch)
    if found is None:
        source, params = "the architecture's recipe under the spec's settings", {}
    else:
        source, params = found
    return {"source": source, "params": params, "train": training_summary(spec, arch, params)}


def _best_trial(spec: ExperimentSpec, arch: str) -> tuple[str, dict[str, Any]] | None:
    from lmbench.models import get_arch

    source = spec.scale.from_
    if source is None:
        return None
    if spec.search.storage is None and not default_storage_path(source).is_file():
        raise UserError(
            "scale.from",
            f"no studies of experiment {source!r} in {STUDIES_DIR}/ "
            "(run its compare or tune first, or pass --storage)",
        )
    name = study_name(source, arch)
    try:
        study = optuna.load_study(
            study_name=name, storage=open_storage(spec.search.storage, source)
        )
    except KeyError:
        raise UserError("scale.from", f"experiment {source!r} has no study {name!r}") from None
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    if not done:
        raise UserError("scale.from", f"study {name!r} has no completed trial")
    best = min(done, key=lambda t: t.value)
    fields = get_arch(arch).sizing.fields
    params = {k: v for k, v in best.params.items() if k not in fields}
    return f"best trial {best.number} of study {name} (val loss {best.value:.4f})", params


# -- the study's points --------------------------------------------------------------------------


def stored_points(study) -> list[Point]:
    return [Point(**p) for p in study.user_attrs.get(POINTS_ATTR, [])]


def orphans(study) -> list[int]:
    """Indices of the points that no trial holds: none waiting or running, and none finished in a
    way that counts (:func:`lmbench.tuning.trials.counted`)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY, [])}
    held = {
        t.user_attrs.get(POINT_ATTR)
        for t in trials
        if t.state in (TrialState.RUNNING, TrialState.WAITING) or counted(t, retried)
    }
    return [k for k in range(len(stored_points(study))) if k not in held]


def publish_points(spec: ExperimentSpec, arch: str, wanted: list[Point]) -> int:
    """Add the points the study lacks (append only: indices never change) and queue every point
    no trial holds; returns how many were queued."""
    storage = open_storage(spec.search.storage, spec.experiment_name)

    def locked() -> int:
        with study_lock(storage, spec.experiment_name):
            study = open_point_study(spec, arch, storage)
            stored = stored_points(study)
            known = {p.key for p in stored}
            new = [p for p in wanted if p.key not in known]
            if new:
                study.set_user_attr(POINTS_ATTR, [dataclasses.asdict(p) for p in stored + new])
            queued = orphans(study)
            for index in queued:
                study.enqueue_trial({}, user_attrs={POINT_ATTR: index})
            return len(queued)

    return with_retries(locked, "queueing the scale points")


def point_states(study) -> dict[tuple[str, int, int], str]:
    """Point key -> how its latest trial ended (COMPLETE, FAIL, ...), for the points tried."""
    points = stored_points(study)
    out = {}
    for trial in study.get_trials(deepcopy=False):
        index = trial.user_attrs.get(POINT_ATTR)
        if index is not None and index < len(points):
            out[points[index].key] = trial.state.name
    return out


# -- running one point ---------------------------------------------------------------------------


def _claim(study, trial, storage, experiment: str) -> int | None:
    """The point of ``trial``: its own, else (a trial asked for without a queued point) the first
    point no trial holds, taken under the study lock so two workers never take the same one."""
    index = trial.user_attrs.get(POINT_ATTR)
    if index is not None:
        return int(index)
    with study_lock(storage, experiment):
        free = orphans(study)
        if not free:
            return None
        trial.set_user_attr(POINT_ATTR, free[0])
        return free[0]


def run_point(study, trial, spec: ExperimentSpec, arch: str, storage, live) -> str:
    """Train the point of ``trial`` as a tracked run under its budget run and tell the study how it
    ended; returns the Optuna state."""
    index = _claim(study, trial, storage, spec.experiment_name)
    if index is None:  # counted as done, so nobody asks for another trial in its place
        return tell_failed(study, trial, "no scale point is left to run")
    point = stored_points(study)[index]
    try:
        plan = plan_point(
            spec,
            arch,
            point.params,
            prepare_data(spec.data).vocab_size,
            point.compute,
            point.target,
            point.seed,
        )
    except SpecError as error:
        return tell_failed(study, trial, f"invalid point: {error}")
    tags = {
        schema.KIND: "point",
        schema.STAGE: schema.SCALE_STAGE,
        schema.MODEL: arch,
        schema.SEED: str(point.seed),
        schema.SCALE_COMPUTE: compute_label(point.compute),
        schema.SCALE_TARGET: str(point.target),
        schema.SCALE_TOKENS: str(plan.tokens),
        schema.SCALE_FLOPS_PER_TOKEN: repr(plan.flops_per_token),
        schema.STUDY: study.study_name,
        schema.TRIAL_NUMBER: str(trial.number),
        schema.WORKER_PID: str(os.getpid()),
    }
    name = f"{arch}-C{point.compute:.3g}-N{plan.params}-seed{point.seed}"
    return train_told(
        study,
        trial,
        plan.spec,
        live,
        tags,
        parent_run_id=point.parent,
        run_name=name,
        final_splits=("val", "test"),
    )
