"""Ingest: read one pinned source (CSV, Parquet or a SQL query) into a table.

How it works:

- **Files** (CSV, Parquet). The path resolves against the pipeline file's folder
  (``ctx.base_dir``). The file is opened once and read in chunks into one in-memory buffer
  while SHA-256 is computed over the same chunks; the digest is checked against the pin
  *before* anything parses the bytes, and the parser reads that buffer — never the path
  again, so the file cannot be swapped between hashing and parsing. A missing path is a
  :class:`~bastion.errors.ConfigError` naming it; a non-regular file (FIFO, device) is
  refused.
- **CSV** is read with every column as text (pandas ``str`` dtype): typing is the validate
  stage's job, and it needs the raw value to report the row and column of a bad one. Only
  an empty field and the source's ``csv.na_values`` read as null — pandas' default list
  (``NA``, ``null``, ``nan``, ...) does not, so a country code ``NA`` stays a string.
  Parsing is :mod:`bastion.io.stream`'s: an empty file, a header without rows, a header
  that looks like another delimiter, a row with more fields than the header (its line) and
  undecodable bytes (line and byte offset) are each a :class:`~bastion.errors.DataError`.
- **Parquet** keeps the types the file declares.
- **SQL** (SQLAlchemy URL; ``${NAME}`` is replaced by the environment variable ``NAME``,
  per URL component, so a password needs no URL-quoting — only a name listed in
  ``BASTION_ALLOW_ENV``, never a ``BASTION_*`` one, see :mod:`bastion.spec._env`; the
  URL is resolved only to connect). The query must be ONE ``SELECT``
  or ``WITH`` statement: it is tokenised under several quoting dialects (backslash escapes
  or not, ``$$`` strings or not, ``[identifiers]`` or not) and refused if any reading finds
  a second statement, a data-changing keyword (``INSERT``, ``UPDATE``, ``DELETE``,
  ``MERGE``, ``INTO``, ``DROP``, ...) or a MySQL executable comment. This is intent, not a
  sandbox: give the pipeline a read-only database role. On top of it, SQLite files are
  opened read-only (``mode=ro``; relative paths resolve against ``ctx.base_dir``) and
  PostgreSQL transactions are ``READ ONLY``. The password (and any secret-looking query
  parameter) is ``***`` in messages, logs and materials, and scrubbed from the driver's
  errors. The query stops after ``timeout_seconds`` (default 300): SQLite through a
  progress handler that interrupts it, PostgreSQL through ``SET LOCAL statement_timeout``;
  other databases get no limit from Bastion. A timeout is a ConfigError naming the source.
- **The SQL pin** is the SHA-256 of this canonical serialisation of the result, in the
  order the rows arrive (use ``ORDER BY`` for a stable pin), UTF-8, one JSON text per line
  with ``separators=(",", ":")`` and ``ensure_ascii=False``: first the list of column
  names, then one array per row. ``None``, booleans, integers, strings and floats are JSON
  values (a float keeps its ``repr``, so ``1.0`` differs from ``1``; NaN and infinities are
  written ``NaN``, ``Infinity``, ``-Infinity``); any other value becomes a one-key object
  ``{"<type>": "<text>"}``: ``decimal`` (``str``), ``datetime``/``date``/``time``
  (ISO 8601), ``timedelta`` (total seconds), ``bytes`` (hex), ``uuid``, or the Python type
  name with ``str(value)``. :func:`canonical_rows_sha256` computes it. The digest depends on
  the values the driver returns, so the same rows may pin differently on another database.
- **Unpinned** sources need ``unsafe_unpinned: true``; each run then logs a warning and
  audits ``ingest.unsafe_unpinned`` with the digest it saw. A pin that is set is always
  checked. A mismatch is a :class:`~bastion.errors.PinMismatch` (an IntegrityError)
  naming the source, the expected and the actual digest.

Each read appends a :class:`~bastion.spec.stage.Material` (``source:<name>``, digest,
the configured path or the redacted URL) to ``ctx.materials``.

The stage is here; reading a file is :mod:`bastion.stages._source_files`, the read-only query
check :mod:`bastion.stages._sql_guard`, connecting (URL, secrets, engine, time limit)
:mod:`bastion.stages._sql_connect`, and the result's pin and table
:mod:`bastion.stages._sql_rows`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import ConfigError, PinMismatch
from bastion.spec.stage import ConfigProblem, Material, Stage
from bastion.stages._source_files import parse_file, read_pinned_bytes, resolve
from bastion.stages._sql_connect import (
    Deadline,
    expand_url,
    is_statement_timeout,
    open_engine,
    redact_url,
    scrub,
    url_secrets,
)
from bastion.stages._sql_guard import check_read_only_query, escape_binds
from bastion.stages._sql_rows import canonical_rows_sha256, rows_frame

if TYPE_CHECKING:
    from bastion.spec.config import SourceConfig
    from bastion.spec.stage import Kind, StageContext

__all__ = ["IngestStage", "canonical_rows_sha256", "check_read_only_query", "redact_url"]

log = logging.getLogger(__name__)

_SQL_TIMEOUT = 300.0  # seconds a SQL source's query may run unless it sets timeout_seconds


class IngestStage(Stage):
    """Read the source ``source_name``; output ``table``."""

    version = "1"
    source: SourceConfig

    def __init__(self, source_name: str, source: SourceConfig) -> None:
        self.source_name = source_name
        self.source = source
        self.name = f"ingest.{source_name}"
        self.inputs: Mapping[str, str] = {}
        self.outputs: Mapping[str, Kind] = {"table": "table"}

    def load_problems(self, base_dir: Path) -> list[ConfigProblem]:
        """A file source whose path (against ``base_dir``) is missing or not a regular
        file; nothing is opened or read."""
        src = self.source
        if src.format == "sql" or not src.path:
            return []
        path = resolve(base_dir, src.path)
        at = ("data", "sources", self.source_name, "path")
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            return [(at, f"file not found: {path}; expected a path relative to {base_dir}")]
        except OSError as exc:
            return [(at, f"cannot open {path}: {exc.strerror}; expected a readable file")]
        if not stat.S_ISREG(mode):
            return [(at, f"not a regular file: {path}; expected a {src.format} file")]
        return []

    def fingerprint(self) -> Mapping[str, Any]:
        """The source config (URL redacted). ``sha256`` None means unpinned: do not cache.

        A file's path is left out: the result depends on the pinned bytes and the parse
        options, so moving a file (or writing its path another way) reuses the cache.
        """
        cfg = self.source.model_dump(mode="json")
        if cfg.get("url"):
            cfg["url"] = redact_url(cfg["url"])
        if cfg.get("format") != "sql":
            cfg.pop("path", None)
        cfg.pop("timeout_seconds", None)  # how long it may take, not what it reads
        return {"source": self.source_name, **cfg}

    def run(self, ctx: StageContext, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        src = self.source
        if src.format == "sql":
            columns, rows, uri = self._query(ctx.base_dir)
            actual = canonical_rows_sha256(columns, rows)
            self._check_pin(ctx, actual, uri)
            table = rows_frame(columns, rows)
        else:
            uri = src.path or ""
            data, actual = read_pinned_bytes(self.source_name, resolve(ctx.base_dir, uri))
            self._check_pin(ctx, actual, uri)
            table = parse_file(self.source_name, src, data)
        if src.sha256 is None:
            log.warning(
                "source %r is unpinned (unsafe_unpinned: true); read sha256=%s from %s",
                self.source_name,
                actual,
                uri,
            )
            ctx.audit("ingest.unsafe_unpinned", "ok", source=self.source_name, sha256=actual)
        ctx.materials.append(Material(name=f"source:{self.source_name}", sha256=actual, uri=uri))
        ctx.summary[self.name] = {
            "rows": len(table),
            "columns": len(table.columns),
            "sha256": actual,
            "pinned": src.sha256 is not None,
        }
        return {"table": table}

    def _check_pin(self, ctx: StageContext, actual: str, uri: str) -> None:
        pin = self.source.sha256
        if pin is None or actual == pin:
            return
        key = ("data", "sources", self.source_name, "sha256")
        where = ""
        if ctx.pipeline_raw:
            from bastion.spec.loader import locate

            where = f" at {locate(ctx.pipeline_raw, ctx.pipeline_file, key)}"
        what = "file" if self.source.format != "sql" else "query result"
        raise PinMismatch(
            f"source {self.source_name!r} ({uri}): SHA-256 mismatch: expected {pin},"
            f" got {actual}; if this {what} is the one you mean to use, change the pin"
            f" {'.'.join(key)}{where} to {actual}"
        )

    def _query(self, base_dir: Path) -> tuple[list[str], list[tuple[Any, ...]], str]:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        name, src = self.source_name, self.source
        query = src.query or ""
        check_read_only_query(query, source=name)
        url = expand_url(src.url or "", name)
        shown = redact_url(url)
        secrets = url_secrets(url)
        engine = open_engine(url, base_dir, name, shown, secrets)
        timeout = src.timeout_seconds or _SQL_TIMEOUT
        deadline = Deadline(timeout)
        try:
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {deadline.millis}")
                elif engine.dialect.name == "sqlite":
                    raw = conn.connection.driver_connection
                    if isinstance(raw, sqlite3.Connection):
                        raw.set_progress_handler(deadline.passed, 10_000)
                deadline.start()
                result = conn.execute(text(escape_binds(query)))
                columns = list(map(str, result.keys()))
                rows = [tuple(r) for r in result]
                conn.rollback()
        except SQLAlchemyError as exc:
            if deadline.expired or is_statement_timeout(exc):
                raise ConfigError(
                    f"source {name!r} ({shown}): the query ran longer than its timeout of"
                    f" {timeout:g} s and was stopped; make it faster or raise"
                    f" data.sources.{name}.timeout_seconds"
                ) from None
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            msg = scrub(detail[0] if detail else type(exc).__name__, secrets)
            raise ConfigError(f"source {name!r} ({shown}): the query failed: {msg}") from None
        finally:
            engine.dispose()
        return columns, rows, shown
