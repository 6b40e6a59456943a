"""Where the audit log lives: its SQL per dialect, and the plain reads of entries and head.

Tables (see :mod:`bastion.security.schema`): ``audit_log`` (one row per entry, with its chain
value), ``audit_head`` (one row, id = 1: last seq and last chain) and ``audit_checkpoints``
(signed tree heads with their frontier and a row MAC). Writes happen only in
:mod:`.chain`, inside the writer's transaction; :mod:`.verifier` reads everything in one
snapshot. The reads here return rows as stored: only :meth:`AuditLog.verify` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine.interfaces import DBAPICursor

from bastion.errors import ConfigError
from bastion.security.audit.checkpoint import Checkpoint, checkpoint_of
from bastion.security.audit.entry import ZERO, AuditEntry
from bastion.security.schema import audit_checkpoints, audit_log

__all__ = ["AuditStore", "Sql", "read_snapshot", "sql_for", "stamp"]

# -- SQL per dialect ------------------------------------------------------------------------
#
# Every statement is a literal; the only dialect differences are how the writer takes the
# head lock, how verify opens its snapshot, and the aggregate functions of the fast path.
# In that path NULLs (possible only in a table rebuilt without NOT NULL) become 0xff, a byte
# no valid UTF-8 entry contains, so they cannot hide in an aggregate; 0x1e separates entries.
# The snapshot reads (``all_heads``, ``all_checkpoints``, ``extent``) take no parameters.

_COMMON_SQL = {
    "ensure_head": "INSERT INTO audit_head (id, seq, chain) VALUES (1, 0, ?)"
    " ON CONFLICT (id) DO NOTHING",
    "update_head": "UPDATE audit_head SET seq = ?, chain = ? WHERE id = 1",
    "insert_entry": "INSERT INTO audit_log"
    " (seq, ts, actor, action, resource, outcome, details, chain)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "insert_checkpoint": "INSERT INTO audit_checkpoints"
    " (tree_size, root, ts, key_id, signature, frontier, mac) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "checkpoint_at": "SELECT tree_size, root, ts, key_id, signature, frontier"
    " FROM audit_checkpoints WHERE tree_size = ?",
    "latest_checkpoint_upto": "SELECT tree_size, root, ts, key_id, signature, frontier"
    " FROM audit_checkpoints WHERE tree_size <= ? ORDER BY tree_size DESC LIMIT 1",
    "chain_at": "SELECT chain FROM audit_log WHERE seq = ?",
    "count_checkpoints_upto": "SELECT count(*) FROM audit_checkpoints WHERE tree_size <= ?",
    "rows_after": "SELECT seq, ts, actor, action, resource, outcome, details, chain"
    " FROM audit_log WHERE seq > ? ORDER BY seq",
    "read_head": "SELECT seq, chain FROM audit_head WHERE id = 1",
    "all_heads": "SELECT id, seq, chain FROM audit_head",
    "all_checkpoints": "SELECT tree_size, root, ts, key_id, signature, frontier"
    " FROM audit_checkpoints ORDER BY tree_size",
    "extent": "SELECT count(*), min(seq), max(seq) FROM audit_log",
}

_SQLITE_SQL = {
    "begin_write": "BEGIN IMMEDIATE",
    "lock_head": "SELECT seq, chain FROM audit_head WHERE id = 1",
    "begin_snapshot": "BEGIN",
    "verify_rows": "SELECT seq, CAST(ts AS BLOB), CAST(actor AS BLOB), CAST(action AS BLOB),"
    " CAST(resource AS BLOB), CAST(outcome AS BLOB), CAST(details AS BLOB), chain"
    " FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    "verify_range": "SELECT group_concat(seq, ','),"
    " CAST(group_concat(coalesce(ts, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(actor, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(action, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(resource, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(outcome, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(coalesce(details, x'ff'), '\x1e') AS BLOB),"
    " CAST(group_concat(chain, '') AS BLOB), min(length(chain)), max(length(chain))"
    " FROM audit_log WHERE seq > ? AND seq <= ?",
}

_POSTGRES_SQL = {
    "begin_write": "",
    "lock_head": "SELECT seq, chain FROM audit_head WHERE id = 1 FOR UPDATE",
    "begin_snapshot": "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    "verify_rows": "SELECT seq, convert_to(ts, 'UTF8'), convert_to(actor, 'UTF8'),"
    " convert_to(action, 'UTF8'), convert_to(resource, 'UTF8'), convert_to(outcome, 'UTF8'),"
    " convert_to(details, 'UTF8'), chain FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
    "verify_range": "SELECT string_agg(seq::text, ',' ORDER BY seq),"
    " string_agg(coalesce(convert_to(ts, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(actor, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(action, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(resource, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(outcome, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(coalesce(convert_to(details, 'UTF8'), '\\xff'), '\\x1e' ORDER BY seq),"
    " string_agg(chain, '' ORDER BY seq), min(length(chain)), max(length(chain))"
    " FROM audit_log WHERE seq > ? AND seq <= ?",
}


@dataclass(frozen=True, slots=True)
class Sql:
    """The statements of one dialect, with its placeholder."""

    begin_write: str
    lock_head: str
    begin_snapshot: str
    verify_rows: str
    verify_range: str
    ensure_head: str
    update_head: str
    insert_entry: str
    insert_checkpoint: str
    checkpoint_at: str
    latest_checkpoint_upto: str
    chain_at: str
    count_checkpoints_upto: str
    rows_after: str
    read_head: str
    all_heads: str
    all_checkpoints: str
    extent: str


def sql_for(dialect: str) -> Sql:
    """The statements for ``dialect``; ConfigError for anything but SQLite and PostgreSQL."""
    if dialect == "sqlite":
        return Sql(**_SQLITE_SQL, **_COMMON_SQL)
    if dialect == "postgresql":  # psycopg's placeholder is %s
        return Sql(**{k: v.replace("?", "%s") for k, v in {**_POSTGRES_SQL, **_COMMON_SQL}.items()})
    raise ConfigError(f"audit log: expected a sqlite or postgresql engine, got {dialect}")


def stamp(when: datetime) -> str:
    """``when`` in the log's own timestamp form (``entry.now``), to compare ``ts`` as text;
    a naive datetime is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{when.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}+00:00"


