# Over 400 lines, because the read-only SQL check and URL redaction belong to its SQL reader.
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
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import json
import logging
import math
import os
import re
import sqlite3
import stat
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from bastion.errors import ConfigError, PinMismatch
from bastion.spec._env import REFERENCE, refusal
from bastion.spec.stage import ConfigProblem, Material, Stage

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

    from bastion.spec.config import SourceConfig
    from bastion.spec.stage import Kind, StageContext

__all__ = ["IngestStage", "canonical_rows_sha256", "check_read_only_query", "redact_url"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_SQL_TIMEOUT = 300.0  # seconds a SQL source's query may run unless it sets timeout_seconds
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|credential", re.IGNORECASE)


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
        path = _resolve(base_dir, src.path)
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
            table = _frame(columns, rows)
        else:
            uri = src.path or ""
            data, actual = _read_pinned_bytes(self.source_name, _resolve(ctx.base_dir, uri))
            self._check_pin(ctx, actual, uri)
            table = _parse_file(self.source_name, src, data)
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
        url = _expand_url(src.url or "", name)
        shown = redact_url(url)
        secrets = _secrets(url)
        engine = _engine(url, base_dir, name, shown, secrets)
        timeout = src.timeout_seconds or _SQL_TIMEOUT
        deadline = _Deadline(timeout)
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
                result = conn.execute(text(_escape_binds(query)))
                columns = list(map(str, result.keys()))
                rows = [tuple(r) for r in result]
                conn.rollback()
        except SQLAlchemyError as exc:
            if deadline.expired or _is_statement_timeout(exc):
                raise ConfigError(
                    f"source {name!r} ({shown}): the query ran longer than its timeout of"
                    f" {timeout:g} s and was stopped; make it faster or raise"
                    f" data.sources.{name}.timeout_seconds"
                ) from None
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            msg = _scrub(detail[0] if detail else type(exc).__name__, secrets)
            raise ConfigError(f"source {name!r} ({shown}): the query failed: {msg}") from None
        finally:
            engine.dispose()
        return columns, rows, shown


class _Deadline:
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


def _is_statement_timeout(exc: Exception) -> bool:
    """PostgreSQL's ``query_canceled`` (SQLSTATE 57014) from ``statement_timeout``."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code == "57014" or "statement timeout" in str(orig or "")


# -- files ---------------------------------------------------------------------------------


def _resolve(base_dir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(base_dir) / p


def _read_pinned_bytes(name: str, path: Path) -> tuple[io.BytesIO, str]:
    """Read the file once, hashing the same chunks that fill the buffer."""
    try:  # O_NONBLOCK: opening a FIFO must not hang; fstat then refuses it
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ConfigError(f"source {name!r}: file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"source {name!r}: cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"source {name!r}: not a regular file: {path}")
        digest = hashlib.sha256()
        buf = io.BytesIO()
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            buf.write(chunk)
    buf.seek(0)
    return buf, digest.hexdigest()


def _parse_file(name: str, src: SourceConfig, data: io.BytesIO) -> pd.DataFrame:
    """Parse the pinned bytes; bad input (empty, header only, wrong delimiter, ragged rows,
    undecodable bytes, not Parquet) is a DataError naming the line (see ``stream``)."""
    from bastion.io.stream import read_frame

    fmt: Literal["csv", "parquet"] = "parquet" if src.format == "parquet" else "csv"
    shown = f"source {name!r}: cannot read the {fmt} file {src.path}"
    return read_frame(data, shown=shown, format=fmt, csv=src.csv)


# -- SQL -----------------------------------------------------------------------------------

_FORBIDDEN = frozenset(
    {
        "alter",
        "attach",
        "create",
        "delete",
        "detach",
        "drop",
        "grant",
        "insert",
        "into",
        "merge",
        "pragma",
        "revoke",
        "truncate",
        "update",
        "upsert",
        "vacuum",
    }
)


def check_read_only_query(query: str, *, source: str = "?") -> None:
    """Refuse anything but one ``SELECT``/``WITH`` statement (ConfigError).

    The query is tokenised under every combination of three dialect choices (backslash
    escapes and MySQL comment rules; ``$$`` strings; ``[bracketed]`` identifiers); any reading
    that sees a second statement, a data-changing keyword, an executable comment or an
    unterminated quote refuses it, so quoting tricks that hide a statement from one reading
    are caught by another.
    """
    for backslash in (False, True):
        for dollar in (False, True):
            for brackets in (False, True):
                problem = _lex_problem(query, backslash, dollar, brackets)
                if problem:
                    raise ConfigError(
                        f"source {source!r}: query refused: {problem}"
                        " (only a single SELECT or WITH statement is allowed)"
                    )


def _lex_problem(query: str, backslash: bool, dollar: bool, brackets: bool) -> str | None:
    single, double = (
        (r"'(?:[^'\\]|\\.|'')*'", r'"(?:[^"\\]|\\.|"")*"')
        if backslash
        else (r"'(?:[^']|'')*'", r'"(?:[^"]|"")*"')
    )
    dashes = r"--(?=\s)" if backslash else "--"  # MySQL: "--1" is minus minus one
    parts = [
        rf"(?P<skip>\s+|{dashes}[^\n]*(?:\n|$))",
        r"(?P<exec>/\*M?!)",
        r"(?P<skip2>/\*.*?\*/)",
        rf"(?P<str>{single}|{double}|`[^`]*`)",
    ]
    if dollar:
        parts.append(r"(?P<dollar>\$(?P<tag>[A-Za-z_]\w*)?\$.*?\$(?P=tag)\$)")
    if brackets:
        parts.append(r"(?P<brk>\[[^\]]*\])")
    parts += [r"(?P<word>[A-Za-z_]\w*)", r"(?P<semi>;)", r"(?P<other>.)"]
    words: list[str] = []
    ended = False
    for m in re.finditer("|".join(parts), query, re.DOTALL):
        kind = m.lastgroup
        if kind in ("skip", "skip2"):
            continue
        if kind == "exec":
            return "MySQL executable comments (/*! */) are not allowed"
        if ended:
            return "more than one statement"
        if kind == "semi":
            ended = True
        elif kind == "word":
            words.append(m.group().lower())
        elif kind == "other" and m.group() in "'\"`":
            return "an unterminated quote"
    if not words or words[0] not in ("select", "with"):
        return "it does not start with SELECT or WITH"
    bad = sorted(_FORBIDDEN.intersection(words))
    return f"it contains {', '.join(w.upper() for w in bad)}" if bad else None


def _escape_binds(query: str) -> str:
    """Make ``text()`` take the query literally: no ``:name`` bind parameters."""
    from sqlalchemy.sql.compiler import BIND_PARAMS, BIND_PARAMS_ESC

    query = BIND_PARAMS_ESC.sub(lambda m: "\\" + m.group(0), query)  # keep a literal \:x
    return BIND_PARAMS.sub(lambda m: "\\" + m.group(0), query)


def _expand_url(template: str, source: str) -> URL:
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


def _secrets(url: URL) -> list[str]:
    """What a message must never hold: the resolved URL, its password and secret params."""
    found = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if _SECRET_PARAM.search(key):
            found.extend([value] if isinstance(value, str) else list(value))
    found = [s for s in found if s]
    return [url.render_as_string(hide_password=False), *found] if found else []


def _scrub(message: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "***")
        message = message.replace(urllib.parse.quote(secret, safe=""), "***")
    return message


def _engine(url: URL, base_dir: Path, source: str, shown: str, secrets: Iterable[str]) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ArgumentError
    from sqlalchemy.pool import NullPool

    if url.get_backend_name() == "sqlite":
        db = url.database or ""
        if db in ("", ":memory:") or db.startswith("file:"):
            raise ConfigError(f"source {source!r}: a sqlite source needs a database file path")
        path = _resolve(base_dir, db)
        if not path.is_file():
            raise ConfigError(f"source {source!r}: database file not found: {path}")
        uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
        return create_engine(
            "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=NullPool
        )
    try:
        return create_engine(url, poolclass=NullPool)
    except (ArgumentError, ImportError) as exc:
        msg = _scrub(str(exc), secrets)
        raise ConfigError(f"source {source!r}: cannot use {shown}: {msg}") from None


def canonical_rows_sha256(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """SHA-256 of the canonical serialisation of a query result (see the module docstring)."""
    digest = hashlib.sha256()

    def line(value: list[Any]) -> None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
        digest.update(text.encode("utf-8") + b"\n")

    line(list(columns))
    for row in rows:
        line([_canonical(v) for v in row])
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return {"decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"timedelta": repr(value.total_seconds())}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    return {type(value).__name__: str(value)}


def _text(value: Any) -> str:
    """A SQL value that pandas cannot type natively, as text for the table."""
    canon = _canonical(value)
    if isinstance(canon, dict):
        return str(next(iter(canon.values())))
    return str(canon) if not isinstance(canon, float) or math.isfinite(canon) else repr(canon)


def _frame(columns: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """A table whose columns are Int64, boolean, float64 or str: Parquet-friendly."""
    data: dict[str, pd.Series] = {}
    for i, col in enumerate(columns):
        values = [row[i] for row in rows]
        arr = pd.array(values) if values else pd.array([], dtype="str")
        if isinstance(arr.dtype, pd.Int64Dtype | pd.BooleanDtype):
            data[col] = pd.Series(arr)
        elif isinstance(arr.dtype, pd.Float64Dtype):
            data[col] = pd.Series(arr.to_numpy(dtype="float64", na_value=np.nan))
        elif isinstance(arr.dtype, pd.StringDtype):
            data[col] = pd.Series(arr, dtype="str")
        else:
            data[col] = pd.Series([None if v is None else _text(v) for v in values], dtype="str")
    return pd.DataFrame(data, columns=columns)
