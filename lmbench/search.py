"""Optuna search: spaces, samplers, pruners, studies, and running trials as tracked training runs.

A trial is an ordinary training run (the one loop in :mod:`lmbench.train`) with a trial budget,
whose validation loss is reported to Optuna at every evaluation so the pruner can stop it.
Each trial is also an MLflow run under the model's run, tagged with its study, number and final
Optuna state (pruned trials end KILLED, failed ones FAILED).

Studies are named ``<experiment>/<model>``. The default storage is a journal file in
``studies/`` that several processes on one machine can share (file locks, no server); any Optuna
RDB URL (PostgreSQL, MySQL, SQLite) makes a study shareable between machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lmbench.errors import SpecError
from lmbench.spec import ExperimentSpec, TrainSpec, build_spec, dump_raw

log = logging.getLogger(__name__)

# Training hyperparameters every architecture is tuned over, besides its own model space.
TRAIN_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
}
# Short names of train parameters that are not plain fields of TrainSpec.
TRAIN_ALIASES = {"schedule": "train.schedule.kind", "warmup": "train.schedule.warmup_steps"}
STUDIES_DIR = Path("studies")
SIZE_FIELDS = ("d_model", "d_embed", "d_ff", "n_layers")


# -- parameters and spaces ---------------------------------------------------------------------


def param_path(arch: str, name: str, where: str = "--param") -> str:
    """The dotted spec key of a parameter: a model config field, a train field, or a full path."""
    from lmbench.models import get_arch

    fields = set(get_arch(arch).config_cls.__dataclass_fields__)
    if "." in name:
        root = name.split(".")[0]
        if root not in ("model", "train", "data"):
            raise SpecError(where, f"{name!r} must start with model., train. or data.")
        return name
    if name in fields:
        return f"model.config.{name}"
    if name in TRAIN_ALIASES:
        return TRAIN_ALIASES[name]
    if name in TrainSpec.model_fields and name not in ("budget", "schedule", "device"):
        return f"train.{name}"
    known = sorted(fields) + sorted(TRAIN_SPACE) + sorted(TRAIN_ALIASES)
    raise SpecError(where, f"{arch} has no parameter {name!r} (known: {', '.join(known)})")


def space_for(spec: ExperimentSpec, arch: str) -> dict[str, dict[str, Any]]:
    """The search space of ``arch``: train params, the registry's model space, spec overrides."""
    from lmbench.models import get_arch

    space = {**TRAIN_SPACE, **get_arch(arch).search_space}
    if spec.compare.match_params:  # sizes are solved for the parameter budget, not searched
        space = {k: v for k, v in space.items() if k not in SIZE_FIELDS}
    for name, dist in spec.search.space.get(arch, {}).items():
        space[name] = dist.as_dist()
    return space


def sized(spec: ExperimentSpec) -> ExperimentSpec:
    """With ``compare.match_params``, resize the model so its non-embedding count matches."""
    target = spec.compare.match_params
    if not target:
        return spec
    from lmbench.data import prepare_data
    from lmbench.sizing import match_params

    vocab = prepare_data(spec.data).tokenizer.vocab_size  # a cache hit after the first call
    overrides, _ = match_params(spec.model.arch, vocab, spec.model.preset, dict(spec.model.config), target)
    return build_spec(dump_raw(spec), [f"model.config={json.dumps(overrides)}"])


def check_space(arch: str, name: str, dist: dict[str, Any], where: str) -> None:
    """A space entry must name a real parameter and its extreme values must be valid there.

    Only errors about this parameter itself are rejected: a value that clashes with another
    parameter (d_model vs n_heads) may be fine in combination, so such a trial fails on its own.
    """
    path = param_path(arch, name, where)
    for value in grid_values(dist, 3 if dist["type"] != "categorical" else 1000):
        try:
            build_spec({"model": {"arch": arch}}, [f"{path}={json.dumps(value)}"])
        except SpecError as e:
            if e.where == path:
                raise SpecError(where, f"value {value!r} is invalid ({e.reason})") from None


