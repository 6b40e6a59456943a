"""Sealing what the home did not seal itself: row MACs and the access state, for a new
home's seeded rows and, once, for a home made by an earlier version.

A home made before the audit anchor, row MACs or the sealed access state is upgraded at its
first open (trust on first use, audited): an anchor for the audit log (security.anchor),
row MACs (security.rows), then the access state (security.access_state) —
:func:`upgrade`. ``Workspace.init`` seals the role permissions the first migration seeded
with :func:`seal_rows` and :func:`seal_access_state`. :func:`access_refusal` compares the
access rows with their sealed state, for the workspace to refuse all but ``verify`` on a
mismatch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.errors import IntegrityError
from bastion.security.access_state import STATE_FILE, refusal
from bastion.security.anchor import ANCHOR_FILE
from bastion.security.audit import adopt_anchor
from bastion.security.rows import seal_missing

if TYPE_CHECKING:
    from bastion.workspace import Workspace

__all__ = ["access_refusal", "seal_access_state", "seal_rows", "upgrade"]


def upgrade(ws: Workspace) -> None:
    """Bring a home made by an earlier version up to this one, each step once, audited."""
    keyring = ws.keyring
    if not keyring.audit_anchored:
        adopt_anchor(ws.engine, keyring, ws.home / ANCHOR_FILE, actor="bastion")
        keyring.mark_audit_anchored()
    if not keyring.rows_sealed:
        seal_rows(ws, "bastion")
        keyring.mark_rows_sealed()
    if not keyring.access_sealed:
        seal_access_state(ws, "bastion")
        keyring.mark_access_sealed()


def seal_rows(ws: Workspace, actor: str) -> dict[str, int]:
    """Give every metadata row without a MAC its MAC, audited as ``rows.sealed``.

    Only for rows this version did not write itself: the seeded role permissions at
    init, and every row of a home made before row MACs, at its first open.
    """
    with ws.engine.begin() as conn:
        counts = seal_missing(conn, ws.rows)
        if counts:
            ws.audit.record_in(conn, actor, "rows.sealed", "database", "ok", counts)
    return counts


def seal_access_state(ws: Workspace, actor: str) -> None:
    """Seal the access-control rows as they are (a new home, or the first open of one
    made before the access state), audited as ``access.sealed`` with the counts."""
    counts = ws.access_state.adopt(ws.engine)
    ws.audit.record(actor, "access.sealed", f"file:{STATE_FILE}", "ok", counts)


def access_refusal(ws: Workspace) -> tuple[str, list[str]] | None:
    """``(why, rows)`` when the access rows differ from their sealed state (or the state
    cannot be read); None when they agree."""
    try:
        problems = ws.access_state.check(ws.engine)
        why = refusal(problems) if problems else None
        rows = [p.subject for p in problems[:20]]
    except IntegrityError as exc:
        why, rows = f"refused: {exc}; only verify runs until it is restored", [STATE_FILE]
    return None if why is None else (why, rows)
