"""Files every layer writes: atomic replacement, and the folder reports go to."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPORTS_DIR = Path("reports")  # reports/<experiment>/: results tables and the HTML report


def report_dir(experiment: str) -> Path:
    return REPORTS_DIR / experiment


def write_atomic(path: Path, content: str | bytes, *, durable: bool = False, mode: int = 0o666) -> None:
    """Write ``path`` so readers see the old or the new version, never half of one.

    ``durable``: fsync before the rename (checkpoint pointers must survive a power cut).
    ``mode`` is filtered by the umask as for an ordinary file (mkstemp alone makes 0600).
    Raises OSError; callers turn it into the error their user understands.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
