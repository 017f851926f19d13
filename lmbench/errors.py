"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


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
