"""The one thing every service needs from the audit log: record an action, durably, or fail.

Services take an :class:`AuditSink` rather than the concrete log so that the dependency
points one way (services → sink) and so that tests can hand them the real log of a
temporary home.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sqlalchemy import Connection

__all__ = ["AuditSink"]


class AuditSink(Protocol):
    """Where services record what they did."""

    def record(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one entry and return its sequence number once it is durable.

        Raises :class:`bastion.errors.AuditError` when the entry cannot be written; the
        caller must then undo or refuse the action it was recording (fail closed).
        """
        ...

    def record_in(
        self,
        conn: Connection,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one entry inside the caller's open transaction on ``conn``: the entry
        and the caller's change commit together or not at all."""
        ...
