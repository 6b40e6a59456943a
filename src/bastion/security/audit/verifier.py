"""Verification of the whole log: chain, checkpoints, an exported checkpoint, the anchor, head.

:meth:`AuditLog.verify` recomputes everything, in this order, from one database snapshot:
the chain of every entry (:mod:`.walk`), the Merkle root at every stored checkpoint and
that checkpoint's signature, optionally an exported checkpoint kept elsewhere (truncation
and fork detection), the sealed anchor, and the head row. Checkpoints are trusted only
through public keys from the :class:`~bastion.security.keys.KeyProvider`: an exported file
never carries its own trust.

The leaf hashes covered by a checkpoint are protected by its signature, but an attacker
with write access to the database can delete checkpoint rows and recompute the chain and
head. So a log opened with an ``anchor`` (every workspace's is) also keeps its newest tree
head sealed in a file outside the database (:mod:`bastion.security.anchor`): updated after
every commit that signs a checkpoint and on :meth:`AuditLog.close`, required by
:meth:`AuditLog.verify` (deleted checkpoints, truncation and a rewritten history up to it
fail with no exported checkpoint), and checked by the writer before it appends to or signs
a log it did not just write. What remains: entries after the newest anchor (fewer than
``checkpoint_every`` of a running process, or those of one that died unclosed), and
everything after an older genuine anchor file put back in its place. Only checkpoints
exported to where that attacker cannot write bound the second; see
``docs/formats/checkpoint.md``, "What remains".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from bastion.errors import AuditChainError, IntegrityError, SignatureError, UnknownKeyError
from bastion.security.anchor import Anchor, AnchorKeeper
from bastion.security.audit.checkpoint import Checkpoint, checkpoint_of, read_checkpoint
from bastion.security.audit.storage import Sql, read_snapshot
from bastion.security.audit.walk import AuditProblem, Scan, Walk
from bastion.security.keys import KeyProvider

__all__ = ["VerifyReport", "verify_log"]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :meth:`AuditLog.verify` checked when everything held."""

    entries: int
    checkpoints: int
    last_seq: int
    root: str
    exported_tree_size: int | None = None
    anchored_tree_size: int | None = None  # the sealed anchor's tree size, if the log has one


def verify_log(
    engine: Engine,
    sql: Sql,
    keys: KeyProvider,
    keeper: AnchorKeeper | None,
    checkpoint: Path | None,
    progress: Callable[[int, int], None] | None,
) -> VerifyReport:
    """:meth:`AuditLog.verify` of the log in ``engine``; AuditChainError lists the problems."""
    exported, problems = _load_exported(checkpoint, keys)
    anchor = None  # read before the snapshot: the file never runs ahead of the rows
    if keeper is not None:
        anchor, found = _load_anchor(keeper)
        problems += found
    cuts = [c.tree_size for c in (exported, anchor) if c is not None]
    try:
        scan, stored, heads = _scan(engine, sql, cuts, progress)
    except engine.dialect.loaded_dbapi.Error as exc:
        problems.append(AuditProblem("unreadable", None, f"cannot read the audit log: {exc}"))
        raise _chain_error(problems) from exc
    problems += scan.problems
    problems += _check_checkpoints(scan, stored, keys)
    problems += _check_exported(scan, exported)
    problems += _check_anchor(scan, stored, anchor)
    problems += _check_head(scan, heads)
    if problems:
        raise _chain_error(problems)
    return VerifyReport(
        scan.rows,
        len(stored),
        scan.last_seq,
        scan.frontier.root().hex(),
        exported.tree_size if exported else None,
        anchor.tree_size if anchor else None,
    )