def grid_values(dist: dict[str, Any], n: int = 5) -> list[Any]:
    """A sensible grid over one dimension (used by the grid sampler and default ablation values)."""
    if dist["type"] == "categorical":
        return list(dist["choices"])
    low, high = dist["low"], dist["high"]
    if dist["type"] == "int":
        if high - low + 1 <= n:
            return list(range(low, high + 1))
        return sorted({round(low + i * (high - low) / (n - 1)) for i in range(n)})
    if dist.get("log"):
        return [float(low * (high / low) ** (i / (n - 1))) for i in range(n)]
    return [float(low + i * (high - low) / (n - 1)) for i in range(n)]


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ask the trial for one value per dimension."""
    out = {}
    for name, d in space.items():
        if d["type"] == "categorical":
            out[name] = trial.suggest_categorical(name, d["choices"])
        elif d["type"] == "int":
            out[name] = trial.suggest_int(name, d["low"], d["high"], log=d.get("log", False), step=int(d.get("step") or 1))
        else:
            out[name] = trial.suggest_float(name, d["low"], d["high"], log=d.get("log", False), step=d.get("step"))
    return out


def model_spec(spec: ExperimentSpec, arch: str, params: dict[str, Any] | None = None,
               extra: list[str] | None = None) -> ExperimentSpec:
    """``spec`` for architecture ``arch`` with ``params`` applied (validated like any spec).

    The spec's own model config only applies to its own architecture; other architectures
    start from the same preset with their defaults.
    """
    raw = dump_raw(spec)
    raw["model"] = {"arch": arch, "preset": spec.model.preset,
                    "config": dict(spec.model.config) if arch == spec.model.arch else {}}
    overrides = [f"{param_path(arch, k)}={json.dumps(v)}" for k, v in (params or {}).items()]
    return build_spec(raw, overrides + list(extra or []))


# -- samplers, pruners, storages, studies ------------------------------------------------------


def make_sampler(spec: ExperimentSpec, space: dict[str, dict[str, Any]]):
    """The study's sampler, seeded per trial (see :func:`_trial_seeded_class`)."""
    return _trial_seeded_class()(lambda seed: _sampler(spec, space, seed), spec.search.seed)


