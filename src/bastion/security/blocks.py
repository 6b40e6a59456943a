"""Blocks: principals a detector shut out of the server, until an admin lifts the block.

When the server's extraction monitor blocks a principal, :meth:`BlockStore.block` writes
one row of the ``blocks`` table (migration 0005) and its audit entry ``serve.block`` in ONE
transaction: the block's random id (the support reference the client is given), the
principal, a stable reason :data:`CODES` (the client sees the code, never the detector's
statistic or threshold), when, by which detector, and the admins' detail (canonical JSON:
detector, statistic, queries, deployment). :meth:`BlockStore.lift` marks it lifted (when,
by whom, why) with its audit entry ``serve.unblock``, again in one transaction.

Every row carries a MAC (:mod:`bastion.security.rows`) and is checked before it is
believed. A row that does not check is never read as lifted: :meth:`BlockStore.enforced`
keeps enforcing a block whose row was edited to look lifted (or forged outright), and
reports the row once as ``row.refused``; :meth:`BlockStore.lift` refuses to lift (and so to
launder) a row that does not check; listing one raises :class:`~bastion.errors.ForgedRow`.
A deleted row is what a MAC cannot see, but its ``serve.block`` audit entry stays in the
log: :meth:`BlockStore.enforced` keeps enforcing a block the log records and no
``serve.unblock`` lifted even when its row is gone (audited once as ``row.missing``), and
:meth:`BlockStore.missing` lists such blocks for ``bastion verify``.

:class:`Blocks` is the public face (``ws.blocks``): ``list`` and ``lift``, each authorized
with the ``serve:admin`` permission (only the ``admin`` role holds it).
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa

from bastion._canonical import canonical_json
from bastion.errors import ConfigError, NotFound, StateError
from bastion.security.rows import RowMac
from bastion.security.schema import audit_log, blocks
from bastion.security.sink import AuditSink

__all__ = [
    "CODES",
    "EXTRACTION_SUSPECTED",
    "PERMISSION",
    "Block",
    "BlockStore",
    "Blocks",
    "check_block_id",
]

EXTRACTION_SUSPECTED: Final = "EXTRACTION_SUSPECTED"
CODES: Final[Mapping[str, str]] = {
    EXTRACTION_SUSPECTED: "queries that look like model extraction",
}
"""Stable reason codes a blocked client is given, and what each means."""
PERMISSION: Final = "serve:admin"
"""Who may list and lift blocks (the admin role holds it; no other seeded role does)."""

_ID = re.compile(r"[0-9a-f]{16}")
_MAX_REASON = 500


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Block:
    """One block, as its row says once its MAC checked."""

    id: str
    principal: str
    code: str
    created: str
    created_by: str
    detail: dict[str, Any]
    lifted: str | None = None
    lifted_by: str | None = None
    lift_reason: str | None = None

    @property
    def active(self) -> bool:
        """Still enforced: no admin lifted it."""
        return self.lifted is None

    def as_dict(self) -> dict[str, Any]:
        """The block as JSON values (for ``--json`` and the admins)."""
        return {
            "id": self.id,
            "principal": self.principal,
            "code": self.code,
            "active": self.active,
            "created": self.created,
            "created_by": self.created_by,
            "detail": self.detail,
            "lifted": self.lifted,
            "lifted_by": self.lifted_by,
            "lift_reason": self.lift_reason,
        }


def _block(row: Mapping[Any, Any]) -> Block:
    try:
        detail = json.loads(row["detail"])
    except ValueError:
        detail = {}
    return Block(
        row["id"],
        row["principal"],
        row["code"],
        row["created"],
        row["created_by"],
        detail if isinstance(detail, dict) else {},
        row["lifted"],
        row["lifted_by"],
        row["lift_reason"],
    )


def check_block_id(block_id: object) -> str:
    """``block_id`` if it has the form of one (16 hex digits); ConfigError naming it."""
    if not isinstance(block_id, str) or not _ID.fullmatch(block_id):
        shown = repr(block_id)[:40]
        raise ConfigError(f"block id: expected 16 lowercase hex digits, got {shown}")
    return block_id


class BlockStore:
    """The ``blocks`` table, every row MAC'd; the library's internal service (no
    permission checks: the server blocks, :class:`Blocks` lifts for an admin)."""

    def __init__(self, engine: sa.Engine, audit: AuditSink, rows: RowMac) -> None:
        self._engine = engine
        self._audit = audit
        self._rows = rows
        self._reported: set[str] = set()
        self._lock = threading.Lock()

    def block(self, principal: str, code: str, detail: Mapping[str, Any], *, actor: str) -> Block:
        """Block ``principal`` (or return its block that is already active), audited
        ``serve.block`` in the same transaction."""
        if code not in CODES:
            raise ConfigError(f"code: expected one of {', '.join(CODES)}, got {code!r}")
        with self._lock, self._engine.begin() as conn:
            for row in conn.execute(
                sa.select(blocks).where(blocks.c.principal == principal, blocks.c.lifted.is_(None))
            ):
                if self._rows.bad("blocks", row._mapping) is None:
                    return _block(row._mapping)
            values = {
                "id": secrets.token_hex(8),
                "principal": principal,
                "code": code,
                "created": _now(),
                "created_by": actor,
                "detail": canonical_json(dict(detail)).decode(),
                "lifted": None,
                "lifted_by": None,
                "lift_reason": None,
            }
            conn.execute(sa.insert(blocks).values(**self._rows.sealed("blocks", values)))
            self._audit.record_in(
                conn,
                actor,
                "serve.block",
                f"principal:{principal}",
                "denied",
                {"block": values["id"], "code": code, **detail},
            )
        return _block(values)

    def get(self, block_id: str) -> Block:
        """One block; NotFound for an unknown id, ForgedRow for a row that does not check."""
        check_block_id(block_id)
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(blocks).where(blocks.c.id == block_id)).first()
        if row is None:
            raise NotFound(f"block {block_id}: no such block")
        self._rows.check("blocks", row._mapping)
        return _block(row._mapping)

    def list(self, *, active_only: bool = True) -> builtins.list[Block]:
        """Blocks oldest first (only the active ones unless ``active_only`` is false);
        ForgedRow naming the first row that does not check."""
        query = sa.select(blocks).order_by(blocks.c.created, blocks.c.id)
        if active_only:
            query = query.where(blocks.c.lifted.is_(None))
        with self._engine.connect() as conn:
            found = [row._mapping for row in conn.execute(query)]
        for row in found:
            self._rows.check("blocks", row)
        return [_block(row) for row in found]

    def _audited(self, conn: sa.Connection) -> dict[str, Block]:
        """Block id → the block its ``serve.block`` audit entry records (lifted when a
        ``serve.unblock`` entry names it)."""
        t = audit_log.c
        query = (
            sa.select(t.action, t.ts, t.actor, t.resource, t.details)
            .where(t.action.in_(("serve.block", "serve.unblock")))
            .order_by(t.action, t.seq)
        )
        out: dict[str, Block] = {}
        for action, ts, actor, resource, details in conn.execute(query):
            try:
                doc = json.loads(details)
            except ValueError:
                continue
            if action == "serve.block" and isinstance(doc, dict) and "block" in doc:
                principal = str(resource).removeprefix("principal:")
                code = str(doc.get("code", EXTRACTION_SUSPECTED))
                out[str(doc["block"])] = Block(str(doc["block"]), principal, code, ts, actor, {})
            elif action == "serve.unblock" and str(resource).removeprefix("block:") in out:
                blk = out[str(resource).removeprefix("block:")]
                out[blk.id] = Block(
                    blk.id, blk.principal, blk.code, blk.created, blk.created_by, {}, ts, actor
                )
        return out

    def missing(self) -> builtins.list[Block]:
        """Blocks the audit log records whose row is gone (deleted outside Bastion)."""
        with self._engine.connect() as conn:
            audited = self._audited(conn)
            present = set(conn.execute(sa.select(blocks.c.id)).scalars())
        return [b for i, b in audited.items() if i not in present]

    def enforced(self) -> dict[str, Block]:
        """Principal → its active block, as the server enforces them.

        Fail closed: a row whose MAC does not check counts as active whatever it says
        (a block edited to look lifted stays in force) and is audited once as
        ``row.refused``; a block the audit log records, never lifted, whose row is gone
        stays in force too (audited once as ``row.missing``).
        """
        with self._engine.connect() as conn:
            found = [row._mapping for row in conn.execute(sa.select(blocks))]
            audited = self._audited(conn)
        active: dict[str, Block] = {}
        present = {row["id"] for row in found}
        for blk in audited.values():
            if blk.active and blk.id not in present:
                self._refused(f"id={blk.id}", "enforce", action="row.missing")
                active.setdefault(blk.principal, blk)
        for row in found:
            bad = self._rows.bad("blocks", row)
            if bad is not None:
                self._refused(bad.key, "enforce")
                blk = _block({**row, "lifted": None, "lifted_by": None, "lift_reason": None})
            else:
                blk = _block(row)
            if blk.active and isinstance(blk.principal, str):
                active.setdefault(blk.principal, blk)
        return active

    def lifted(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` name a genuinely lifted block (rows that check only)."""
        wanted = [i for i in ids if isinstance(i, str) and _ID.fullmatch(i)]
        if not wanted:
            return set()
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(blocks).where(blocks.c.id.in_(wanted), blocks.c.lifted.is_not(None))
            )
            return {r.id for r in found if self._rows.bad("blocks", r._mapping) is None}

    def lift(self, block_id: str, *, reason: str, actor: str) -> Block:
        """Lift an active block, audited ``serve.unblock`` in the same transaction.

        ConfigError for an empty or overlong reason, NotFound for an unknown id,
        StateError for a block already lifted, ForgedRow for a row that does not check.
        """
        check_block_id(block_id)
        reason = reason.strip() if isinstance(reason, str) else ""
        if not reason or len(reason) > _MAX_REASON or not reason.isprintable():
            raise ConfigError(
                f"reason: expected 1 to {_MAX_REASON} printable characters saying why"
            )
        with self._lock, self._engine.begin() as conn:
            row = conn.execute(sa.select(blocks).where(blocks.c.id == block_id)).first()
            if row is None:
                raise NotFound(f"block {block_id}: no such block")
            bad = self._rows.bad("blocks", row._mapping)
            if bad is not None:
                self._refused(bad.key, "lift")
                raise bad.error()
            if row.lifted is not None:
                raise StateError(f"block {block_id}: already lifted on {row.lifted}")
            values = {**row._mapping, "lifted": _now(), "lifted_by": actor, "lift_reason": reason}
            values.pop("mac", None)
            conn.execute(
                sa.update(blocks)
                .where(blocks.c.id == block_id, blocks.c.lifted.is_(None))
                .values(**self._rows.sealed("blocks", values))
            )
            self._audit.record_in(
                conn,
                actor,
                "serve.unblock",
                f"block:{block_id}",
                "ok",
                {"principal": row.principal, "code": row.code, "reason": reason},
            )
        return _block(values)

    def _refused(self, key: str, use: str, *, action: str = "row.refused") -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        self._audit.record(
            "bastion",
            action,
            f"blocks:{key}",
            "denied",
            {"table": "blocks", "row": key, "use": use},
        )


class Blocks:
    """``ws.blocks``: list and lift blocks, each authorized with ``serve:admin``."""

    def __init__(self, store: BlockStore, authorize: Callable[[str], Any]) -> None:
        self._store = store
        self._authorize = authorize

    def list(self, *, active_only: bool = True) -> builtins.list[Block]:
        """Blocks oldest first; only the active ones unless ``active_only`` is false."""
        self._authorize(PERMISSION)
        return self._store.list(active_only=active_only)

    def get(self, block_id: str) -> Block:
        """One block by its id (the reference a blocked client quotes)."""
        self._authorize(PERMISSION)
        return self._store.get(block_id)

    def lift(self, block_id: str, *, reason: str) -> Block:
        """Lift a block; a running server lets the principal in again within seconds."""
        who = self._authorize(PERMISSION).principal
        return self._store.lift(block_id, reason=reason, actor=who)
