"""MLflow tracking: one place that knows the store, the run tree, tags, metrics and statuses.

We talk to MLflow through ``MlflowClient`` with explicit run ids instead of the fluent
``mlflow.start_run`` stack, so nested runs created by different processes (Optuna workers) link
to their parent by the ``mlflow.parentRunId`` tag and nothing depends on process-global state.
Per-step metrics are buffered and sent in batches by a background thread, so training never
waits on the store; a batch that fails (tracking server restarting) goes back into the buffer
and is sent again with backoff, so an outage leaves no gap. ``finish`` flushes before it sets
the final status."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import psutil
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from lmbench import __version__, secrets
from lmbench.tracking import schema
from lmbench.tracking.alive import reap_dead_runs

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"


DEFAULT_ARTIFACTS = "mlartifacts"


MAX_PARAM_LEN = 6000  # MLflow >= 2.x accepts 6000-character param values


SEND_SECONDS = 2.0  # how long metrics may wait in the buffer before going to the store


MAX_BACKOFF = 60.0  # the longest wait between two attempts to send while the store is unreachable


FLUSH_SECONDS = 600.0  # how long finish() keeps trying before it gives up on the buffered metrics


HEARTBEAT_SECONDS = 30.0  # how often a running run's lmbench.heartbeat tag is refreshed

# MLflow 3 opens an experiment on its GenAI overview unless this experiment tag says otherwise
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def resolve_uri(uri: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a SQLite store in the working directory:
    the URI to connect with (pass it through ``secrets.redact`` before storing or showing it).

    A relative SQLite path is made absolute: MLflow caches stores by URI string, so a relative
    URI would keep pointing at the first working directory, and worker processes must open the
    same file as their parent. A password in the URI is remembered (``lmbench.secrets``); a
    tracking server's credentials go to MLflow's environment, not into the URI.
    """
    uri = secrets.tracking_uri(secrets.remember(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI))
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        uri = prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


@cache
def git_sha() -> str:
    """The git commit of the lmbench source tree, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_tags() -> dict[str, str]:
    import torch

    return {
        schema.VERSION: __version__,
        schema.GIT_SHA: git_sha(),
        schema.TORCH_VERSION: torch.__version__,
        schema.PYTHON_VERSION: platform.python_version(),
        **process_tags(),
    }


def process_tags() -> dict[str, str]:
    """Who writes a run: host, pid and the process's start time (a reused pid is another process)."""
    return {schema.HOST: platform.node(), schema.PID: str(os.getpid()),
            schema.PROCESS_START: f"{psutil.Process().create_time():.2f}",
            schema.HEARTBEAT: f"{time.time():.0f}"}


_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}  # (tracking URI, experiment name) -> id
_REAPED: set[str] = set()  # stores whose runs of dead processes this process has ended


