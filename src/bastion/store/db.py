"""The metadata database: every table Bastion keeps, in SQLAlchemy 2 Core.

SQLite (a file in the home) by default; PostgreSQL when ``BASTION_DATABASE_URL`` names one.
The schema is created and upgraded only by Alembic migrations (``store/migrations``), which
:func:`migrate` runs; the table shapes are defined once in :mod:`bastion.security.schema`
(below the store, since the security services read and seal these rows) and re-exported here.

Timestamps are ISO-8601 UTC text so the audit log hashes the very bytes it stores.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bastion.errors import ConfigError
from bastion.security.schema import (
    artifacts,
    audit_checkpoints,
    audit_head,
    audit_log,
    blocks,
    grants,
    metadata,
    models,
    principals,
    role_permissions,
    runs,
    stage_cache,
    statement_subjects,
    statements,
    tokens,
)

__all__ = [
    "HEAD_REVISION",
    "artifacts",
    "audit_checkpoints",
    "audit_head",
    "audit_log",
    "blocks",
    "ensure_schema",
    "grants",
    "make_engine",
    "metadata",
    "migrate",
    "models",
    "principals",
    "role_permissions",
    "runs",
    "sqlite_url",
    "stage_cache",
    "statement_subjects",
    "statements",
    "tokens",
]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    if isinstance(dbapi_conn, sqlite3.Connection):
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")  # durable commits: the WAL is fsynced
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()


def sqlite_url(path: Path) -> URL:
    """The URL of the SQLite file at ``path``, whatever characters the path holds.

    Never format ``f"sqlite:///{path}"``: a ``?`` or ``#`` in a folder name would start a
    query string or fragment and put the database somewhere else.
    """
    return URL.create(drivername="sqlite", database=str(path))


def _private_sqlite_file(parsed: URL) -> None:
    """Create a SQLite database file 0600 before SQLite does (it would use 0644 less the
    umask); its -wal and -shm files take the database file's mode. Existing files are
    made 0600 too."""
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    if parsed.query.get("uri") or parsed.query.get("mode"):
        return
    path = Path(database)
    with contextlib.suppress(FileExistsError, FileNotFoundError):  # no folder: SQLite says
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(FileNotFoundError):
            if name.stat().st_mode & 0o077:
                os.chmod(name, 0o600)


def make_engine(url: str | URL) -> Engine:
    """An engine for ``url``; SQLite gets WAL, full sync, foreign keys and a 0600 file."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        raise ConfigError(
            "BASTION_DATABASE_URL: expected a SQLAlchemy URL like"
            " postgresql+psycopg://host/db or sqlite:///path"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        _private_sqlite_file(parsed)
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise ConfigError(
            f"BASTION_DATABASE_URL: expected sqlite or postgresql, got {parsed.get_backend_name()}"
        )
    return create_engine(url, pool_pre_ping=True)


HEAD_REVISION = "0005"


def ensure_schema(engine: Engine) -> None:
    """Upgrade the schema if it is older than this code (cheap when it is current)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect() as conn:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        current = None
    if current != HEAD_REVISION:
        migrate(engine)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema up to ``revision`` with Alembic."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
