"""No secrets at rest, and a tracking server that asks who is there.

A real PostgreSQL role with a password holds the studies; a real `lmbench server --auth` (MLflow's
basic-auth app) holds the runs. A `compare --workers 0` driver is given both passwords in its
URLs, a `lmbench worker` gets the storage URL on its command line and the tracking password from
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD; one trial fails; `lmbench report` runs. Then
neither password is in any file under the working directory or the server's folder, nor in any
table of the studies' database - only the redacted form ``user:***@`` is.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from _services import PG, TINY, MlflowServer, _pg_connect, lmbench, pg_url, stop_all  # noqa: F401
from test_pg_restart import private_pg  # noqa: F401 - a throwaway PostgreSQL cluster

from lmbench import secrets

PG_PASSWORD = f"pg-{uuid.uuid4().hex}"
ADMIN_PASSWORD = f"mlflow-{uuid.uuid4().hex}"
# lr 3e38 makes the loss non-finite at once: with this sampler seed, trial 1 of the 3 fails
FAILING = ["--set", "search.space.rnn.lr={categorical: [0.003, 3.0e+38]}", "--set", "search.seed=5"]


@pytest.fixture
def pg_role(pg_url):  # noqa: F811
    """The test database owned by a new role with a password; its URL with the password."""
    role = f"lmbench_{uuid.uuid4().hex[:10]}"
    database = pg_url.rsplit("/", 1)[1]
    admin = _pg_connect()
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
        cur.execute(f"ALTER DATABASE {database} OWNER TO {role}")
    yield f"postgresql://{role}:{PG_PASSWORD}@{PG['host']}:{PG['port']}/{database}"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        cur.execute(f"DROP ROLE IF EXISTS {role}")
    admin.close()


@pytest.fixture
def auth_server(tmp_path):
    server = MlflowServer(tmp_path / "server", admin_password=ADMIN_PASSWORD)
    server.root.mkdir()
    server.start()
    yield server
    server.stop()


def get(url: str, user: str | None = None, password: str | None = None) -> int:
    import base64

    request = urllib.request.Request(url)
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def leaks(folder: Path) -> list[str]:
    """Files under ``folder`` that contain either password (as bytes, so pickles and SQLite too)."""
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {name}" for name, pw in (("pg", PG_PASSWORD), ("mlflow", ADMIN_PASSWORD))
                      if pw.encode() in data]
    return found


def database_leaks(url: str) -> list[str]:
    """Tables of the studies' database whose contents (as text) contain either password."""
    import psycopg

    conn = psycopg.connect(secrets.reveal(url).replace("postgresql://", "postgresql://", 1))
    found = []
    with conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        tables = [row[0] for row in cur.fetchall()]
        assert "trials" in tables and "study_user_attributes" in tables
        for table in tables:
            cur.execute(f'SELECT CAST(t AS text) FROM "{table}" t')  # noqa: S608 - names from the catalogue
            text = "\n".join(row[0] for row in cur.fetchall())
            found += [f"{table}: {name}" for name, pw in (("pg", PG_PASSWORD), ("mlflow", ADMIN_PASSWORD))
                      if pw in text]
    return found