class Tracker:
    """An MLflow experiment plus the run currently being written."""

    def __init__(self, experiment: str, tracking_uri: str | None = None):
        self.uri = resolve_uri(tracking_uri)
        # MLflow prints run URLs on stdout at every run end (and asks the server for them): not ours to print
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.client = MlflowClient(self.uri)
        if self.uri not in _REAPED:  # the first use of a store in this process ends runs of dead ones
            _REAPED.add(self.uri)
            reap_dead_runs(self.client)
        self.experiment_id = self._experiment(experiment)
        self.run_id: str | None = None
        self._pending: list = []  # metrics not yet stored (guarded by _lock: the sender puts failures back)
        self._lock = threading.Lock()
        self._send_lock = threading.RLock()  # send/flush from the caller's thread and the heartbeat ticker
        self._beat_due = False
        self._ticker: threading.Thread | None = None
        self._stop_ticker = threading.Event()
        self._next_send = time.monotonic() + SEND_SECONDS
        self._failures = 0  # consecutive failed sends (backoff)
        self._sender: ThreadPoolExecutor | None = None
        self._inflight: Future | None = None

    def _experiment(self, name: str) -> str:
        key = (self.uri, name)
        if key not in _EXPERIMENT_IDS:  # one lookup per process, not one per trial
            _EXPERIMENT_IDS[key] = self._find_or_create_experiment(name)
        return _EXPERIMENT_IDS[key]

    def _find_or_create_experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made by an older lmbench
                self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            # artifacts beside the SQLite file (./mlartifacts by default), not in MLflow's ./mlruns
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except Exception:  # another process created it first
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    # -- runs -------------------------------------------------------------------------------

    def start(self, name: str, params: dict[str, Any], tags: dict[str, str], parent_run_id: str | None = None) -> str:
        """Create a RUNNING run with params and tags; returns its id."""

        all_tags = {**environment_tags(), **tags}
        if parent_run_id:
            all_tags[schema.PARENT_TAG] = parent_run_id
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(self.run_id, params=items[i : i + 100])
        self._start_ticker()
        return self.run_id

    def find_runs(self, tags: dict[str, str], *, parent: str | None = None, status: str | None = None,
                  max_results: int = 1000) -> list:
        """Runs of this experiment with exactly these tag values (under ``parent``, in ``status``),
        newest first. Values are quoted here, never pasted into a filter by callers."""
        clauses = [f"tags.`{key}` = {_quoted(value)}" for key, value in tags.items()]
        if parent is not None:
            clauses.append(f"tags.`{schema.PARENT_TAG}` = {_quoted(parent)}")
        if status is not None:
            clauses.append(f"attributes.status = {_quoted(status)}")
        return self.client.search_runs([self.experiment_id], " and ".join(clauses),
                                       order_by=["attributes.start_time DESC"], max_results=max_results)

    def reopen(self, run_id: str) -> None:
        """Continue an existing run (resume): mark it RUNNING again, written by this process."""
        run = self.client.get_run(run_id)  # raises if it does not exist
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        self.set_tags(process_tags())
        if schema.FAILURE in run.data.tags:  # why it stopped last time is no longer true
            self.client.delete_tag(run_id, schema.FAILURE)
        self._start_ticker()

    # -- heartbeat ---------------------------------------------------------------------------

    def _start_ticker(self) -> None:
        """Refresh the run's heartbeat tag every HEARTBEAT_SECONDS through the metrics sender (one
        small log_batch, or none when metrics are being sent anyway), until ``finish``."""
        self._stop_ticker.clear()
        if self._ticker is None or not self._ticker.is_alive():
            self._ticker = threading.Thread(target=self._tick, name="lmbench-run-heartbeat", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop_ticker.wait(HEARTBEAT_SECONDS):
            self._beat_due = True
            self.send()

    def set_tags(self, tags: dict[str, Any]) -> None:
        """All the tags in one store round-trip."""

        if tags:
            self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int, synchronous: bool = False) -> None:
        """Log a dict of metrics at one step.

        Metrics are buffered and sent as one batch every ``SEND_SECONDS`` by a background thread:
        a store round-trip per training step would cost more than the step of a small model.
        ``synchronous=True`` sends everything now and waits for the store.
        """

        ts = int(time.time() * 1000)
        with self._lock:
            self._pending += [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None]
        if synchronous:
            self.flush()
        elif time.monotonic() >= self._next_send:
            self.send()

    def send(self) -> None:
        """Start sending the buffered metrics (and a due heartbeat) in the background, unless a
        send is still under way."""
        with self._send_lock:
            if self._inflight is not None and not self._inflight.done():
                return
            with self._lock:
                batch, self._pending = self._pending, []
            self._next_send = time.monotonic() + SEND_SECONDS
            beat, self._beat_due = self._beat_due and not self._stop_ticker.is_set(), False
            if (batch or beat) and self.run_id is not None:
                self._sender = self._sender or ThreadPoolExecutor(1, thread_name_prefix="lmbench-metrics")
                self._inflight = self._sender.submit(self._post, self.run_id, batch, beat)

    def _post(self, run_id: str, batch: list, beat: bool = False) -> bool:
        """Store ``batch`` (with ``beat``, the heartbeat tag in the same round-trip, or alone when
        there are no metrics); on failure put what was not stored back in the buffer and back off."""
        for i in range(0, len(batch), 1000) or [0]:  # MLflow caps a batch at 1000 metrics
            tags = [RunTag(schema.HEARTBEAT, f"{time.time():.0f}")] if beat and i == 0 else []
            try:
                self.client.log_batch(run_id, metrics=batch[i : i + 1000], tags=tags, synchronous=True)
            except Exception as e:  # noqa: BLE001 - the store is down or refused: keep the metrics
                with self._lock:
                    self._pending[:0] = batch[i:]
                self._failures += 1
                wait = min(MAX_BACKOFF, SEND_SECONDS * 2**self._failures)
                self._next_send = time.monotonic() + wait
                log.warning("could not send %d metrics to MLflow (%s); retrying in %.0f s",
                            len(batch) - i, str(e).splitlines()[0][:200] if str(e) else type(e).__name__, wait)
                return False
        self._failures = 0
        return True

    def flush(self, timeout: float = FLUSH_SECONDS) -> None:
        """Store every buffered metric now, retrying with backoff for up to ``timeout`` seconds."""
        with self._send_lock:
            self._flush(time.monotonic() + timeout, timeout)

    def _flush(self, deadline: float, timeout: float) -> None:
        while True:
            if self._inflight is not None:
                self._inflight.result()
                self._inflight = None
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch or self._post(self.run_id, batch):
                if not self._pending:
                    return
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not store {len(self._pending)} metrics in {secrets.redact(self.uri)} "
                                   f"for {timeout:.0f} s")
            time.sleep(max(0.0, min(self._next_send, deadline) - time.monotonic()))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str) -> None:
        """Flush pending metrics, then set the final status (FINISHED, FAILED or KILLED)."""
        self._stop_ticker.set()
        try:
            self.flush()
        except Exception as e:  # never let a flush problem hide the real status
            log.warning("flushing MLflow metrics failed: %s", e)
        with self._send_lock:
            if self._sender is not None:
                self._sender.shutdown(wait=True)
                self._sender = None
        self.client.set_terminated(self.run_id, status=status)


def _quoted(value: object) -> str:
    """A filter string literal: single quotes, or double quotes when the value has a single one."""
    text = str(value)
    if "'" in text and '"' in text:
        raise ValueError(f"cannot search for a tag value with both quote kinds: {text!r}")
    return f'"{text}"' if "'" in text else f"'{text}'"


def reap_store(tracking_uri: str | None = None) -> list[str]:
    """End the runs of dead processes in the store of ``tracking_uri`` (``alive.reap_dead_runs``);
    a SQLite store that does not exist is not created."""
    uri = resolve_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return []
    _REAPED.add(uri)
    return reap_dead_runs(MlflowClient(uri))


def find_run(run_id: str, tracking_uri: str | None = None):
    """Fetch a run by id from the store, or None."""

    try:
        return MlflowClient(resolve_uri(tracking_uri)).get_run(run_id)
    except MlflowException:
        return None
