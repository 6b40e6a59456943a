"""An audit entry committed on the caller's thread when the writer thread is idle.

The writer thread (:mod:`.writer`) groups the entries of concurrent callers into one commit.
A lone entry pays for that design without profiting from it: its caller wakes the writer,
the writer commits, then wakes the caller, and the two hand-offs cost more than the commit
(on the project's 2-core VM: 49 µs to commit one entry on the caller's thread, 146 µs
through the writer; in a server answering one request at a time that was a quarter of its
latency). :meth:`AuditLog.record_now <bastion.security.audit.writer.AuditLog.record_now>`
commits such an entry itself, with the writer's own code and connection, when all of these
hold:

* the log is SQLite (a local file: no network round trip on the caller's thread) and its
  durability is ``flush`` (no fsync at commit: the caller does not wait for the disk);
* the writer thread is not committing and nothing is queued for it (nothing to group with);
* SQLite's write lock is free now: the attempt runs with a zero busy timeout, so another
  process writing the database sends the entry back to the writer thread (which waits for
  the lock as it always has) instead of stalling the caller.

Otherwise ``record_now`` returns None and the caller uses ``record`` / ``arecord``. An attempt
that fails rolls back, drops the connection and returns None too: the writer thread then
writes the entry or reports the error (fail closed, as before). An inline entry is as
durable as any ``flush`` commit: when it is the first one not yet on disk, the writer thread
is woken once to sync it within the flush interval. A commit that signs a checkpoint syncs
the log before the checkpoint is anchored, here as in the writer (once per
``checkpoint_every`` entries). Order: an inline entry may be committed before entries that
other threads queued and the writer took but had not yet committed; no caller's own entries
change order, since ``record_now`` returns only once its entry is committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.errors import AuditError
from bastion.security.audit.entry import Item
from bastion.security.audit.waiters import Control

if TYPE_CHECKING:
    from bastion.security.audit.writer import AuditLog

__all__ = ["write_now"]


def write_now(log: AuditLog, item: Item) -> int | None:
    """Commit ``item`` now on this thread and return its seq, or None when that would mean a
    wait (see the module docstring). The caller holds ``log``'s writing lock."""
    if (
        log._closed
        or log.durability.mode != "flush"
        or log._engine.dialect.name != "sqlite"
        or not log._queue.empty()
    ):
        return None
    if log._conn is None:
        log._conn = log._engine.raw_connection()
    pending = log.durability.due_in() is not None
    cursor = log._conn.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout")
        (waits,) = cursor.fetchone()
        cursor.execute("PRAGMA busy_timeout=0")
    finally:
        cursor.close()
    try:
        seqs, _, seal = log._write([item], want_checkpoint=False)
    except Exception:  # busy, or a real failure: the writer thread takes the entry
        return None  # _write rolled back and dropped the connection
    cursor = log._conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(waits)}")
    finally:
        cursor.close()
    if seal is not None and log._anchor is not None:
        log.durability.sync(log._conn)  # never anchor what is not on disk
        log._anchor.submit(*seal)
    if not pending and log.durability.due_in() is not None:
        try:
            log._send(Control("flush"))  # wake the writer: it syncs within the interval
        except AuditError:  # closing meanwhile: no writer will sync it, so now
            log.durability.sync(log._conn)
    return seqs[0]