@pytest.mark.slow
def test_no_password_at_rest_and_the_server_asks_who_is_there(pg_role, auth_server, isolated, tmp_path):
    base = auth_server.uri
    assert get(f"{base}/api/2.0/mlflow/experiments/search?max_results=1") == 401  # who is there?
    assert get(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", "admin", ADMIN_PASSWORD) == 200
    tracking = base.replace("http://", f"http://admin:{ADMIN_PASSWORD}@")
    creds = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    driver = lmbench("compare", "--models", "rnn", "--trials", "3", "--seeds", "1", "--workers", "0",
                     "--storage", pg_role, "--tracking-uri", tracking, "--set", "name=secret", *TINY, *FAILING,
                     log=isolated / "driver.log")
    worker = lmbench("worker", "--experiment", "secret", "--storage", pg_role, env=creds, log=isolated / "worker.log")
    try:
        assert driver.wait(timeout=400) == 0, (isolated / "driver.log").read_text()[-3000:]
        assert worker.wait(timeout=60) == 0, (isolated / "worker.log").read_text()[-3000:]
        report = lmbench("report", "secret", "--storage", pg_role, "--tracking-uri", tracking,
                         log=isolated / "report.log")
        assert report.wait(timeout=300) == 0, (isolated / "report.log").read_text()[-3000:]
    finally:
        stop_all([driver, worker])
    assert (isolated / "reports" / "secret" / "index.html").is_file()
    assert "trial 1 of secret/rnn failed: NonFiniteLoss" in (isolated / "worker.log").read_text()
    check_runs(base, pg_role)
    assert not leaks(isolated), leaks(isolated)
    assert not leaks(auth_server.root), leaks(auth_server.root)
    assert not database_leaks(pg_role), database_leaks(pg_role)


def check_runs(base: str, storage_url: str) -> None:
    """The worker's trials reached the server; every stored URL is the redacted one; one trial failed."""
    from mlflow import MlflowClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        mp.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        client = MlflowClient(base)
        exp = client.get_experiment_by_name("secret")
        runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = [r for r in runs if r.data.tags.get("lmbench.kind") == "trial"]
    assert len(trials) >= 3 and any(r.info.status == "FAILED" for r in trials), [r.info.status for r in trials]
    redacted = secrets.redact(storage_url)
    assert "***@" in redacted
    assert all(r.data.params["search.storage"] == redacted for r in trials), [r.data.params for r in trials]
    assert all(json.dumps(r.data.params).count("***@") >= 1 for r in trials)


# -- the redaction itself, and refusals that need no service -----------------------------------------


def test_a_password_is_remembered_redacted_and_revealed_only_to_connect(monkeypatch):
    for name in ("PGPASSWORD", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)  # restored afterwards: tracking_uri() sets them
    url = "postgresql://alice:p%40ss-word@db.example:5432/studies"
    shown = secrets.remember(url)
    assert shown == "postgresql://alice:***@db.example:5432/studies"
    assert secrets.reveal(shown) == url
    # a redacted URL this process was never given: no password, so libpq reads PGPASSWORD / ~/.pgpass
    assert secrets.reveal("postgresql://bob:***@h/db") == "postgresql://bob@h/db"
    assert secrets.libpq_split(url) == ("postgresql://alice@db.example:5432/studies", {"PGPASSWORD": "p@ss-word"})
    said = secrets.scrub(f"cannot open {url}: password 'p@ss-word' refused")
    assert "p@ss-word" not in said and "p%40ss-word" not in said and "alice:***@db.example" in said
    assert secrets.tracking_uri("http://carol:pw-12345@track:5000") == "http://track:5000"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("carol", "pw-12345")
    assert "pw-12345" not in secrets.scrub("MLflow said: bad credentials pw-12345")


def test_a_spec_holds_only_the_redacted_url():
    from lmbench.config import dump_raw, flatten, load_spec, resolved_dict

    spec = load_spec(None, ["search.storage=postgresql://dave:hunter2-xyz@h/db",
                            "tracking.tracking_uri=http://erin:s3cret-xyz@t:5000"])
    stored = json.dumps([dump_raw(spec), flatten(resolved_dict(spec))], default=str)
    assert "hunter2-xyz" not in stored and "s3cret-xyz" not in stored
    assert spec.search.storage == "postgresql://dave:***@h/db"
    assert secrets.reveal(spec.search.storage) == "postgresql://dave:hunter2-xyz@h/db"


def test_a_storage_that_does_not_open_is_named_without_its_password():
    from lmbench.errors import SpecError
    from lmbench.tuning.storage import open_storage

    with pytest.raises(SpecError) as e:
        open_storage("postgresql://frank:nope-pw-123@127.0.0.1:1/db", "x")  # nothing listens on port 1
    assert "frank:***@127.0.0.1:1/db" in str(e.value) and "nope-pw-123" not in str(e.value)


def test_a_server_other_machines_reach_needs_auth_and_the_admin_password_never_comes_from_argv(monkeypatch):
    from typer.testing import CliRunner

    from lmbench.cli import app

    monkeypatch.delenv("LMBENCH_ADMIN_PASSWORD", raising=False)
    r = CliRunner().invoke(app, ["server", "--host", "0.0.0.0"])
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    assert "error: --host: 0.0.0.0" in r.output and "--auth" in r.output and "--insecure" in r.output
    r = CliRunner().invoke(app, ["server", "--host", "0.0.0.0", "--auth"])
    assert r.exit_code == 2 and "LMBENCH_ADMIN_PASSWORD" in r.output and "--admin-password-file" in r.output
    assert "--admin-password " not in CliRunner().invoke(app, ["server", "--help"]).output


@pytest.fixture
def password_pg(private_pg):  # noqa: F811
    """A private PostgreSQL cluster that asks every TCP client but ``postgres`` for a password
    (scram-sha-256), with a role ``alice`` and her database; yields (host:port, password)."""
    import psycopg

    password = f"alice-{uuid.uuid4().hex}"
    with psycopg.connect(private_pg.url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE alice LOGIN PASSWORD '{password}'")
        conn.execute("CREATE DATABASE alice OWNER alice")
    (private_pg.data / "pg_hba.conf").write_text("local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                                                "host all all 127.0.0.1/32 scram-sha-256\n")
    private_pg._as_postgres("pg_ctl", "-D", str(private_pg.data), "reload")
    time.sleep(1)
    return f"127.0.0.1:{private_pg.port}", password


def test_passwords_come_from_the_url_pgpassword_or_pgpass_at_run_time(password_pg, tmp_path, monkeypatch):
    import optuna

    from lmbench.errors import SpecError
    from lmbench.tuning.storage import open_storage

    where, password = password_pg
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / ".pgpass"))  # libpq's ~/.pgpass, moved for the test
    bare = f"postgresql://alice@{where}/alice"
    with pytest.raises(SpecError) as refused:  # no password anywhere: the server says no, in one line
        open_storage(bare, "pw")
    assert "password authentication failed" in str(refused.value) or "no password" in str(refused.value)
    monkeypatch.setenv("PGPASSWORD", password)  # libpq's environment
    optuna.create_study(study_name="pw/env", storage=open_storage(bare, "pw"))
    monkeypatch.delenv("PGPASSWORD")

    pgpass = tmp_path / ".pgpass"  # as the README's multi-machine recipe sets up ~/.pgpass
    pgpass.write_text(f"{where}:alice:alice:{password}\n")
    pgpass.chmod(0o600)
    redacted = f"postgresql://alice:***@{where}/alice"  # what a worker reads back from a study
    optuna.create_study(study_name="pw/pgpass", storage=open_storage(redacted, "pw"))
    pgpass.unlink()

    given = f"postgresql://alice:{password}@{where}/alice"  # on the command line: remembered, then redacted
    storage = open_storage(given, "pw")
    assert {s.study_name for s in optuna.get_all_study_summaries(storage)} == {"pw/env", "pw/pgpass"}
    assert secrets.reveal(secrets.redact(given)) == given
    with pytest.raises(SpecError) as wrong:  # (the password a process was given last is the one it uses)
        open_storage(f"postgresql://alice:not-{password}@{where}/alice", "pw")
    assert f"not-{password}" not in str(wrong.value) and "alice:***@" in str(wrong.value)
