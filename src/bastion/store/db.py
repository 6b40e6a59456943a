"""The metadata database: every table Bastion keeps, in SQLAlchemy 2 Core.

SQLite (a file in the home) by default; PostgreSQL when ``BASTION_DATABASE_URL`` names one.
The schema is created and upgraded only by Alembic migrations (``store/migrations``); this
module is their single source of truth for table shapes, and :func:`migrate` runs them.

Timestamps are ISO-8601 UTC text so the audit log hashes the very bytes it stores.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from bastion.errors import ConfigError

__all__ = [
    "HEAD_REVISION",
    "artifacts",
    "audit_checkpoints",
    "audit_head",
    "audit_log",
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

metadata = MetaData()

artifacts = Table(
    "artifacts",
    metadata,
    Column("digest", String(64), primary_key=True),  # SHA-256 of the plaintext, hex
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("name", String(256), nullable=True),
    Column("created", String(40), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

statements = Table(
    "statements",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the envelope JSON
    Column("payload_type", String(128), nullable=False),
    Column("predicate_type", String(256), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("created", String(40), nullable=False),
)

statement_subjects = Table(
    "statement_subjects",
    metadata,
    Column("statement_id", String(64), ForeignKey("statements.id"), primary_key=True),
    Column("digest", String(64), primary_key=True),
    Index("ix_statement_subjects_digest", "digest"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", String(40), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(128), nullable=False),
    Column("resource", String(512), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("details", Text, nullable=False),  # canonical JSON
    Column("chain", LargeBinary(32), nullable=False),  # H(prev chain || leaf hash)
    # entries of one action in seq order (the model registry's history): migration 0004
    Index("ix_audit_log_action_seq", "action", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("seq", BigInteger, nullable=False),
    Column("chain", LargeBinary(32), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    Column("frontier", Text, nullable=False),  # JSON list of hex node hashes (RFC 6962 right edge)
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

principals = Table(
    "principals",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # person | service
    Column("created", String(40), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

role_permissions = Table(
    "role_permissions",
    metadata,
    Column("role", String(32), primary_key=True),
    Column("permission", String(64), primary_key=True),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)

grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("principal", String(128), ForeignKey("principals.name"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("resource_type", String(16), nullable=False),  # * | dataset | model | deployment
    Column("resource", String(256), nullable=False),  # * or a name
    Column("created", String(40), nullable=False),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
    UniqueConstraint("principal", "role", "resource_type", "resource", name="uq_grants"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),  # public lookup id, part of the token text
    Column("principal", String(128), ForeignKey("principals.name"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("resource_type", String(16), nullable=False),
    Column("resource", String(256), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),  # SHA-256 of the 256-bit secret
    Column("created", String(40), nullable=False),
    Column("expires", String(40), nullable=False),
    Column("revoked", String(40), nullable=True),
    Column("description", String(256), nullable=False, default=""),
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)


runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(64), nullable=False),
    Column("config_digest", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running | passed | failed | error
    Column("actor", String(128), nullable=False),
    Column("started", String(40), nullable=False),
    Column("finished", String(40), nullable=True),
    Column("record", Text, nullable=False),  # JSON: environment, seeds, stages, gates, model
)

stage_cache = Table(
    "stage_cache",
    metadata,
    Column("key", String(64), primary_key=True),  # SHA-256 of stage, version, config, inputs
    Column("stage", String(64), nullable=False),
    Column("outputs", Text, nullable=False),  # JSON {output name: digest}
    Column("statement_id", String(64), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("created", String(40), nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),  # the serialized model artifact
    Column("statement_id", String(64), nullable=False),  # the signed release statement
    Column("run_id", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # registered | production | archived
    Column("created", String(40), nullable=False),
    Column("record", Text, nullable=False),  # JSON: metrics, gates, card digests, estimator
    Column("mac", LargeBinary(32), nullable=True),  # HMAC of the row: security/rows.py
)


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


HEAD_REVISION = "0004"


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