def _scan(
    engine: Engine,
    sql: Sql,
    extra_cuts: Sequence[int],
    progress: Callable[[int, int], None] | None,
) -> tuple[Scan, list[Any], list[Any]]:
    """Read everything in one snapshot and walk the entries."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(sql.begin_snapshot)
        heads, stored, (count, low, high) = read_snapshot(cursor, sql)
        cuts = [row[0] for row in stored] + list(extra_cuts)
        walk = Walk(cursor, sql, cuts, count, progress)
        reader = raw.cursor()
        walk.run(low, high, reader)
        reader.close()
        cursor.close()
    finally:
        raw.rollback()
        raw.close()
    return walk.result(), stored, heads


def _chain_error(problems: list[AuditProblem]) -> AuditChainError:
    return AuditChainError(
        f"the audit log failed verification: {len(problems)} problem(s), first:"
        f" {problems[0].message}",
        problems,
    )


def _load_exported(
    path: Path | None, keys: KeyProvider
) -> tuple[Checkpoint | None, list[AuditProblem]]:
    """The exported checkpoint if its signature holds, else the problem with it."""
    if path is None:
        return None, []
    try:
        return read_checkpoint(path, keys), []
    except UnknownKeyError:
        why = "export-key", f"{path}: signed by a key that is not in the keyring"
    except IntegrityError:
        why = "export-signature", f"{path}: the signature does not verify"
    return None, [AuditProblem(why[0], None, why[1])]


def _check_checkpoints(
    scan: Scan, stored: Sequence[Sequence[Any]], keys: KeyProvider
) -> list[AuditProblem]:
    """Each stored checkpoint: signed by a keyring key, and its root is the log's root."""
    problems: list[AuditProblem] = []
    good = 0  # the largest tree size whose signed root matched: edits lie after it
    for row in stored:
        try:
            checkpoint, nodes = checkpoint_of(row), json.loads(row[5])
        except (TypeError, ValueError):
            problems.append(AuditProblem("checkpoint-malformed", None, f"checkpoint {row[0]!r}"))
            continue
        size, signed = checkpoint.tree_size, False
        try:
            checkpoint.verify(keys)
            signed = True
        except UnknownKeyError:
            why = f"is signed by key {checkpoint.key_id!r}, which is not in the keyring"
            problems.append(AuditProblem("checkpoint-key", size, f"checkpoint {size} {why}"))
        except IntegrityError:
            why = "has a signature that does not verify"
            problems.append(AuditProblem("checkpoint-signature", size, f"checkpoint {size} {why}"))
        found = scan.roots.get(size)
        if size > scan.rows:
            why = f"covers more entries than the log holds ({scan.rows}): entries were removed"
            problems.append(AuditProblem("truncated", size, f"checkpoint {size} {why}"))
        elif found is None:
            problems.append(AuditProblem("checkpoint-malformed", size, f"checkpoint {size}"))
        elif found[0] != checkpoint.root:
            why = f"were changed after checkpoint {size} was signed (its Merkle root differs)"
            problems.append(
                AuditProblem("checkpoint-root", size, f"entries {good + 1}..{size} {why}")
            )
        elif nodes != found[1]:
            why = "has a stored frontier that does not match the entries"
            problems.append(AuditProblem("checkpoint-frontier", size, f"checkpoint {size} {why}"))
        elif signed:
            good = size
    return problems


def _check_exported(scan: Scan, exported: Checkpoint | None) -> list[AuditProblem]:
    """An exported checkpoint: the log still holds its entries (truncation) and its root (fork)."""
    if exported is None:
        return []
    size = exported.tree_size
    if size > scan.rows:
        why = f"covers {size} entries but the log holds {scan.rows}: entries were removed"
        return [AuditProblem("truncated", size, f"the exported checkpoint {why}")]
    if scan.roots[size][0] != exported.root:
        why = "differ from the exported checkpoint: the history was rewritten (forked)"
        return [AuditProblem("fork", size, f"entries 1..{size} {why}")]
    return []


def _load_anchor(keeper: AnchorKeeper) -> tuple[Anchor | None, list[AuditProblem]]:
    """The sealed anchor if its signature holds, else the problem with it."""
    try:
        return keeper.load(), []
    except UnknownKeyError:
        why = "anchor-key", f"{keeper.path}: signed by a key that is not in the keyring"
    except SignatureError:
        why = "anchor-signature", f"{keeper.path}: the signature does not verify (edited)"
    except IntegrityError as exc:
        why = "anchor", str(exc)
    return None, [AuditProblem(why[0], None, why[1])]


def _check_anchor(
    scan: Scan, stored: Sequence[Sequence[Any]], anchor: Anchor | None
) -> list[AuditProblem]:
    """The log extends the sealed anchor: its entries, its root, its checkpoint rows."""
    if anchor is None:
        return []
    size, problems = anchor.tree_size, []
    found = scan.roots.get(size)
    if size > scan.rows or (size and found is None):
        why = f"covers {size} entries but the log holds {scan.rows}: entries were removed"
        problems.append(AuditProblem("truncated", size, f"the anchor {why}"))
    elif size and found is not None and found[0] != anchor.root:
        why = "differ from the anchor's signed tree head: the history was rewritten"
        problems.append(AuditProblem("fork", size, f"entries 1..{size} {why}"))
    held = sum(1 for row in stored if isinstance(row[0], int) and row[0] <= size)
    if held < anchor.checkpoints:
        why = (
            f"{anchor.checkpoints - held} of the {anchor.checkpoints} checkpoints signed up to"
            f" entry {size} are missing: checkpoint rows were deleted"
        )
        problems.append(AuditProblem("checkpoint-deleted", size, why))
    return problems


def _check_head(scan: Scan, heads: Sequence[Sequence[Any]]) -> list[AuditProblem]:
    """The head row names the last entry and its chain value."""
    problems = [
        AuditProblem("head", None, f"unexpected head row id {row[0]!r}")
        for row in heads
        if row[0] != 1
    ]
    head = next((row for row in heads if row[0] == 1), None)
    if head is None:
        if scan.rows:
            problems.append(AuditProblem("head", None, "the head row is missing"))
        return problems
    seq, chain = head[1], bytes(head[2])
    if seq != scan.last_seq:
        why = f"says the log ends at {seq} but it ends at {scan.last_seq}"
        problems.append(AuditProblem("head", seq, f"the head {why}: entries were removed or added"))
    elif chain != scan.last_chain:
        why = f"chain value does not match the last entry ({seq})"
        problems.append(AuditProblem("head", seq, f"the head's {why}"))
    return problems
