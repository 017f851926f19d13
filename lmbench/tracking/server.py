"""Commands that start MLflow servers: the tracking server workers log to, and the UI."""

from __future__ import annotations

import sys
from pathlib import Path

from lmbench.tracking.tracker import resolve_uri


def server_command(host: str, port: int, backend_store_uri: str, artifacts_destination: str,
                   workers: int = 4) -> list[str]:
    """The ``mlflow server`` command lmbench's workers need: runs in ``backend_store_uri``,
    artifacts proxied by the server into ``artifacts_destination`` (workers need no access to it).

    Relative paths are made absolute, so the server does not depend on its working directory.
    """
    dest = artifacts_destination
    if "://" not in dest:
        dest = str(Path(dest).resolve())
    return [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
            "--backend-store-uri", resolve_uri(backend_store_uri), "--artifacts-destination", dest,
            "--serve-artifacts", "--workers", str(workers)]
