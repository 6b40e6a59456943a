"""The one chaining code path: chain new entries onto the locked head, sign, write.

How an append works: every writer takes the head row's lock inside its transaction
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``SELECT ... FOR UPDATE``), reads the head,
chains the new entries onto it, folds their leaf hashes into the Merkle frontier, signs a
checkpoint at every multiple of ``checkpoint_every`` crossed, and writes rows, head and
checkpoints in that one transaction. So several threads and processes append safely, and
a batch is either wholly visible or not at all. The frontier is cached in memory and used
only while the head still matches the cache; otherwise (another process appended, or a
caller rolled back a :meth:`AuditLog.record_in`) it is rebuilt from the last checkpoint's
stored frontier plus the rows after it, checking their chain on the way.

With an anchor (:mod:`bastion.security.anchor`) the writer also checks, before it appends
to or signs a log it did not just write, that the log still extends the sealed tree head.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import DBAPICursor

from bastion.errors import AuditError, ConfigError, Error, IntegrityError
from bastion.security.anchor import ANCHOR_FILE, Anchor, AnchorKeeper
from bastion.security.audit.checkpoint import Checkpoint, checkpoint_of
from bastion.security.audit.entry import (
    ZERO,
    Item,
    chain_hash,
    chain_hashes,
    leaf_hash,
    now,
)
from bastion.security.audit.storage import AuditStore
from bastion.security.keys import KeyProvider
from bastion.security.merkle import Frontier
from bastion.security.rows import RowMac

__all__ = ["ChainWriter", "Seal", "State"]

Seal = tuple[int, bytes, int]  # an anchor to write: tree size, root, checkpoints up to it
_Signed = tuple[Checkpoint, str]  # a checkpoint and its frontier as stored (JSON)


@dataclass(frozen=True, slots=True)
class State:
    """The head as this process last wrote or rebuilt it; trusted only while it matches."""

    seq: int
    chain: bytes
    frontier: Frontier


def _refuse(head_seq: int) -> AuditError:
    return AuditError(
        f"the audit log does not match its head (seq {head_seq}); refusing to append:"
        " run `bastion audit verify`"
    )


def _refuse_anchor(path: Path) -> AuditError:
    return AuditError(
        f"the audit log does not extend its anchor ({path.name}): entries or checkpoints were"
        " removed or rewritten, or the anchor was; refusing to append or sign:"
        " run `bastion audit verify`"
    )


class ChainWriter(AuditStore):
    """The chaining, signing and anchor checks shared by the writer thread and ``record_in``."""

    def __init__(
        self, engine: Engine, keys: KeyProvider, checkpoint_every: int, anchor: Path | None
    ) -> None:
        if type(checkpoint_every) is not int or checkpoint_every < 1:
            raise ConfigError(
                f"checkpoint_every: expected a positive integer, got {checkpoint_every!r}"
            )
        super().__init__(engine)
        self._keys = keys
        self._rows = RowMac.of(keys)  # checkpoint rows carry a MAC too (security.rows)
        self._every = checkpoint_every
        self._state: State | None = None
        self._anchor = AnchorKeeper(anchor, keys) if anchor is not None else None

    def init_anchor(self) -> None:
        """Seal the anchor of the empty log: a new home does this before its first entry.

        From then on the anchor must exist: the writer never makes a missing one again (that
        would bless whatever the database holds), and verification reports it missing.
        Raises ConfigError without an anchor path, when the log is not empty, or when the
        file exists.
        """
        if self._anchor is None:
            raise ConfigError("init_anchor: this audit log was opened without an anchor file")
        if self.head()[0] != 0:
            raise ConfigError("init_anchor: the audit log is not empty")
        self._anchor.create()

    def _seal_head(self) -> None:
        """Anchor what this process appended since the newest anchor (best effort: a close
        that cannot write the file leaves the older anchor, and a wider window)."""
        state, keeper = self._state, self._anchor
        if keeper is None or state is None or state.seq <= keeper.size:
            return
        with contextlib.suppress(Exception):
            with self._engine.connect() as conn:
                at = conn.exec_driver_sql(self._sql.chain_at, (state.seq,)).first()
                if at is None or bytes(at[0]) != state.chain:
                    return  # a record_in that rolled back, or rows changed meanwhile
                count = conn.exec_driver_sql(self._sql.count_checkpoints_upto, (state.seq,))
                held = int(count.scalar_one())
            keeper.seal(state.seq, state.frontier.root(), held)

    def _append(
        self,
        cursor: DBAPICursor,
        items: Sequence[Item],
        *,
        want_checkpoint: bool,
        write_locked: bool,
    ) -> tuple[range, State, Checkpoint | None, Checkpoint | None]:
        """Chain ``items`` onto the locked head and write them, all in the open transaction.

        Returns the seqs, the new state, the checkpoint at the head (if one was asked for or
        signed there) and the newest checkpoint this batch signed or asked for.
        """
        sql = self._sql
        first, chain = self._lock_head(cursor, write_locked=write_locked)
        state = self._state
        fresh = want_checkpoint and self._anchor is not None  # re-check against the anchor
        if state is not None and state.seq == first and state.chain == chain and not fresh:
            frontier = state.frontier.copy()
        else:
            frontier = self._rebuild(cursor, first, chain)
        seqs = range(first + 1, first + 1 + len(items))
        leaves = [leaf_hash(seq, *item) for seq, item in zip(seqs, items, strict=True)]
        chains = chain_hashes(chain, leaves)
        seq = seqs[-1] if items else first
        signed = self._fold(frontier, leaves)
        checkpoint = signed[-1][0] if signed and signed[-1][0].tree_size == seq else None
        if want_checkpoint and checkpoint is None:
            checkpoint = self._checkpoint_at_head(cursor, seq, frontier, signed)
        if items:
            chain = chains[-1]
            rows = [(n, *item, c) for n, item, c in zip(seqs, items, chains, strict=True)]
            cursor.executemany(sql.insert_entry, rows)
            cursor.execute(sql.update_head, (seq, chain))
        if signed:
            cursor.executemany(
                sql.insert_checkpoint,
                [
                    (
                        c.tree_size,
                        c.root,
                        c.ts,
                        c.key_id,
                        c.signature,
                        nodes,
                        self._sealed(c, nodes),
                    )
                    for c, nodes in signed
                ],
            )
        newest = checkpoint or (signed[-1][0] if signed else None)
        return seqs, State(seq, chain, frontier), checkpoint, newest

    def _checkpoint_at_head(
        self, cursor: DBAPICursor, seq: int, frontier: Frontier, signed: list[_Signed]
    ) -> Checkpoint:
        """The stored checkpoint at ``seq`` (the head), or a new one appended to ``signed``."""
        if seq == 0:
            raise ConfigError("the audit log is empty: there is nothing to checkpoint")
        cursor.execute(self._sql.checkpoint_at, (seq,))
        existing = cursor.fetchone()
        if existing is not None:
            return checkpoint_of(existing)
        signed.append(self._sign(frontier))
        return signed[-1][0]

    def _lock_head(self, cursor: DBAPICursor, *, write_locked: bool) -> tuple[int, bytes]:
        """Lock and read the head row, creating it in an empty log.

        The no-op insert also takes SQLite's write lock at once, for a caller's transaction
        that began deferred; the writer's ``BEGIN IMMEDIATE`` already holds it.
        """
        sql = self._sql
        if self._state is None or not write_locked:
            cursor.execute(sql.ensure_head, (ZERO,))
        cursor.execute(sql.lock_head)
        head = cursor.fetchone()
        if head is None:
            cursor.execute(sql.ensure_head, (ZERO,))
            cursor.execute(sql.lock_head)
            head = cursor.fetchone()
        if head is None:
            raise AuditError("the audit head row cannot be created")
        return int(head[0]), bytes(head[1])

    def _fold(self, frontier: Frontier, leaves: list[bytes]) -> list[_Signed]:
        """Add leaves to the frontier, signing a checkpoint at each multiple of the interval."""
        signed: list[_Signed] = []
        start, every = 0, self._every
        while (take := every - frontier.size % every) <= len(leaves) - start:
            frontier.extend(leaves[start : start + take])
            start += take
            signed.append(self._sign(frontier))
        frontier.extend(leaves[start:] if start else leaves)
        return signed

    def _sealed(self, checkpoint: Checkpoint, frontier: str) -> bytes:
        """The row MAC of a checkpoint row as stored."""
        c = checkpoint
        row = {"tree_size": c.tree_size, "root": c.root, "ts": c.ts, "key_id": c.key_id}
        return self._rows.mac(
            "audit_checkpoints", dict(row, signature=c.signature, frontier=frontier)
        )

    def _sign(self, frontier: Frontier) -> _Signed:
        key_id = self._keys.active_signing_key()
        draft = Checkpoint(frontier.size, frontier.root(), now(), key_id, b"")
        signature = self._keys.sign(key_id, draft.message())
        checkpoint = Checkpoint(draft.tree_size, draft.root, draft.ts, key_id, signature)
        return checkpoint, json.dumps(frontier.to_hex(), separators=(",", ":"))

    def _rebuild(self, cursor: DBAPICursor, head_seq: int, head_chain: bytes) -> Frontier:
        """The frontier at the head: the newest checkpoint's, plus the rows after it.

        With an anchor the log must also extend it: hold at least its entries, and if the
        newest checkpoint lies before it (checkpoints deleted), the rows replayed from there
        must reach its root. A checkpoint at or after the anchor is signed, so it is the
        writer's own and needs no more. Otherwise the writer refuses to append or sign.
        """
        sql = self._sql
        anchor: Anchor | None = None
        where = Path(ANCHOR_FILE)
        if self._anchor is not None:
            where = self._anchor.path
            try:
                anchor = self._anchor.load()
            except Error:
                raise _refuse_anchor(where) from None
            if anchor.tree_size > head_seq:
                raise _refuse_anchor(where)
        cursor.execute(sql.latest_checkpoint_upto, (head_seq,))
        row = cursor.fetchone()
        frontier, prev = Frontier(), ZERO
        if row is not None:
            checkpoint = checkpoint_of(row)
            try:
                checkpoint.verify(self._keys)
                frontier = Frontier.from_hex(checkpoint.tree_size, json.loads(row[5]))
            except (IntegrityError, ConfigError, ValueError, TypeError):
                raise _refuse(head_seq) from None
            cursor.execute(sql.chain_at, (checkpoint.tree_size,))
            at = cursor.fetchone()
            if frontier.root() != checkpoint.root or at is None:
                raise _refuse(head_seq)
            prev = bytes(at[0])
        check_at, anchored = -1, b""
        if anchor is not None and anchor.tree_size >= frontier.size:
            check_at, anchored = anchor.tree_size, anchor.root
            if check_at == frontier.size and frontier.root() != anchored:
                raise _refuse_anchor(where)
        cursor.execute(sql.rows_after, (frontier.size,))
        expected = frontier.size + 1
        while rows := cursor.fetchmany(4096):
            for seq, ts, actor, action, resource, outcome, details, chain in rows:
                leaf = leaf_hash(seq, ts, actor, action, resource, outcome, details)
                prev = chain_hash(prev, leaf)
                if seq != expected or prev != bytes(chain):
                    raise _refuse(head_seq)
                frontier.append(leaf)
                expected += 1
                if expected - 1 == check_at and frontier.root() != anchored:
                    raise _refuse_anchor(where)
        if expected - 1 != head_seq or prev != head_chain:
            raise _refuse(head_seq)
        return frontier
