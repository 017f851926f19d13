"""Liveness of trials: heartbeats, detection of dead workers, retries with the same parameters.

On an RDB storage (PostgreSQL) this is Optuna's own heartbeat: the worker records each running
trial's heartbeat in the database, and ``optuna.storages.fail_stale_trials`` fails the trials whose
heartbeat is older than the grace period and calls :meth:`Liveness.on_dead` for each.

Optuna's journal file storage (the local default) has no heartbeat, so we keep an equivalent one
beside it: a lease file per running trial, ``studies/<experiment>.leases/<study>.<number>``,
holding the worker's host and pid; its mtime is the heartbeat. A trial is dead when its lease is
older than the grace period, or at once when its worker ran on this host and is gone.

A dead trial is marked FAIL in Optuna, its MLflow run ends KILLED, and a copy with the same
parameters is enqueued (Optuna's ``RetryHeartbeatStaleTrialCallback``) until ``max_retries``.
The retry resumes from the dead run's last checkpoint (:meth:`Liveness.resume_point`).
Every worker runs the recovery before it asks for a trial (and a ``--workers 0`` driver while it
waits), so recovery needs no surviving worker: a fresh one finds the stale trials.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import optuna
import psutil
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from lmbench.config import ExperimentSpec
from lmbench.files import write_atomic
from lmbench.tracking import schema
from lmbench.tracking.tracker import Tracker
from lmbench.training import checkpoint
from lmbench.tuning.storage import default_storage_path, quiet_optuna_warnings

log = logging.getLogger(__name__)
_LAST_SCAN: dict[str, float] = {}  # study name -> when this process last looked for dead trials
RETRY_HISTORY = "retry_history"  # system attr Optuna's retry callback keeps: numbers of the failed attempts


def retry_history(trial) -> list[int]:
    """Numbers of the earlier attempts of a (live) trial that retries them, oldest first."""
    return trial.storage.get_trial_system_attrs(trial._trial_id).get(RETRY_HISTORY, [])


@dataclass(frozen=True)
class Liveness:
    """How trials of one experiment prove they are alive, and what happens when they are not."""

    experiment: str  # the MLflow experiment of the trial runs
    tracking_uri: str | None
    interval: int  # seconds between heartbeats
    grace: int  # seconds without a heartbeat before a trial is dead
    max_retries: int
    leases: Path | None  # the journal storage's lease folder; None on RDB storages

    @classmethod
    def of(cls, spec: ExperimentSpec) -> Liveness:
        search = spec.search
        leases = None if search.storage else default_storage_path(spec.experiment_name).with_suffix(".leases")
        return cls(spec.experiment_name, spec.tracking.tracking_uri, search.heartbeat_interval,
                   search.grace_period or 3 * search.heartbeat_interval, search.max_retries, leases)

    # -- recovery ----------------------------------------------------------------------------

    def recover(self, study) -> None:
        """Fail the study's dead trials, end their runs KILLED and enqueue their retries.

        Callers hold the study lock (:func:`lmbench.search.study_lock`), so two recoverers never
        handle the same trial. A process looks at most once per heartbeat interval: nothing can
        go stale faster than heartbeats are recorded.
        """

        now = time.monotonic()
        if now - _LAST_SCAN.get(study.study_name, -math.inf) < self.interval:
            return
        _LAST_SCAN[study.study_name] = now
        quiet_optuna_warnings()
        if self.leases is None:
            optuna.storages.fail_stale_trials(study)  # calls on_dead for each trial it failed
            return
        for number in self._dead_leased(study):
            try:
                study.tell(number, state=TrialState.FAIL)
            except (RuntimeError, ValueError):  # finished meanwhile (e.g. its worker told it)
                continue
            self.on_dead(study, study.get_trials(deepcopy=False)[number])
            self._lease(study, number).unlink(missing_ok=True)

    def _dead_leased(self, study) -> list[int]:
        now, host, dead = time.time(), socket.gethostname(), []
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            path = self._lease(study, trial.number)
            try:
                age = now - path.stat().st_mtime
                owner = json.loads(path.read_text())
            except (OSError, ValueError):  # no lease yet: the trial was just asked for, or died first
                age = now - trial.datetime_start.timestamp() if trial.datetime_start else 0.0
                owner = {}
            gone = owner.get("host") == host and not psutil.pid_exists(owner.get("pid", -1))
            if gone or age > self.grace:
                dead.append(trial.number)
        return dead

    def on_dead(self, study, trial) -> None:
        """A trial's worker is gone: end its MLflow run KILLED, enqueue a retry with its params."""
        log.warning("trial %d of %s: its worker is gone (no heartbeat); retrying it with the same parameters",
                    trial.number, study.study_name)
        self.end_runs(study.study_name, trial.number, "KILLED", "worker died (no heartbeat)")
        self.retry(study, trial)

    def retry(self, study, trial) -> bool:
        """Enqueue a WAITING copy of ``trial`` (same params) unless it was retried too often."""

        quiet_optuna_warnings()
        if len(trial.system_attrs.get(RETRY_HISTORY, [])) >= self.max_retries:
            log.warning("trial %d of %s: not retried again (search.max_retries=%d)", trial.number,
                        study.study_name, self.max_retries)
            return False
        RetryHeartbeatStaleTrialCallback(max_retry=self.max_retries)(study, trial)
        return True

    # -- the trials' MLflow runs -------------------------------------------------------------

    def _runs(self, study_name: str, number: int, running_only: bool = False):
        tracker = Tracker(self.experiment, self.tracking_uri)
        tags = {schema.STUDY: study_name, schema.TRIAL_NUMBER: str(number)}
        return tracker, tracker.find_runs(tags, status="RUNNING" if running_only else None)

    def end_runs(self, study_name: str, number: int, status: str, reason: str) -> None:
        """End the (RUNNING) MLflow runs of trial ``number`` with ``status``; the reason as a tag."""
        tracker, runs = self._runs(study_name, number, running_only=True)
        for run in runs:
            tracker.run_id = run.info.run_id
            tracker.set_tags({schema.OPTUNA_STATE: "FAIL", schema.FAILURE: reason})
            tracker.client.set_terminated(run.info.run_id, status=status)

    def resume_point(self, study_name: str, trial) -> Path | None:
        """The last checkpoint of the latest earlier attempt of a retried trial, if one exists here."""

        for number in reversed(retry_history(trial)):
            for run in self._runs(study_name, number)[1]:
                root = run.data.tags.get(schema.CHECKPOINT_DIR)
                if root and Path(root).is_dir():
                    try:
                        return checkpoint.locate(Path(root), "last")
                    except checkpoint.CheckpointError:
                        continue
        return None

    # -- heartbeats --------------------------------------------------------------------------

    def _lease(self, study, number: int) -> Path:
        assert self.leases is not None
        return self.leases / f"{urllib.parse.quote(study.study_name, safe='')}.{number}"

    def beat(self, storage, study, trial) -> None:
        """Record one heartbeat of a running trial."""
        if self.leases is None:
            storage.record_heartbeat(trial._trial_id)  # Optuna's RDB heartbeat table
            return
        path = self._lease(study, trial.number)
        try:
            os.utime(path)
        except FileNotFoundError:  # the first beat writes the owner, atomically
            write_atomic(path, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))

    def end(self, study, trial) -> None:
        if self.leases is not None:
            self._lease(study, trial.number).unlink(missing_ok=True)


class Heartbeat:
    """Context manager: a thread records the trial's heartbeat every ``interval`` seconds (the
    first beat was recorded by :func:`lmbench.search.next_trial`, under the study lock).

    A missed beat (storage briefly unreachable) is logged and retried at the next interval: the
    grace period is several intervals long.
    """

    def __init__(self, live: Liveness, storage, study, trial):
        self.live, self.storage, self.study, self.trial = live, storage, study, trial
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lmbench-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.live.interval):
            try:
                self.live.beat(self.storage, self.study, self.trial)
            except Exception as error:  # noqa: BLE001 - a hiccup must not kill the trial
                log.warning("heartbeat of trial %d failed (will retry): %s", self.trial.number, error)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.live.end(self.study, self.trial)
