"""Adopting an anchor for a home made before anchors existed (trust on first use, once).

:mod:`bastion.security.anchor` tells the story; this lives with the log because it appends
and checkpoints through :class:`AuditLog` (so the anchor module imports no audit code).
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from bastion.security.anchor import Anchor, AnchorKeeper
from bastion.security.audit.writer import AuditLog
from bastion.security.keys import KeyProvider
from bastion.security.schema import audit_checkpoints

__all__ = ["adopt_anchor"]


def adopt_anchor(engine: sa.Engine, keys: KeyProvider, path: Path, *, actor: str) -> Anchor | None:
    """Give a home made before anchors its anchor (see :mod:`bastion.security.anchor`); None if the
    file already exists.

    Appends ``audit.anchored`` through a log opened without an anchor (as the previous
    version kept it), signs a checkpoint at the head, which re-checks the rows' chain from
    the newest stored checkpoint (AuditError if they do not chain), and seals that head.
    """
    if path.exists():
        return None
    log = AuditLog(engine, keys)
    try:
        found = log.head()[0]
        log.record(actor, "audit.anchored", f"file:{path.name}", "ok", {"entries": found})
        head = log.checkpoint()
    finally:
        log.close()
    count = sa.select(sa.func.count()).where(audit_checkpoints.c.tree_size <= head.tree_size)
    with engine.connect() as conn:
        held = int(conn.execute(count).scalar_one())
    return AnchorKeeper(path, keys).seal(head.tree_size, head.root, held)
