"""Logging of every lmbench process (the CLI and the worker processes it spawns).

The console shows lmbench's own messages. The libraries' routine INFO lines (Optuna's "A new
study created ...", "Using an existing study ...", MLflow's "Creating initial MLflow database
tables ...", alembic's migrations) are not for the user: they are shown only with ``--debug``
(which sets ``LMBENCH_DEBUG=1``, so spawned workers follow). Every handler masks passwords.
"""

from __future__ import annotations

import logging
import os

from lmbench.secrets import ScrubFilter

DEBUG_ENV = "LMBENCH_DEBUG"
CHATTY = ("optuna", "mlflow.store.db.utils", "alembic")  # INFO lines that are noise to a user


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV) == "1"


def setup(level: int, handler: logging.Handler | None = None, fmt: str = "%(message)s") -> None:
    """The root logger at ``level`` (through ``handler``), quiet libraries, passwords masked."""
    logging.basicConfig(level=level, format=fmt, handlers=[handler] if handler else None, force=True)
    quiet_libraries()


def quiet_libraries() -> None:
    """Optuna, MLflow's store setup and alembic at WARNING (INFO with ``--debug``), and a
    password mask on every handler they and the root logger write through."""
    import mlflow  # noqa: F401 - configures its "mlflow" logger and handler on import
    import optuna  # configures its logger on import: set the level after it

    level = logging.INFO if debugging() else logging.WARNING
    optuna.logging.set_verbosity(level)
    for name in CHATTY:
        logging.getLogger(name).setLevel(level)
    for name in ("", "mlflow", "optuna"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, ScrubFilter) for f in handler.filters):
                handler.addFilter(ScrubFilter())
