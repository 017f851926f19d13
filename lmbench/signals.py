"""SIGTERM as a clean stop: the one place that installs signal handlers.

A pre-empted worker or a ``kill`` must never lose work: the handler raises :class:`Terminated`
(a ``BaseException``, so ``except Exception`` blocks do not swallow it) and the code that owns the
run checkpoints, ends its MLflow run KILLED and exits 143. Handlers can only be installed in the
main thread; elsewhere these helpers leave signals alone.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

TERMINATED_EXIT = 128 + signal.SIGTERM  # how the shell reports a process stopped by SIGTERM


class Terminated(BaseException):
    """Raised from the SIGTERM handler so the run can checkpoint and end KILLED."""


@contextlib.contextmanager
def on_sigterm(handler: Callable[[int], None]) -> Iterator[bool]:
    """Call ``handler(signum)`` on SIGTERM inside the block; yields whether it was installed."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handler(signum))
    try:
        yield True
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_raises(before: Callable[[], None] | None = None) -> Iterator[bool]:
    """SIGTERM raises :class:`Terminated` inside the block, after ``before()`` (which may record
    that a signal came: the exception can surface wrapped in another one)."""

    def handler(signum: int) -> None:
        if before is not None:
            before()
        raise Terminated(f"signal {signum}")

    with on_sigterm(handler) as installed:
        yield installed
