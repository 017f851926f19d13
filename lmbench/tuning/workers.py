"""Worker processes: several processes, on one machine or many, share an experiment's studies.

Optuna's storage is the queue: each worker asks a study for its next trial until the study's total
is reached (``search.next_trial`` serialises count-then-ask under a lock, so the total is never
overshot). Every study carries what a worker needs to join it (the spec, the parent MLflow run),
so ``lmbench worker --experiment NAME --storage URL`` on another machine needs nothing else.

A worker stays until every study it serves is complete, recovering dead trials meanwhile
(:mod:`lmbench.tuning.liveness`), so a trial whose worker died is retried by a surviving or a fresh one.
Workers are spawned (not forked) so each starts with a clean torch runtime; on CPU the cores are
split between them, on GPUs the devices are assigned round-robin. SIGTERM (pre-emption) stops a
worker gracefully: its trial checkpoints, is queued for retry and its run ends KILLED.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from lmbench import logs, secrets
from lmbench.config import ExperimentSpec, build_spec, dump_raw
from lmbench.errors import SpecError, UserError
from lmbench.signals import TERMINATED_EXIT, Terminated, on_sigterm, sigterm_raises
from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.liveness import Heartbeat, Liveness
from lmbench.tuning.points import POINTS_ATTR, open_point_study, run_point, stored_points
from lmbench.tuning.storage import (
    close_storage,
    default_storage_path,
    open_storage,
    open_study,
    study_lock,
    with_retries,
)
from lmbench.tuning.trials import next_trial, progress_of, run_trial, total_trials

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0  # how often an idle worker or a waiting driver looks at the studies again
# what a study stores for workers that join it (user attributes)
SPEC_ATTR, PARENT_ATTR, MODEL_ATTR = "lmbench.spec", "lmbench.parent_run_id", "lmbench.model"
LEGACY_MODEL_ATTR = "lmbench.arch"  # studies published before 0.2: read, never written


def device_list(devices: str | None, default: str) -> list[str]:
    """``cuda:0,cuda:1`` | ``all`` (every visible GPU, else cpu) | ``cpu`` | None (the spec's device)."""
    if devices is None:
        return [default]
    if devices == "all":
        import torch

        n = torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    out = [d.strip() for d in devices.split(",") if d.strip()]
    if not out:
        raise SpecError("--devices", "empty device list")
    return out


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


# -- one study as a unit of work -----------------------------------------------------------------


@dataclass
class Assignment:
    """A study a worker serves, with what it needs to run its trials (``scale``: the fixed points
    of a scale sweep, :mod:`lmbench.tuning.points`, instead of sampled trials)."""

    spec: ExperimentSpec
    arch: str
    parent_run_id: str | None
    study: Any
    storage: Any
    total: int
    live: Any  # lmbench.tuning.liveness.Liveness
    scale: bool = False

    def run(self, trial) -> str:
        if self.scale:
            return run_point(self.study, trial, self.spec, self.arch, self.storage, self.live)
        return run_trial(self.study, trial, self.spec, self.arch, self.parent_run_id, self.live)

    def progress(self) -> dict[str, int]:
        return progress_of(self.study)

    def complete(self) -> bool:
        p = self.progress()
        return p["done"] >= self.total and not p["running"] and not p["waiting"]


def assignment(spec: ExperimentSpec, arch: str, parent_run_id: str | None, storage=None,
               scale: bool = False) -> Assignment:
    live = Liveness.of(spec)
    storage = storage or open_storage(spec.search.storage, spec.experiment_name, live)
    if scale:  # a scale sweep's study: as many trials as points
        study = open_point_study(spec, arch, storage)
        total = len(stored_points(study))
        return Assignment(spec, arch, parent_run_id, study, storage, total, live, scale=True)
    return Assignment(spec, arch, parent_run_id, open_study(spec, arch, storage), storage,
                      total_trials(spec, arch), live)


def publish(spec: ExperimentSpec, arch: str, parent_run_id: str | None,
            scale: bool = False) -> None:
    """Store the spec and the parent run on the study, so workers elsewhere can join it."""

    raw = dump_raw(spec)
    # the URI as this process resolves it ($MLFLOW_TRACKING_URI too): the runs must meet in one store
    raw["tracking"]["tracking_uri"] = secrets.redact(resolve_uri(spec.tracking.tracking_uri))
    storage = open_storage(spec.search.storage, spec.experiment_name)
    study = open_point_study(spec, arch, storage) if scale else open_study(spec, arch, storage)
    for key, value in ((PARENT_ATTR, parent_run_id), (MODEL_ATTR, arch), (SPEC_ATTR, raw)):  # the spec last:
        # it marks the study as published
        study.set_user_attr(key, value)
    close_storage(storage)


def work(assignments: Callable[[], list[Assignment]], max_trials: int | None = None) -> int:
    """Run trials of the assigned studies (in order) until all are complete; returns how many ran.

    With nothing to ask for while other workers' trials still run, wait: one of them may die and
    its retry must be run by someone.
    """

    done = 0
    with sigterm_raises():
        while max_trials is None or done < max_trials:
            current = assignments()
            for a in current:
                trial = next_trial(a.study, a.storage, a.total, a.spec.experiment_name, a.live)
                if trial is None:
                    continue
                with Heartbeat(a.live, a.storage, a.study, trial):
                    state = a.run(trial)
                done += 1
                log.info("%s trial %d: %s", a.study.study_name, trial.number, state)
                break
            else:
                if current and all(with_retries(a.complete, "reading the studies") for a in current):
                    break
                time.sleep(POLL_SECONDS)
    return done


def run_worker(spec: ExperimentSpec, arch: str, parent_run_id: str | None,
               max_trials: int | None = None, scale: bool = False) -> int:
    """Run trials of ``<experiment>/<arch>`` (or its scale points) until the study is complete;
    returns how many ran."""
    a = assignment(spec, arch, parent_run_id, scale=scale)
    return work(lambda: [a], max_trials)


# -- local worker processes ----------------------------------------------------------------------


def _process_main(fn: Callable[..., Any], device: str | None, threads: int | None, given: dict[str, str],
                  *args) -> None:
    """Entry point of a spawned worker process: take over the passwords the parent was given (in
    memory, through the spawn pipe), set up logging and threads, run, exit truthfully."""

    import torch

    secrets.adopt(given)
    logs.setup(logging.INFO, fmt=f"[worker {os.getpid()}] %(message)s")
    if threads:
        torch.set_num_threads(threads)
    try:
        fn(device, *args)
    except Terminated:
        log.info("stopped by SIGTERM")
        sys.exit(TERMINATED_EXIT)


def _run_processes(fn: Callable[..., Any], devices: list[str], workers: int, *args) -> list[int]:
    """Run ``fn(device, *args)`` in ``workers`` spawned processes; returns their exit codes.

    SIGTERM to this process is passed on to the workers, which stop gracefully; then
    :class:`lmbench.signals.Terminated` is raised here too.
    """

    ctx = mp.get_context("spawn")
    threads = threads_per_worker(workers)
    given = secrets.known()
    procs = [ctx.Process(target=_process_main, args=(fn, devices[i % len(devices)], threads, given, *args),
                         name=f"lmbench-worker-{i}") for i in range(workers)]
    terminated = threading.Event()

    def forward(signum: int) -> None:
        terminated.set()
        for p in procs:
            p.terminate()  # SIGTERM: the worker checkpoints and queues its trial for retry

    with on_sigterm(forward):
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:  # the workers got the same SIGINT: let them mark their trials, then stop
            for p in procs:
                p.join(timeout=30)
            raise
    if terminated.is_set():
        raise Terminated("signal 15 (passed on to the workers)")
    return [p.exitcode for p in procs]


def _study_worker(device: str, raw: dict, arch: str, parent_run_id: str | None,
                  scale: bool = False) -> None:
    run_worker(build_spec(raw, [f"train.device={device}"]), arch, parent_run_id, scale=scale)


def run_study(spec: ExperimentSpec, arch: str, parent_run_id: str | None,
              scale: bool = False) -> None:
    """Bring the study ``<experiment>/<arch>`` to its total.

    ``search.workers`` processes on this machine, or with 0 none: wait while ``lmbench worker``s
    (anywhere) run the trials.
    """
    publish(spec, arch, parent_run_id, scale)
    workers = spec.search.workers
    if workers == 0:
        wait_for_study(assignment(spec, arch, parent_run_id, scale=scale))
        return
    devices = device_list(spec.search.devices, spec.train.device)
    if workers == 1 and len(devices) == 1 and devices[0] == spec.train.device:
        run_worker(spec, arch, parent_run_id, scale=scale)
        return
    codes = _run_processes(_study_worker, devices, workers, dump_raw(spec), arch, parent_run_id,
                           scale)
    failed = [f"lmbench-worker-{i} (exit code {c})" for i, c in enumerate(codes) if c != 0]
    if failed:
        a = assignment(spec, arch, parent_run_id, scale=scale)
        if not a.complete():
            raise RuntimeError(f"{len(failed)} of {workers} workers exited with an error: {', '.join(failed)}")
        log.warning("%s is complete, but %s died (their trials were retried)", a.study.study_name, ", ".join(failed))


def wait_for_study(a: Assignment) -> None:
    """``--workers 0``: recover dead trials and print progress until the study is complete."""

    log.info("%s: waiting for workers: lmbench worker --experiment %s%s", a.study.study_name,
             a.spec.experiment_name, f" --storage {a.spec.search.storage}" if a.spec.search.storage else "")

    def recover() -> None:
        with study_lock(a.storage, a.spec.experiment_name):
            a.live.recover(a.study)

    shown = None
    while True:
        with_retries(recover, "recovering dead trials")
        p = with_retries(a.progress, "reading the study")
        if p != shown:
            log.info("%s: %d/%d trials done, %d running, %d queued", a.study.study_name, p["done"], a.total,
                     p["running"], p["waiting"])
            shown = p
        if p["done"] >= a.total and not p["running"] and not p["waiting"]:
            return
        time.sleep(POLL_SECONDS)


# -- `lmbench worker`: join an experiment's studies ---------------------------------------------


def published(storage, experiment: str) -> list[tuple[str, dict, str | None]]:
    """(arch, stored spec, parent run id) of the experiment's search studies (not its scale
    points), in the order they were made."""
    found = published_studies(storage, experiment)
    return [(arch, raw, parent) for _, arch, raw, parent, scale in found if not scale]


def published_studies(storage, experiment: str) -> list[tuple[str, str, dict, str | None, bool]]:
    """(study name, arch, stored spec, parent run id, whether it holds scale points) of every
    published study of the experiment, in the order they were made."""
    out = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        attrs = summary.user_attrs
        if summary.study_name.startswith(f"{experiment}/") and SPEC_ATTR in attrs:
            arch = attrs.get(MODEL_ATTR) or attrs[LEGACY_MODEL_ATTR]
            scale = POINTS_ATTR in attrs
            out.append((summary.study_name, arch, attrs[SPEC_ATTR], attrs.get(PARENT_ATTR), scale))
    return out


def _joined_spec(raw: dict, storage_url: str | None, tracking_uri: str | None, device: str | None,
                 overrides: list[str]) -> ExperimentSpec:
    """The stored spec with this machine's storage URL, tracking URI, device and --set values."""
    extra = [f"search.storage={json.dumps(storage_url)}"]  # JSON is YAML: null, or a quoted URL
    extra += [f"tracking.tracking_uri={json.dumps(tracking_uri)}"] if tracking_uri else []
    extra += [f"train.device={device}"] if device else []
    return build_spec(raw, extra + list(overrides))


def _experiment_worker(device: str | None, experiment: str, storage_url: str | None, tracking_uri: str | None,
                       overrides: list[str], spec_raw: dict | None, max_trials: int | None) -> int:
    """Serve every published study of ``experiment`` until all are complete."""

    plain = open_storage(storage_url, experiment)
    live_storage = None  # with heartbeats configured as the experiment's spec says
    cache: dict[str, Assignment] = {}

    def assignments() -> list[Assignment]:
        nonlocal live_storage
        found = with_retries(lambda: published_studies(live_storage or plain, experiment), "reading the studies")
        for name, arch, raw, parent, scale in found:
            if name not in cache:
                spec = _joined_spec(spec_raw or raw, storage_url, tracking_uri, device, overrides)
                if live_storage is None:  # from now on the only storage (and pool) of this process
                    live_storage = open_storage(storage_url, experiment, Liveness.of(spec))
                    close_storage(plain)
                cache[name] = assignment(spec, arch, parent, live_storage, scale=scale)
        current = [cache[name] for name, *_ in found]
        for served in current:  # a re-run of the sweep may have added points since
            if served.scale:
                points = with_retries(lambda study=served.study: stored_points(study), "reading the points")
                served.total = len(points)
        return current

    return work(assignments, max_trials)


def join(experiment: str, storage_url: str | None, *, tracking_uri: str | None = None, devices: str | None = None,
         workers: int | None = None, max_trials: int | None = None, overrides: list[str] | None = None,
         spec_raw: dict | None = None, wait_s: float = 600.0) -> list[int]:
    """``lmbench worker``: join the experiment's studies with one process per device (or ``workers``).

    Waits up to ``wait_s`` for the experiment's studies to appear (its compare/tune may start
    later). ``spec_raw`` replaces the stored spec (e.g. a data path that differs on this machine),
    ``overrides`` are ``--set`` values applied on top of it. Returns the processes' exit codes (a single process runs here, in this process).
    """

    # an unusable URL is the user's to fix, at once
    storage = open_storage(storage_url, experiment) if storage_url is not None else None

    def found() -> bool:  # (a journal file is not created just to look into it)
        if storage is None and not default_storage_path(experiment).is_file():
            return False
        return bool(published_studies(storage or open_storage(None, experiment), experiment))

    deadline = time.monotonic() + wait_s
    while not found():
        if time.monotonic() > deadline:
            where = secrets.redact(storage_url) or "studies/"
            raise UserError("--experiment", f"no studies of experiment {experiment!r} in {where} after "
                            f"{wait_s:.0f} s (start its compare or tune first)")
        log.info("waiting for the studies of experiment %s", experiment)
        time.sleep(POLL_SECONDS)
    close_storage(storage)  # each process below opens its own
    devs = device_list(devices, "auto") if devices else [None]
    n = workers or len(devs)
    args = (experiment, storage_url, tracking_uri, list(overrides or []), spec_raw, max_trials)
    if n == 1:
        with sigterm_raises():
            _experiment_worker(devs[0], *args)
        return [0]
    return _run_processes(_experiment_worker, devs, n, *args)
