"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import contextlib


class UserError(Exception):
    """A problem with the user's input (spec, data, CLI value), detected before any work starts.

    ``where`` names the spec key path, CLI option or file the problem is about, so the message
    always tells the user what to change.
    """

    exit_code = 2

    def __init__(self, where: str, reason: str):
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


class SpecError(UserError):
    """An invalid spec value, override or CLI option (``where`` is the dotted key path)."""


class DataError(UserError):
    """Unusable data (``where`` is the file, with a line or byte offset when known)."""


def mark_failed_run(exc: BaseException, run_id: str | None) -> None:
    """Remember on ``exc`` which MLflow run it failed (the CLI names the run in its one line)."""
    if run_id is not None and getattr(exc, "lmbench_run_id", None) is None:
        with contextlib.suppress(AttributeError, TypeError):  # a type that takes no attributes
            exc.lmbench_run_id = run_id  # type: ignore[attr-defined]


def failed_run_of(exc: BaseException) -> str | None:
    """The run ``exc`` (or an exception it was raised from) failed, if one was marked."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        run_id = getattr(exc, "lmbench_run_id", None)
        if run_id:
            return run_id
        exc = exc.__cause__ or exc.__context__
    return None


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``Type: message`` on one line: the first line of the message, cut to ``limit`` characters.
    A UserError is its own message (it names the key or file)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    line = first if isinstance(exc, UserError) else f"{type(exc).__name__}: {first}".rstrip(": ")
    return line if len(line) <= limit else line[: limit - 1] + "…"