def _sampler(spec: ExperimentSpec, space: dict[str, dict[str, Any]], seed: int):
    import optuna

    s = spec.search
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.sampler == "grid":
        # the grid's shuffled order comes from the seed and must be the same in every process;
        # trial k takes grid point k, so nothing is replayed
        grid = {name: grid_values(d, 3) for name, d in space.items()}
        return optuna.samplers.GridSampler(grid, seed=s.seed)
    # a third of the budget (at least 3, at most 10) explores at random before TPE models it
    startup = min(10, max(3, s.trials // 3))
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=startup,
                                      constant_liar=True)


def trial_seed(seed: int, number: int) -> int:
    """A 32-bit seed that is a pure function of (search.seed, trial number), well mixed."""
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


@functools.cache
def _trial_seeded_class():
    """The sampler class, built on first use so that importing this module stays light."""
    import optuna

    class _TrialSeeded(optuna.samplers.BaseSampler):
        """Delegates to a fresh sampler per trial, seeded by ``trial_seed(seed, trial.number)``.

        Optuna samplers keep their random state in the process. Every process that opens a study
        (a re-run that continues it, each ``--workers`` process, each machine) would build a
        sampler with the same seed and replay the same draws: the random start-up trials would
        be duplicates of each other. TPE, random and grid samplers read everything else from the
        study's history, so a fresh instance per trial loses nothing and makes trial k's draw
        depend only on the seed, k and the history - reproducible and never replayed.
        """

        def __init__(self, factory, seed: int):
            self._factory, self._seed = factory, seed
            self._inner: dict[int, Any] = {}  # trial number -> its sampler (the last few)

        def _for(self, trial):
            inner = self._inner.get(trial.number)
            if inner is None:
                inner = self._inner[trial.number] = self._factory(trial_seed(self._seed, trial.number))
                for old in sorted(self._inner)[:-8]:
                    del self._inner[old]
            return inner

        def before_trial(self, study, trial) -> None:
            self._for(trial).before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._for(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._for(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self._for(trial).after_trial(study, trial, state, values)
            self._inner.pop(trial.number, None)

        def reseed_rng(self) -> None:  # seeds are per trial already
            pass

    return _TrialSeeded


def make_pruner(spec: ExperimentSpec):
    """Pruners judge ``val_loss`` reported at each evaluation (the resource is the optimizer step).

    Hyperband's smallest rung is the first evaluation: below it there is nothing to compare, and
    with ``min_resource=1`` every bracket's early rungs collapsed onto that first report.
    """
    import optuna

    kind = spec.search.pruner
    first_eval = spec.train.eval_interval
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first_eval, max_resource="auto", reduction_factor=3)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def default_storage_path(experiment: str) -> Path:
    return STUDIES_DIR / f"{experiment}.journal"


def open_storage(url: str | None, experiment: str, live=None):
    """An Optuna storage: the URL given, else a journal file in ``studies/``.

    ``live`` (a :class:`lmbench.liveness.Liveness`) turns on Optuna's heartbeat on RDB storages,
    for processes that run or recover trials (the journal's liveness lives in lease files).
    A URL that cannot be opened is a SpecError naming it, raised before anything is created.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        path = default_storage_path(experiment)
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    heartbeat = {}
    if live is not None:
        from lmbench.liveness import quiet_optuna_warnings

        quiet_optuna_warnings()
        heartbeat = {"heartbeat_interval": live.interval, "grace_period": live.grace,
                     "heartbeat_stale_trial_callback": live.on_dead}
    import sqlalchemy.exc

    attempts = 5
    for attempt in range(attempts):
        try:
            # pre-ping: a pooled connection that died with a PostgreSQL restart is replaced, not used
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **heartbeat)
        except Exception as e:  # sqlalchemy raises many kinds; the user needs the URL and the reason
            racing = isinstance(e, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError))
            if racing and attempt < attempts - 1:  # workers creating a new database's tables at once
                time.sleep(0.2 * (attempt + 1))
                continue
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise SpecError("--storage", f"cannot open Optuna storage {url!r}: {reason}") from None
    raise AssertionError("unreachable")


def study_name(experiment: str, arch: str) -> str:
    return f"{experiment}/{arch}"


def open_study(spec: ExperimentSpec, arch: str, storage):
    import optuna

    space = space_for(spec, arch)
    return optuna.create_study(study_name=study_name(spec.experiment_name, arch), storage=storage,
                               sampler=make_sampler(spec, space), pruner=make_pruner(spec),
                               direction="minimize", load_if_exists=True)


def counted(trial, retried: frozenset[int] | set[int] = frozenset()) -> bool:
    """Trials that use up the budget: finished ones, except failed ones that were retried (their
    retry counts instead) and those interrupted by the user (a re-run trains a new one)."""
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return (trial.state == TrialState.FAIL and trial.number not in retried
            and not trial.user_attrs.get("interrupted", False))


def progress_of(study) -> dict[str, int]:
    """Counted (finished), running and waiting (queued retries) trials of a study."""
    from optuna.trial import TrialState

    from lmbench.liveness import RETRY_HISTORY

    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY, [])}
    return {"done": sum(counted(t, retried) for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "waiting": sum(t.state == TrialState.WAITING for t in trials)}


@contextlib.contextmanager
def study_lock(storage, experiment: str) -> Iterator[None]:
    """Serialise 'count trials, then ask' (and recovery) between workers, so the total is never
    overshot: a PostgreSQL advisory lock across machines, else a file lock on this machine."""
    engine = getattr(storage, "engine", None)  # RDBStorage's SQLAlchemy engine
    if engine is not None and engine.dialect.name == "postgresql":
        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(f"lmbench/{experiment}".encode()).digest()[:8], "big", signed=True)
        with engine.connect() as conn:  # the lock dies with the connection if this process does
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    STUDIES_DIR.mkdir(parents=True, exist_ok=True)
    with open(STUDIES_DIR / f".{experiment}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def next_trial(study, storage, total: int, experiment: str, live=None):
    """Recover dead trials, then ask for a trial: a queued retry first, else a new one unless the
    study already has ``total`` counted or running ones. Storage hiccups are retried."""

    def locked():
        with study_lock(storage, experiment):
            if live is not None:
                live.recover(study)
            p = progress_of(study)
            if not p["waiting"] and p["done"] + p["running"] >= total:
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
    from optuna.trial import TrialState

    with contextlib.suppress(Exception):
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=TrialState.FAIL)


def with_retries(fn, what: str, attempts: int = 8):
    """``fn()``, retried with exponential backoff (1, 2, 4, ... 30 s) while the storage is unreachable."""
    import optuna
    import sqlalchemy.exc

    transient = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError,
                 sqlalchemy.exc.InterfaceError)
    for attempt in range(attempts):
        try:
            return fn()
        except transient as e:
            if attempt == attempts - 1:
                raise
            wait = min(30.0, 2.0 ** attempt)
            log.warning("%s: storage unreachable (%s); retrying in %.0f s", what, str(e).splitlines()[0][:200], wait)
            time.sleep(wait)
    return None


def best_params(study) -> dict[str, Any] | None:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if math.isfinite(t.value)]
    return min(done, key=lambda t: t.value).params if done else None


# -- running trials ----------------------------------------------------------------------------


def trial_spec(spec: ExperimentSpec, arch: str, params: dict[str, Any]) -> ExperimentSpec:
    """The training spec of one trial: its params and the per-trial budget."""
    budget = spec.search.budget or spec.train.budget
    return sized(model_spec(spec, arch, params, [f"train.budget={json.dumps(budget.model_dump(exclude_none=True))}"]))


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
    """Train one trial as a tracked run and tell Optuna how it ended; returns the Optuna state.

    A retried trial (its worker died or was pre-empted) resumes from the last checkpoint of its
    previous attempt when that exists on this machine. ``live``: :class:`lmbench.liveness.Liveness`.
    """
    from optuna.trial import TrialState

    from lmbench.liveness import retry_history
    from lmbench.tracking import Tracker
    from lmbench.train import RunStopped, Terminated, train

    params = suggest(trial, space_for(spec, arch))
    try:
        tspec = trial_spec(spec, arch, params)
    except SpecError as e:  # a combination the model rejects (e.g. heads not dividing width)
        return _tell_failed(study, trial, f"invalid parameters: {e}")

    def on_eval(step: int, tokens: int, metrics: dict[str, float]) -> None:
        with_retries(lambda: trial.report(metrics["val_loss"], step), "reporting to the study")
        if last_eval(tspec, step, tokens):
            return  # pruning now would save nothing and throw away a nearly finished candidate
        if with_retries(trial.should_prune, "asking the pruner"):
            raise RunStopped("KILLED", {"optuna_state": "PRUNED"})

    tracker = Tracker(spec.experiment_name, spec.tracking.tracking_uri)
    tags = {"lmbench.kind": "trial", "stage": "search", "lmbench.model": arch, "optuna.study": study.study_name,
            "optuna.trial_number": str(trial.number), "lmbench.worker_pid": str(os.getpid())}
    history = retry_history(trial)
    resume = live.resume_point(study.study_name, trial) if history else None
    if history:
        tags.update({"optuna.retry_of": str(history[-1]), "lmbench.resumed_from": str(resume or "")})
        log.info("trial %d retries trial %d%s", trial.number, history[-1], f" from {resume}" if resume else "")
    try:
        result = train(tspec, tracker=tracker, parent_run_id=parent_run_id, run_name=f"{arch}-trial-{trial.number}",
                       tags=tags, quiet=True, on_eval=on_eval, final_splits=("val",), resume=resume)
    except RunStopped:
        with_retries(lambda: tell(study, trial, state=TrialState.PRUNED), "telling the study")
        return "PRUNED"
    except (KeyboardInterrupt, Terminated):  # the run checkpointed and ended KILLED
        _set_state_tag(tracker, "FAIL")
        _tell_interrupted(study, trial, live)
        raise
    except Exception as e:  # NaN loss, out of memory, ...: this trial fails, the study goes on
        _set_state_tag(tracker, "FAIL")
        return _tell_failed(study, trial, f"{type(e).__name__}: {e}")
    trial.set_user_attr("run_id", result.run_id)
    with_retries(lambda: tell(study, trial, result.final["final_val_loss"]), "telling the study")
    _set_state_tag(tracker, "COMPLETE")
    return "COMPLETE"


def _tell_interrupted(study, trial, live) -> None:
    """A trial stopped by SIGTERM or Ctrl-C fails and is queued again with the same parameters,
    to resume from its checkpoint; once out of retries it is not counted, so a re-run samples anew."""
    from optuna.trial import TrialState

    from lmbench.liveness import retry_history

    retry = len(retry_history(trial)) < live.max_retries
    if not retry:
        trial.set_user_attr("interrupted", True)
    tell(study, trial, state=TrialState.FAIL)
    if retry:
        live.retry(study, study.get_trials(deepcopy=False)[trial.number])


def _set_state_tag(tracker, state: str) -> None:
    if tracker.run_id is not None:
        tracker.set_tags({"optuna_state": state})


def _tell_failed(study, trial, reason: str) -> str:
    from optuna.trial import TrialState

    log.warning("trial %d of %s failed: %s", trial.number, study.study_name, reason)
    trial.set_user_attr("failure", reason[:2000])
    tell(study, trial, state=TrialState.FAIL)
    return "FAIL"


def tell(study, trial, value: float | None = None, state=None) -> None:
    """``study.tell`` for ask/tell loops.

    Optuna's GridSampler calls ``study.stop()`` after the last grid point, which is only allowed
    inside ``study.optimize``; the trial is stored regardless, and our loop stops by itself
    because :func:`total_trials` caps a grid study at the grid's size.
    """
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise


def total_trials(spec: ExperimentSpec, arch: str) -> int:
    """``search.trials``, or fewer for a grid that has fewer points."""
    if spec.search.sampler != "grid":
        return spec.search.trials
    size = math.prod(len(grid_values(d, 3)) for d in space_for(spec, arch).values())
    return min(spec.search.trials, size)
