"""Optuna storages and studies: opening them, locking them, and retrying while they are unreachable.

Studies are named ``<experiment>/<model>``. The default storage is a journal file in ``studies/``
that several processes on one machine can share (file locks, no server); any Optuna RDB URL
(PostgreSQL, MySQL, SQLite) makes a study shareable between machines."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages.journal import JournalFileBackend
from sqlalchemy import text

from lmbench import secrets
from lmbench.config import ExperimentSpec, space_for
from lmbench.errors import SpecError
from lmbench.tuning.samplers import make_pruner, make_sampler

log = logging.getLogger(__name__)

STUDIES_DIR = Path("studies")


def default_storage_path(experiment: str) -> Path:
    return STUDIES_DIR / f"{experiment}.journal"


def open_storage(url: str | None, experiment: str, live=None):
    """An Optuna storage: the URL given, else a journal file in ``studies/``.

    ``live`` (a :class:`lmbench.tuning.liveness.Liveness`) turns on Optuna's heartbeat on RDB storages,
    for processes that run or recover trials (the journal's liveness lives in lease files).
    A URL that cannot be opened is a SpecError naming it, raised before anything is created.
    """

    if url is None:
        path = default_storage_path(experiment)
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    url = secrets.remember(url)  # shown redacted; the password is only in ``real``
    real = secrets.reveal(url)
    heartbeat = {}
    if live is not None:
        quiet_optuna_warnings()
        heartbeat = {"heartbeat_interval": live.interval, "grace_period": live.grace,
                     "heartbeat_stale_trial_callback": live.on_dead}

    # pre-ping: a pooled connection that died with a PostgreSQL restart is replaced, not used.
    # At most 2 idle connections per process (a worker uses 3 at once: its session, the study lock
    # and the heartbeat thread), so a fleet does not exhaust the server's max_connections.
    engine = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 8}
    attempts = 8
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(real, engine_kwargs=engine, **heartbeat)
        except Exception as e:  # sqlalchemy raises many kinds; the user needs the URL and the reason
            # workers creating a new database's tables at once: SQLAlchemy's error, or Optuna's
            # StorageInternalError wrapping it ("exception is raised during the commit");
            # or a server that is briefly full ("too many clients"): both pass
            racing = isinstance(e, (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError,
                                    optuna.exceptions.StorageInternalError)) or _server_full(e)
            if racing and attempt < attempts - 1:
                time.sleep(min(10.0, 0.2 * 2 ** attempt))
                continue
            reason = secrets.scrub(str(e).strip().splitlines()[0][:300]) if str(e).strip() else type(e).__name__
            raise SpecError("--storage", f"cannot open Optuna storage {url!r}: {reason}") from None
    raise AssertionError("unreachable")


def _server_full(error: Exception) -> bool:
    """PostgreSQL refused a connection because all its slots (or its role's) are taken: the other
    clients will free them."""
    message = str(error)
    return any(s in message for s in ("too many clients", "too many connections", "remaining connection slots"))


def close_storage(storage) -> None:
    """Close an RDB storage's pooled connections now rather than at garbage collection."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def study_name(experiment: str, arch: str) -> str:
    return f"{experiment}/{arch}"


OBJECTIVE = "val_loss"  # what a study minimises (a trial's final_val_loss), as Optuna's dashboard names it


def open_study(spec: ExperimentSpec, arch: str, storage):
    space = space_for(spec, arch)
    study = optuna.create_study(study_name=study_name(spec.experiment_name, arch), storage=storage,
                                sampler=make_sampler(spec, space), pruner=make_pruner(spec),
                                direction="minimize", load_if_exists=True)
    if study.metric_names != [OBJECTIVE]:  # one storage write, on the study's first opening
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE])
    return study


@contextlib.contextmanager
def study_lock(storage, experiment: str) -> Iterator[None]:
    """Serialise 'count trials, then ask' (and recovery) between workers, so the total is never
    overshot: a PostgreSQL advisory lock across machines, else a file lock on this machine."""
    engine = getattr(storage, "engine", None)  # RDBStorage's SQLAlchemy engine
    if engine is not None and engine.dialect.name == "postgresql":

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


def with_retries(fn, what: str, attempts: int = 8):
    """``fn()``, retried with exponential backoff (1, 2, 4, ... 30 s) while the storage is unreachable."""

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


def quiet_optuna_warnings() -> None:
    """Heartbeats and the retry callback are 'experimental' in Optuna, and ``Study.ask`` warns that
    heartbeats are meant for ``Study.optimize``: we run the ask/tell loop and heartbeat ourselves."""

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
