"""Connecting to a SQL source (see :mod:`bastion.stages.ingest`): ``${NAME}`` expanded per
URL component from the variables the environment allows (:func:`expand_url`), the password
and secret-looking parameters shown as ``***`` (:func:`redact_url`) and scrubbed from the
driver's messages (:func:`url_secrets`, :func:`scrub`), SQLite opened read-only against the
pipeline's folder (:func:`open_engine`), and the query's time limit (:class:`Deadline`,
:func:`is_statement_timeout`)."""

from __future__ import annotations

import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bastion.errors import ConfigError
from bastion.spec._env import REFERENCE, refusal
from bastion.stages._source_files import resolve

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

__all__ = [
    "Deadline",
    "expand_url",
    "is_statement_timeout",
    "open_engine",
    "redact_url",
    "scrub",
    "url_secrets",
]

_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|credential", re.IGNORECASE)


class Deadline:
    """The query's time limit: SQLite's progress handler asks :meth:`passed` (a true answer
    interrupts the statement); PostgreSQL gets :attr:`millis` as ``statement_timeout``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.millis = max(1, int(seconds * 1000))
        self.expired = False
        self._end = time.monotonic() + seconds

    def start(self) -> None:
        self._end = time.monotonic() + self.seconds

    def passed(self) -> int:
        if time.monotonic() >= self._end:
            self.expired = True
            return 1
        return 0


def is_statement_timeout(exc: Exception) -> bool:
    """PostgreSQL's ``query_canceled`` (SQLSTATE 57014) from ``statement_timeout``."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code == "57014" or "statement timeout" in str(orig or "")


def expand_url(template: str, source: str) -> URL:
    """Replace ``${NAME}`` per URL component (or in the whole string if it will not parse).

    Only a variable that :func:`bastion.spec._env.refusal` allows is expanded (listed in
    ``BASTION_ALLOW_ENV``, never ``BASTION_*``); the loader refused any other already, and
    this refuses it again for a config built without the loader. Called only to connect.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    for ref in REFERENCE.finditer(template):
        why = refusal(ref.group(1))
        if why:
            raise ConfigError(f"source {source!r}: url: {why}")

    def expand(value: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                raise ConfigError(
                    f"source {source!r}: environment variable {m.group(1)}"
                    " (used in its url) is not set"
                )
            return os.environ[m.group(1)]

        return REFERENCE.sub(one, value)

    try:
        url = make_url(template)
        return url.set(
            username=expand(url.username) if url.username else url.username,
            password=expand(str(url.password)) if url.password else url.password,
            host=expand(url.host) if url.host else url.host,
            database=expand(url.database) if url.database else url.database,
            query={
                k: (expand(v) if isinstance(v, str) else tuple(expand(x) for x in v))
                for k, v in url.query.items()
            },
        )
    except (ArgumentError, ValueError):
        pass
    try:
        return make_url(expand(template))
    except ArgumentError:
        raise ConfigError(
            f"source {source!r}: not a SQLAlchemy URL: {redact_url(template)}"
        ) from None


def redact_url(url: str | URL) -> str:
    """The URL with its password and secret-looking query parameters replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable url>"
    query = {k: ("***" if _SECRET_PARAM.search(k) else v) for k, v in parsed.query.items()}
    shown: str = parsed.set(query=query).render_as_string(hide_password=True)
    return shown.replace("=%2A%2A%2A", "=***")


def url_secrets(url: URL) -> list[str]:
    """What a message must never hold: the resolved URL, its password and secret params."""
    found = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if _SECRET_PARAM.search(key):
            found.extend([value] if isinstance(value, str) else list(value))
    found = [s for s in found if s]
    return [url.render_as_string(hide_password=False), *found] if found else []


def scrub(message: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
        message = message.replace(urllib.parse.quote(secret, safe=""), "***")
    return message


def open_engine(
    url: URL, base_dir: Path, source: str, shown: str, secrets: Iterable[str]
) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.pool import NullPool

    if url.get_backend_name() == "sqlite":
        db = url.database or ""
        if db in ("", ":memory:") or db.startswith("file:"):
            raise ConfigError(f"source {source!r}: a sqlite source needs a database file path")
        path = resolve(base_dir, db)
        if not path.is_file():
            raise ConfigError(f"source {source!r}: database file not found: {path}")
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        return create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=NullPool
        )
    try:
        return create_engine(url, poolclass=NullPool)
    except (ArgumentError, ImportError) as exc:
        msg = scrub(str(exc), secrets)
        raise ConfigError(f"source {source!r}: cannot use {shown}: {msg}") from None
