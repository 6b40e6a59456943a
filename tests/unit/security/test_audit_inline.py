"""``AuditLog.record_now``: a lone entry committed on the caller's thread (SQLite, ``flush``),
never a wait: under ``fsync``, on PostgreSQL, with another writer holding SQLite's lock, it
hands back None and the writer thread takes the entry as before. Real databases."""

from __future__ import annotations

import sqlite3
import threading
import time

from sqlalchemy import Engine

from bastion.security.audit import AuditLog
from bastion.security.keys import LocalKeyring
from tests.unit.security.test_audit_durability import _wait_synced


def _now(log: AuditLog, *entry: object) -> int | None:
    """record_now once the writer thread has let go of its connection (it may still be
    finishing the commit that answered the last ``record``)."""
    for _ in range(400):
        if (seq := log.record_now(*entry)) is not None:  # type: ignore[arg-type]
            return seq
        time.sleep(0.005)
    return None


def test_a_lone_entry_is_committed_inline_and_the_chain_verifies(
    engine: Engine, keys: LocalKeyring
) -> None:
    """SQLite under ``flush``: record_now answers with the seq, interleaved with entries the
    writer thread commits; every entry is there, in one chain, and the writer syncs the
    inline commits within the interval (it was woken for them). Checkpoints signed by
    inline commits are anchored as the writer's are. PostgreSQL: never inline."""
    with AuditLog(engine, keys, checkpoint_every=5) as log:
        log.set_durability("flush", 0.05)
        if engine.dialect.name != "sqlite":
            assert log.record_now("alice", "model.predict", "deployment:x") is None
            return
        first = log.record_now("alice", "model.predict", "deployment:x", "ok", {"rows": 1})
        assert first is not None
        assert log.durability.due_in() is not None  # on disk within the interval...
        _wait_synced(log)  # ... by the writer thread, which nobody else woke
        seqs = [first]
        for i in range(12):
            if i % 3:
                seqs.append(_now(log, "bob", "model.predict", "deployment:x", "ok", {"i": i}))
            else:
                seqs.append(log.record("carol", "model.predict", "deployment:x", "ok", {"i": i}))
        assert seqs == list(range(first, first + 13))
        _wait_synced(log)
        report = log.verify()
        assert report.last_seq == first + 12


def test_fsync_durability_never_commits_inline(engine: Engine, keys: LocalKeyring) -> None:
    with AuditLog(engine, keys) as log:
        assert log.durability.mode == "fsync"
        assert log.record_now("alice", "model.predict", "deployment:x") is None
        seq = log.record("alice", "model.predict", "deployment:x")
        assert log.verify().last_seq == seq


def test_another_writer_holding_the_lock_hands_the_entry_back_at_once(
    sqlite_engine: Engine, keys: LocalKeyring
) -> None:
    """Another process's transaction holds SQLite's write lock (the log waits up to 30 s
    for it): record_now does not wait, it returns None; the writer thread then writes
    the entry once the lock is free, and the connection's busy timeout is back for it."""
    path = sqlite_engine.url.database
    assert path
    with AuditLog(sqlite_engine, keys) as log:
        log.set_durability("flush")
        base = log.record("alice", "model.predict", "deployment:x")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # the write lock, as another process takes it
        got: list[int | None] = []
        attempt = threading.Thread(
            target=lambda: got.append(log.record_now("bob", "model.predict", "deployment:x"))
        )
        attempt.start()
        attempt.join(10)
        assert not attempt.is_alive() and got == [None]  # answered, without the lock
        pending = log.submit("bob", "model.predict", "deployment:x")
        time.sleep(0.2)
        assert not pending.done()  # the writer thread waits for the lock, as ever
        other.execute("COMMIT")
        other.close()
        assert pending.result(timeout=30) == base + 1
        assert _now(log, "carol", "model.predict", "deployment:x") == base + 2
        assert log.verify().last_seq == base + 2
