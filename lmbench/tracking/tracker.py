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

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from lmbench import __version__
from lmbench.tracking import schema

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"


DEFAULT_ARTIFACTS = "mlartifacts"


MAX_PARAM_LEN = 6000  # MLflow >= 2.x accepts 6000-character param values


SEND_SECONDS = 2.0  # how long metrics may wait in the buffer before going to the store


MAX_BACKOFF = 60.0  # the longest wait between two attempts to send while the store is unreachable


FLUSH_SECONDS = 600.0  # how long finish() keeps trying before it gives up on the buffered metrics


def resolve_uri(uri: str | None = None) -> str:
    """--tracking-uri, else $MLFLOW_TRACKING_URI, else a SQLite store in the working directory.

    A relative SQLite path is made absolute: MLflow caches stores by URI string, so a relative
    URI would keep pointing at the first working directory, and worker processes must open the
    same file as their parent.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
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
        schema.HOST: platform.node(),
    }


_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}  # (tracking URI, experiment name) -> id


class Tracker:
    """An MLflow experiment plus the run currently being written."""

    def __init__(self, experiment: str, tracking_uri: str | None = None):
        self.uri = resolve_uri(tracking_uri)
        # MLflow prints run URLs on stdout at every run end (and asks the server for them): not ours to print
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        self.client = MlflowClient(self.uri)
        self.experiment_id = self._experiment(experiment)
        self.run_id: str | None = None
        self._pending: list = []  # metrics not yet stored (guarded by _lock: the sender puts failures back)
        self._lock = threading.Lock()
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
            return exp.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):
            # artifacts beside the SQLite file (./mlartifacts by default), not in MLflow's ./mlruns
            location = (Path(self.uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
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
        return self.run_id

    def reopen(self, run_id: str) -> None:
        """Continue an existing run (resume): mark it RUNNING again."""
        self.client.get_run(run_id)  # raises if it does not exist
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")

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
        """Start sending the buffered metrics in the background, unless a send is still under way."""
        if self._inflight is not None and not self._inflight.done():
            return
        with self._lock:
            batch, self._pending = self._pending, []
        self._next_send = time.monotonic() + SEND_SECONDS
        if batch:
            self._sender = self._sender or ThreadPoolExecutor(1, thread_name_prefix="lmbench-metrics")
            self._inflight = self._sender.submit(self._post, self.run_id, batch)

    def _post(self, run_id: str, batch: list) -> bool:
        """Store ``batch``; on failure put what was not stored back in the buffer and back off."""
        for i in range(0, len(batch), 1000):  # MLflow caps a batch at 1000 metrics
            try:
                self.client.log_batch(run_id, metrics=batch[i : i + 1000], synchronous=True)
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
        deadline = time.monotonic() + timeout
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
                raise RuntimeError(f"could not store {len(self._pending)} metrics in {self.uri} for {timeout:.0f} s")
            time.sleep(max(0.0, min(self._next_send, deadline) - time.monotonic()))

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str) -> None:
        """Flush pending metrics, then set the final status (FINISHED, FAILED or KILLED)."""
        try:
            self.flush()
        except Exception as e:  # never let a flush problem hide the real status
            log.warning("flushing MLflow metrics failed: %s", e)
        if self._sender is not None:
            self._sender.shutdown(wait=True)
            self._sender = None
        self.client.set_terminated(self.run_id, status=status)


def find_run(run_id: str, tracking_uri: str | None = None):
    """Fetch a run by id from the store, or None."""

    try:
        return MlflowClient(resolve_uri(tracking_uri)).get_run(run_id)
    except MlflowException:
        return None
