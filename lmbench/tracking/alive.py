"""No run left RUNNING forever: the runs of processes that are gone end KILLED.

Every run records the host, pid and start time of the process that writes it, and a heartbeat
tag that this process refreshes while the run is open (:class:`lmbench.tracking.tracker.Tracker`).
The first time an lmbench process opens a store it looks at the store's RUNNING runs and ends
KILLED, with ``lmbench.failure = "process died"``:

- at once, the runs of this host whose process is gone (its pid is free, or is another process);
- anywhere, the runs whose heartbeat is older than :data:`GRACE_SECONDS` (a machine that died).

Runs written before these tags existed are left alone. ``lmbench train --resume RUN`` continues a
run ended this way (``Tracker.reopen`` marks it RUNNING again and drops the failure).
"""

from __future__ import annotations

import logging
import platform
import time

import psutil
from mlflow.entities import RunTag

from lmbench.tracking import schema

log = logging.getLogger(__name__)

GRACE_SECONDS = 600.0  # heartbeats come every 30 s: ten minutes of silence is a dead machine
START_TOLERANCE = 1.0  # seconds between a recorded process start time and the live process's


def process_alive(pid: int, started: float) -> bool:
    """Whether process ``pid`` on this host is the one that started at ``started`` (epoch s)."""
    try:
        return abs(psutil.Process(pid).create_time() - started) < START_TOLERANCE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists, but is not ours to inspect: assume it is alive
        return True


def heartbeat_age(tags: dict[str, str], now: float | None = None) -> float | None:
    """Seconds since the run's last heartbeat, or None for runs that record none."""
    try:
        return (now or time.time()) - float(tags[schema.HEARTBEAT])
    except (KeyError, ValueError):
        return None


def is_dead(tags: dict[str, str], now: float, grace: float = GRACE_SECONDS) -> bool:
    """Whether the process that writes a RUNNING run with these tags is gone."""
    if tags.get(schema.HOST) == platform.node() and schema.PID in tags and schema.PROCESS_START in tags:
        try:
            return not process_alive(int(tags[schema.PID]), float(tags[schema.PROCESS_START]))
        except ValueError:
            return False
    age = heartbeat_age(tags, now)
    return age is not None and age > grace


def running_runs(client) -> list:
    """Every RUNNING run of every experiment in the store."""
    ids = [e.experiment_id for e in client.search_experiments()]
    runs, token = [], None
    while ids:
        page = client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    return runs


def reap_dead_runs(client, grace: float = GRACE_SECONDS) -> list[str]:
    """End the RUNNING runs of dead processes KILLED (``process died``); returns their ids.

    Best effort: a store that cannot be searched now is left as it is (the command that opened
    it reports its own errors)."""
    try:
        runs = running_runs(client)
    except Exception as e:  # noqa: BLE001 - an unreachable store is the caller's error to report
        log.debug("not looking for runs of dead processes: %s", e)
        return []
    now, ended = time.time(), []
    for run in runs:
        tags = run.data.tags
        if not is_dead(tags, now, grace):
            continue
        marks = [RunTag(schema.FAILURE, schema.PROCESS_DIED)]
        if schema.STUDY in tags:  # a trial: Optuna fails it too, once its study's liveness looks
            marks.append(RunTag(schema.OPTUNA_STATE, "FAIL"))
        try:
            client.log_batch(run.info.run_id, tags=marks)
            client.set_terminated(run.info.run_id, status="KILLED")
        except Exception as e:  # noqa: BLE001 - another process ended it meanwhile, or the store hiccuped
            log.debug("could not end run %s: %s", run.info.run_id, e)
            continue
        log.warning("run %s (%s) was RUNNING but its process (pid %s on %s) is gone: marked KILLED",
                    run.info.run_id, run.info.run_name, tags.get(schema.PID, "?"), tags.get(schema.HOST, "?"))
        ended.append(run.info.run_id)
    return ended

