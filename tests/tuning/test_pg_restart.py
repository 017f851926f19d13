"""A PostgreSQL restart in the middle of a study: the worker waits it out and the study completes.

The shared server on 127.0.0.1:5432 must not be restarted by a test, so this test starts a private
PostgreSQL cluster (initdb into a temp folder, its own port) as the ``postgres`` user, stops it
while trials are running, and starts it again.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
from _services import TINY, free_port, lmbench, wait_until
from conftest import need
from mlflow import MlflowClient

from lmbench.tracking.tracker import resolve_uri
from lmbench.tuning.storage import study_name


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free loopback port, owned by the ``postgres`` user."""

    def __init__(self, bindir: Path):
        self.bindir, self.port = bindir, free_port()
        self.root = Path(tempfile.mkdtemp(prefix="lmbench-pg-"))
        self.data = self.root / "data"
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_postgres(self, tool: str, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bindir / tool), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    need(bool(bins) and shutil.which("runuser") is not None, "PostgreSQL server binaries (initdb, pg_ctl) and runuser")
    need(os.geteuid() == 0, "root, to run a private PostgreSQL cluster as the postgres user")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        need(False, "a postgres system user")
    pg = PrivatePostgres(Path(bins[-1]).parent)
    pg.start()
    yield pg
    pg.remove()


def _trials(url: str):
    storage = optuna.storages.RDBStorage(url)
    try:
        return optuna.load_study(study_name=study_name("pgrestart", "rnn"), storage=storage).get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - not created yet, or the server is down
        return []
    finally:
        storage.engine.dispose()


@pytest.mark.slow
def test_study_survives_a_postgresql_restart(private_pg, isolated):
    log = isolated / "tune.log"
    proc = lmbench("tune", "--model", "rnn", "--trials", "5", "--storage", private_pg.url, "--quiet",
                   "--set", "name=pgrestart", *TINY, "--set", "train.budget={seconds: 1.5}", log=log)
    try:
        wait_until(lambda: any(t.state.name == "COMPLETE" for t in _trials(private_pg.url)), 120,
                   "a first complete trial", [proc])
        private_pg.stop()  # the worker's next storage calls fail while the server is down
        time.sleep(4)
        private_pg.start()
        assert proc.wait(timeout=240) == 0, log.read_text()[-12000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert "storage unreachable" in out, out[-3000:]  # the outage was hit and waited out
    trials = _trials(private_pg.url)
    assert len([t for t in trials if t.state.name == "COMPLETE"]) == 5, [(t.number, t.state.name) for t in trials]
    assert len({t.number for t in trials}) == len(trials)
    client = MlflowClient(resolve_uri(None))
    runs = client.search_runs([client.get_experiment_by_name("pgrestart").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