def read_snapshot(
    cursor: DBAPICursor, sql: Sql
) -> tuple[list[Any], list[Any], tuple[int, Any, Any]]:
    """Head rows, checkpoint rows, and ``(count, min seq, max seq)`` of the entries.

    Run it inside the snapshot that verification opens (``sql.begin_snapshot``).
    """
    cursor.execute(sql.all_heads)
    heads = list(cursor.fetchall())
    cursor.execute(sql.all_checkpoints)
    stored = list(cursor.fetchall())
    cursor.execute(sql.extent)
    count, low, high = cursor.fetchone() or (0, None, None)
    return heads, stored, (int(count), low, high)


class AuditStore:
    """The log's database and its reads; :class:`AuditLog` adds the writer and verifier."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sql = sql_for(engine.dialect.name)

    def head(self) -> tuple[int, bytes]:
        """``(last seq, last chain value)`` as the head row says; ``(0, zeros)`` when empty."""
        with self._engine.connect() as conn:
            row = conn.exec_driver_sql(self._sql.read_head).first()
        return (0, ZERO) if row is None else (int(row[0]), bytes(row[1]))

    def entries(
        self,
        *,
        start: int | None = None,
        limit: int = 50,
        actor: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> list[AuditEntry]:
        """Up to ``limit`` entries, optionally filtered by actor, action and time
        (``since <= ts < until``). Oldest first from ``seq >= start`` (default 1); with
        ``newest_first``, newest first from ``seq <= start`` (default the last entry),
        read from the end of the log through the primary key, never the whole log."""
        if start is not None and (type(start) is not int or start < 0):
            raise ConfigError(f"start: expected a non-negative integer, got {start!r}")
        if type(limit) is not int or not 1 <= limit <= 10_000:
            raise ConfigError(f"limit: expected 1..10000, got {limit!r}")
        t = audit_log.c
        query = select(audit_log)
        if start is not None:
            query = query.where(t.seq <= start if newest_first else t.seq >= start)
        if actor is not None:
            query = query.where(t.actor == actor)
        if action is not None:
            query = query.where(t.action == action)
        if since is not None:  # ts is fixed-width ISO 8601 UTC: text order is time order
            query = query.where(t.ts >= stamp(since))
        if until is not None:
            query = query.where(t.ts < stamp(until))
        order = t.seq.desc() if newest_first else t.seq
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(order).limit(limit)).all()
        return [
            AuditEntry(
                int(r.seq),
                r.ts,
                r.actor,
                r.action,
                r.resource,
                r.outcome,
                r.details,
                bytes(r.chain),
            )
            for r in rows
        ]

    def checkpoints(self) -> list[Checkpoint]:
        """Every stored checkpoint, oldest first (as stored: :meth:`verify` checks them)."""
        return self._read_checkpoints(
            select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size)
        )

    def latest_checkpoint(self) -> Checkpoint | None:
        """The stored checkpoint with the largest tree size, if any."""
        found = self._read_checkpoints(
            select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size.desc()).limit(1)
        )
        return found[0] if found else None

    def _read_checkpoints(self, query: Any) -> list[Checkpoint]:
        with self._engine.connect() as conn:
            return [checkpoint_of(row) for row in conn.execute(query)]
