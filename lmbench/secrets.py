"""Credentials in URLs: redacted wherever a URL is stored or shown, revealed only to connect.

A storage or tracking URL may carry a password (``postgresql://user:PASSWORD@host/db``). The
password lives in the memory of the process that was given it and nowhere else: specs, MLflow
params and tags, artifacts, checkpoints, study attributes, reports, logs and error messages hold
the redacted form ``postgresql://user:***@host/db``. To connect, :func:`reveal` gives back the
URL this process was given (command line, environment, spec file); a redacted URL it was never
given is handed over without a password, so libpq reads ``PGPASSWORD`` or ``~/.pgpass`` itself.
A tracking server's credentials go to MLflow as ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``, never inside the URI (MLflow prints its URI in errors).

This is the one place that knows the URL forms; every layer above uses it.
"""

from __future__ import annotations

import logging
import os
import re
import urllib.parse

MASK = "***"
# scheme://user:password@ - the userinfo of a URL with a password (RFC 3986 forbids @ and / in it)
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s'\"]*):(?P<password>[^@/\s'\"]*)@")
# environment variables whose values are passwords: masked in any text lmbench shows or stores
SECRET_ENV = ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_AUTH_ADMIN_PASSWORD",
              "LMBENCH_ADMIN_PASSWORD")
MIN_SCRUBBED = 3  # shorter "passwords" would mask ordinary text; a URL's userinfo is masked anyway

_KNOWN: dict[str, str] = {}  # redacted URL -> the URL with its password, as this process was given it


def password_of(url: str | None) -> str | None:
    """The password in ``url``'s userinfo (percent-decoded), or None."""
    found = _USERINFO.search(url or "")
    return urllib.parse.unquote(found["password"]) if found else None


def redact(url: str | None) -> str | None:
    """``url`` with its password (if any) replaced by ``***``; None stays None."""
    if url is None:
        return None
    return _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", url)


def remember(url: str | None) -> str | None:
    """Keep the password of ``url`` in this process; returns the redacted form to store and show."""
    shown = redact(url)
    if url is not None and shown != url and password_of(url) != MASK:
        _KNOWN[shown] = url
    return shown


def reveal(url: str | None) -> str | None:
    """The URL to connect with: the one this process was given for this redacted form, else the
    form without a password (libpq then reads PGPASSWORD / ~/.pgpass)."""
    if url is None:
        return None
    if url in _KNOWN:
        return _KNOWN[url]
    if password_of(url) == MASK:
        return _USERINFO.sub(lambda m: f"{m['head']}@", url)
    return url


def tracking_uri(uri: str) -> str:
    """The URI to give MLflow for ``uri`` (plain or redacted): a database URL with its password;
    an http(s) server without userinfo, its credentials moved into MLflow's environment."""
    real = reveal(uri) or uri
    if not real.startswith(("http://", "https://")):
        return real
    parts = urllib.parse.urlsplit(real)
    if parts.username is None:
        return real
    os.environ["MLFLOW_TRACKING_USERNAME"] = urllib.parse.unquote(parts.username)
    if parts.password is not None and parts.password != MASK:
        os.environ["MLFLOW_TRACKING_PASSWORD"] = urllib.parse.unquote(parts.password)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def libpq_split(url: str) -> tuple[str, dict[str, str]]:
    """A database URL for a child process's argv without its password, and the environment
    (``PGPASSWORD``) that hands the password over instead: argv is visible to every local user."""
    real = reveal(url) or url
    password = password_of(real)
    if password is None or password == MASK:
        return real, {}
    return _USERINFO.sub(lambda m: f"{m['head']}@", real), {"PGPASSWORD": password}


def scrub(text: str) -> str:
    """``text`` with every URL password and every password this process knows replaced by ``***``."""
    out = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    for secret in _secrets():
        out = out.replace(secret, MASK)
    return out


def _secrets() -> set[str]:
    found = {password_of(url) or "" for url in _KNOWN.values()}
    found |= {urllib.parse.quote(s, safe="") for s in found}
    found |= {os.environ.get(name, "") for name in SECRET_ENV}
    return {s for s in found if len(s) >= MIN_SCRUBBED and s != MASK}


def known() -> dict[str, str]:
    """What this process was given, to hand to a worker process it spawns (never to a file)."""
    return dict(_KNOWN)


def adopt(given: dict[str, str]) -> None:
    """Take over what the parent process was given (see :func:`known`)."""
    _KNOWN.update(given)


class ScrubFilter(logging.Filter):
    """A logging filter that masks passwords in every record before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = scrub(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True
