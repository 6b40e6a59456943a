"""The real audit log for service tests, with two conveniences: ``recorded`` lists the
entries as plain tuples, and ``fail`` makes the log unwritable (its table renamed away, as
a full disk or a dropped table would) and writable again."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bastion.security.audit import AuditLog
from bastion.security.keys import LocalKeyring


@functools.cache
def shared_keyring() -> LocalKeyring:
    """One real keyring per test process, for logs whose keys do not matter to the test."""
    folder = Path(tempfile.mkdtemp(prefix="bastion-test-keys-"))
    return LocalKeyring.create(folder / "keyring.json", "a long test passphrase", scrypt_log_n=14)


class RecordingLog(AuditLog):
    """The real audit log (see the module docstring)."""

    def __init__(self, engine: sa.Engine, keys: LocalKeyring | None = None) -> None:
        super().__init__(engine, keys or shared_keyring())

    @property
    def recorded(self) -> list[tuple[str, str, str, str, dict[str, Any]]]:
        return [
            (e.actor, e.action, e.resource, e.outcome, e.details)
            for e in self.entries(limit=10_000)
        ]

    @property
    def fail(self) -> bool:
        return bool(getattr(self, "_failing", False))

    @fail.setter
    def fail(self, value: bool) -> None:
        if value == self.fail:
            return
        old, new = ("audit_log", "audit_log_away") if value else ("audit_log_away", "audit_log")
        with self._engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {old} RENAME TO {new}"))
        self._failing = value
