"""How access control keeps its tables: a row is believed only once its MAC checks, and every
write goes in with its audit entry, under the access state, its rows sealed.

Reads: :meth:`AccessStore.principal_row` checks the principal's row before it is used; a row
that fails its MAC where a decision needed it is refused with
:class:`~bastion.errors.ForgedCredential` and audited as ``row.refused`` naming the row
(:meth:`AccessStore.refuse`).

Writes seal the rows they make or change; an update re-seals a row only if it checked before
(:meth:`AccessStore.reseal`: it never launders a forged one).

Replay and deletion: a row MAC cannot tell the current row from an older genuine copy, so
a workspace's access control also keeps the access state (:mod:`bastion.security.
access_state`): every write takes its lock, refuses to change a database that does not match
it, and seals the rows as the write leaves them, in the same transaction path.

Audit: every state change is validated first, then applied and recorded in ONE transaction
(:meth:`~bastion.security.sink.AuditSink.record_in`): the change and its audit entry commit
together or not at all. If the entry cannot be written, :class:`~bastion.errors.AuditError`
rolls the change back (fail closed) (:meth:`AccessStore.apply`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError

from bastion.errors import ConfigError, ForgedCredential, NotFound
from bastion.security.access_state import AccessState
from bastion.security.rows import BadRow, RowMac
from bastion.security.schema import principals
from bastion.security.sink import AuditSink

__all__ = ["AccessStore", "iso", "now_utc"]


def now_utc() -> datetime:
    """The time now, in UTC: the clock access control stamps its rows with by default."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """A moment as the access tables keep it: UTC, ISO 8601, to the second."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


class AccessStore:
    """The access tables of one database, their row MACs, the audit sink, the clock and, in
    a workspace, the sealed access state that every write keeps."""

    def __init__(
        self,
        engine: sa.Engine,
        audit: AuditSink,
        rows: RowMac,
        state: AccessState | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.rows = rows
        self.state = state
        self._clock = clock

    def now(self) -> datetime:
        """The clock's time, in UTC; a naive clock is a ConfigError."""
        moment = self._clock()
        if moment.tzinfo is None:
            raise ConfigError("clock: expected a timezone-aware datetime, got a naive one")
        return moment.astimezone(UTC)

    def refuse(self, bad: BadRow, use: str) -> ForgedCredential:
        """Audit a row that failed its MAC where a decision needed it; the error to raise."""
        self.audit.record(
            "bastion",
            "row.refused",
            f"{bad.table}:{bad.key}",
            "denied",
            {"table": bad.table, "row": bad.key, "use": use},
        )
        return ForgedCredential(
            f"refused: the {bad.table} row ({bad.key}) does not match its MAC; it was written"
            " or edited outside Bastion (recorded in the audit log)",
            bad.table,
            bad.key,
        )

    def reseal(
        self, conn: sa.Connection, table: sa.Table, row: Any, changes: Mapping[str, Any]
    ) -> None:
        """Apply ``changes`` to ``row`` (read in this transaction) and re-seal it, unless it
        did not check before: a forged row gets the change but stays forged."""
        values = dict(row._mapping)
        new = {**values, **changes}
        if self.rows.bad(table.name, values) is None:
            new["mac"] = self.rows.mac(table.name, new)
        key = [table.c[c] == values[c] for c in table.primary_key.columns.keys()]
        conn.execute(sa.update(table).where(*key).values(**{k: new[k] for k in (*changes, "mac")}))

    def apply(
        self,
        actor: str,
        action: str,
        resource: str,
        details: Mapping[str, Any],
        change: Callable[[sa.Connection], None],
    ) -> None:
        """Apply ``change`` and record it in one transaction: both or neither; with an
        access state, under its lock, refused on a tampered database, and sealed."""
        try:
            if self.state is None:
                with self.engine.begin() as conn:
                    change(conn)
                    self.audit.record_in(conn, actor, action, resource, "ok", details)
                return
            try:
                with self.state.updating(self.engine) as seal, self.engine.begin() as conn:
                    change(conn)
                    self.audit.record_in(conn, actor, action, resource, "ok", details)
                    seal.stage(conn)  # the new state, pending until the commit
            except ForgedCredential as exc:  # the database was rolled back or cut: no write
                self.audit.record(
                    actor, action, resource, "denied", {"reason": "access state", "row": exc.key}
                )
                raise
        except DBIntegrityError:
            raise ConfigError(f"{resource}: conflicts with a concurrent change") from None

    def principal_row(self, name: str) -> sa.Row[Any]:
        """The principal named ``name``, its row checked; NotFound if there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(principals).where(principals.c.name == name)).first()
        if row is None:
            raise NotFound(f"principal {name!r}: no such principal")
        self.rows.check("principals", row._mapping)
        return row
