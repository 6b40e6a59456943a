"""When an audit entry counts as written: on disk (``fsync``) or handed to the OS (``flush``).

The audit writer answers its callers once their entries' transaction has committed. What
"committed" means is this module's choice, per :class:`AuditLog
<bastion.security.audit.writer.AuditLog>`:

``fsync`` (the default everywhere)
    SQLite runs with ``synchronous=FULL`` (the WAL is fsynced at every commit), PostgreSQL
    with ``synchronous_commit=on``. A caller is answered only once its entry is on disk: a
    crash of the process, the kernel or the power loses no entry whose caller was answered.
    Each commit waits for the disk (0.3 to 4 ms on this project's VM).

``flush`` (``bastion serve``'s default, ``--audit-durability``)
    SQLite runs with ``synchronous=NORMAL``, PostgreSQL with ``synchronous_commit=off``: the
    commit is written to the OS (SQLite's WAL file, PostgreSQL's WAL buffers) but nobody
    waits for the disk (a lone SQLite entry may commit on its caller's thread:
    :mod:`.inline`; the writer is woken for its sync). The writer thread then syncs the
    log at most ``interval`` seconds (:data:`FLUSH_INTERVAL`, 50 ms) after the first
    commit not yet on disk, before any checkpoint is anchored, and when the log closes.
    So a crash of the server PROCESS loses nothing that was answered (the OS holds the
    bytes); a kernel crash or power cut can lose the entries of the answers given in the
    last ``interval`` seconds before it, and no more: they are a missing tail, never a
    gap, and no anchored checkpoint covers them, so the chain still verifies (the anchor
    is written only after a sync).

A sync is ``os.fsync`` of SQLite's ``-wal`` file (the same inode SQLite writes; a WAL that
does not exist holds nothing), or on PostgreSQL one empty transaction that takes a
transaction id and commits with ``synchronous_commit=on``: its commit record is flushed,
and with it every earlier WAL record.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Literal

from sqlalchemy import Engine

from bastion.errors import ConfigError

__all__ = ["DURABILITIES", "FLUSH_INTERVAL", "Durability", "DurabilityMode"]

DurabilityMode = Literal["fsync", "flush"]
#: The modes, the strict one first.
DURABILITIES: tuple[DurabilityMode, ...] = ("fsync", "flush")
#: Seconds at most between a ``flush`` commit and the sync that puts it on disk.
FLUSH_INTERVAL = 0.05


class Durability:
    """The writer thread's durability policy and its pending sync (one per audit log)."""

    def __init__(self, engine: Engine) -> None:
        self._dialect = engine.dialect.name
        database = engine.url.database if self._dialect == "sqlite" else None
        self._wal = f"{database}-wal" if database and database != ":memory:" else None
        self.mode: DurabilityMode = "fsync"
        self.interval = FLUSH_INTERVAL
        self._applied: tuple[Any, DurabilityMode] | None = None  # (connection, its mode)
        self._unsynced_since: float | None = None
        self._commits = 0  # flush commits so far (a sync covers those before it began)
        self._mutex = threading.Lock()  # commits (any thread) against a sync (the writer)

    def choose(self, mode: DurabilityMode | str, interval: float = FLUSH_INTERVAL) -> None:
        """Set the mode (for commits from now on); ConfigError for an unknown one."""
        if mode not in DURABILITIES:
            expected = list(DURABILITIES)
            raise ConfigError(f"audit durability: expected one of {expected}, got {mode!r}")
        if not (isinstance(interval, int | float) and 0 < interval <= 1):
            raise ConfigError(f"audit flush interval: expected 0 < seconds <= 1, got {interval!r}")
        self.mode = mode
        self.interval = float(interval)

    def prepare(self, conn: Any) -> None:
        """Give the writer's raw connection the current mode's setting (idle: between
        transactions) when it does not have it yet."""
        if self._applied is not None and self._applied[0] is conn and self._applied[1] == self.mode:
            return
        relaxed = self.mode == "flush"
        cursor = conn.cursor()
        try:
            if self._dialect == "sqlite":
                cursor.execute(f"PRAGMA synchronous={'NORMAL' if relaxed else 'FULL'}")
            elif self._dialect == "postgresql":
                cursor.execute(f"SET synchronous_commit TO {'off' if relaxed else 'on'}")
                conn.commit()
        finally:
            cursor.close()
        self._applied = (conn, self.mode)

    def committed(self) -> None:
        """Note a commit: under ``flush`` it is not on disk until the next :meth:`sync`."""
        if self._applied is None or self._applied[1] != "flush":
            return
        with self._mutex:
            self._commits += 1
            if self._unsynced_since is None:
                self._unsynced_since = time.monotonic()

    @property
    def needs_connection(self) -> bool:
        """Whether :meth:`sync` uses the writer's connection (PostgreSQL: one transaction),
        so that no other transaction may use it meanwhile; SQLite's is the WAL file's."""
        return self._dialect == "postgresql"

    def due_in(self) -> float | None:
        """Seconds until the pending sync is due (0: now); None when nothing is pending."""
        if self._unsynced_since is None:
            return None
        return max(0.0, self._unsynced_since + self.interval - time.monotonic())

    def sync(self, conn: Any) -> None:
        """Put every commit made before this call on disk (nothing to do when none is
        pending). Commits made while it runs (SQLite: the file is synced while the
        connection goes on) stay pending, due one interval after it began."""
        with self._mutex:
            if self._unsynced_since is None:
                return
            seen = self._commits
        began = time.monotonic()
        if self._dialect == "sqlite":
            if self._wal is not None:
                try:
                    fd = os.open(self._wal, os.O_RDONLY)
                except FileNotFoundError:
                    fd = -1  # no WAL: every commit is in the database file already
                if fd >= 0:
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        elif self._dialect == "postgresql" and conn is not None:
            cursor = conn.cursor()
            try:
                cursor.execute("SET LOCAL synchronous_commit TO on")
                cursor.execute("SELECT txid_current()")
                conn.commit()
            finally:
                cursor.close()
        with self._mutex:
            self._unsynced_since = None if self._commits == seen else began
