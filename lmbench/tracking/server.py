"""Commands that start MLflow servers: the tracking server workers log to, and the UI.

A password of the backend store never goes on the server's command line (every local user can
read it): the child gets it as ``PGPASSWORD`` (:func:`server_env`). ``--auth`` runs MLflow's
basic-auth app: every request needs a user and password; the admin's password comes from
``$LMBENCH_ADMIN_PASSWORD`` or a file, into the child's environment, never argv or disk.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from lmbench import secrets
from lmbench.errors import UserError
from lmbench.tracking.tracker import DEFAULT_ARTIFACTS, resolve_uri

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ADMIN_PASSWORD_ENV = "LMBENCH_ADMIN_PASSWORD"
# authenticated users may log runs in any experiment (workers log into the driver's); the admin
# can narrow it per experiment or user with MLflow's permission API
AUTH_CONFIG = """[mlflow]
default_permission = EDIT
database_uri = {database_uri}
admin_username = {admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


def check_exposure(host: str, auth: bool, insecure: bool) -> None:
    """A server other machines can reach must ask who is there, unless the user says otherwise."""
    if host not in LOOPBACK and not auth and not insecure:
        raise UserError("--host", f"{host} lets every machine that reaches this one read and change every run; "
                        "add --auth (users and passwords) or, on a trusted network only, --insecure")


def admin_password(password_file: Path | None) -> str:
    """The admin's password: the first line of ``password_file``, else ``$LMBENCH_ADMIN_PASSWORD``."""
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise UserError("--admin-password-file", f"cannot read {password_file}: {e.strerror or e}") from None
        if not lines or not lines[0].strip():
            raise UserError("--admin-password-file", f"{password_file} is empty")
        return lines[0].strip()
    password = os.environ.get(ADMIN_PASSWORD_ENV, "")
    if not password:
        raise UserError("--auth", f"set the admin's password in ${ADMIN_PASSWORD_ENV} or give "
                        "--admin-password-file (never on the command line)")
    return password


def auth_config(folder: Path, admin: str) -> Path:
    """MLflow's basic-auth settings (no password in them) and its user database, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "basic_auth.ini"
    path.write_text(AUTH_CONFIG.format(database_uri=f"sqlite:///{(folder / 'basic_auth.db').resolve()}",
                                       admin=admin))
    return path


def server_env(backend_store_uri: str, auth: Path | None = None, admin: str = "admin",
               password: str | None = None) -> dict[str, str]:
    """The server's environment: the store's password as PGPASSWORD; with ``auth`` (the folder of
    the user database) MLflow's basic-auth settings and the admin's name and password."""
    env = {**os.environ, **secrets.libpq_split(resolve_uri(backend_store_uri))[1]}
    # MLflow 3 starts huey job consumers beside the server (GenAI evaluation, trace roll-ups),
    # several processes that each import MLflow: lmbench runs no server jobs, so they start only
    # when the user's environment asks for them
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if auth is not None:
        env.update({"MLFLOW_AUTH_CONFIG_PATH": str(auth_config(auth, admin)), "MLFLOW_AUTH_ADMIN_USERNAME": admin,
                    "MLFLOW_AUTH_ADMIN_PASSWORD": password or ""})
        # the CSRF key of the UI's forms: one per start, shared by the server's processes
        env.setdefault("MLFLOW_FLASK_SERVER_SECRET_KEY", os.urandom(32).hex())
    return env


def server_command(host: str, port: int, backend_store_uri: str, artifacts_destination: str | None = None,
                   workers: int = 4, auth: bool = False) -> list[str]:
    """The ``mlflow server`` command: runs in ``backend_store_uri``, artifacts proxied by the server
    into ``artifacts_destination`` (workers need no access to it). Without a destination, a
    SQLite store's artifacts are served from beside its file (``mlartifacts/``, where lmbench
    writes them); another store keeps MLflow's default.

    Relative paths are made absolute, so the server does not depend on its working directory.
    """
    uri = resolve_uri(backend_store_uri)
    dest = artifacts_destination
    if dest is None and uri.startswith("sqlite:///"):
        dest = str(Path(uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
           "--backend-store-uri", secrets.libpq_split(uri)[0]]
    if dest is not None:
        cmd += ["--artifacts-destination", dest if "://" in dest else str(Path(dest).resolve()),
                "--serve-artifacts"]
    if auth:
        cmd += ["--app-name", "basic-auth"]
    return [*cmd, "--workers", str(workers)]
