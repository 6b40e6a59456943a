"""Audit durability: ``fsync`` (every answer after the disk) and ``flush`` (every answer
after the OS; on disk within the interval, before any anchor, at close). Real SQLite and
PostgreSQL, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from bastion.errors import ConfigError
from bastion.security.audit import AuditLog
from bastion.security.keys import LocalKeyring

PASSPHRASE = "a long test passphrase"


def _wait_synced(log: AuditLog, limit: float = 5.0) -> float:
    """Seconds until the writer had synced every commit by itself (no further record)."""
    began = time.monotonic()
    while log.durability.due_in() is not None:
        assert time.monotonic() - began < limit, "the writer never synced"
        time.sleep(0.005)
    return time.monotonic() - began


def test_fsync_is_the_default_and_leaves_nothing_pending(
    engine: Engine, keys: LocalKeyring
) -> None:
    with AuditLog(engine, keys) as log:
        assert log.durability.mode == "fsync"
        log.record("alice", "model.predict", "deployment:x")
        assert log.durability.due_in() is None  # on disk when answered: nothing to sync


def test_flush_answers_then_syncs_within_the_interval(engine: Engine, keys: LocalKeyring) -> None:
    with AuditLog(engine, keys, checkpoint_every=1000) as log:
        log.set_durability("flush", 0.05)
        seq = log.record("alice", "model.predict", "deployment:x", "ok", {"rows": 1})
        assert log.durability.due_in() is not None  # answered before the disk
        assert _wait_synced(log) < 1.0  # then synced by the writer alone
        for i in range(20):
            log.record("alice", "model.predict", "deployment:x", "ok", {"i": i})
        _wait_synced(log)
        report = log.verify()
        assert report.last_seq == seq + 20


def _writer_setting(log: AuditLog, engine: Engine) -> object:
    """The durability setting of the writer's own connection (idle between batches)."""
    cursor = log._conn.cursor()
    try:
        sqlite = engine.dialect.name == "sqlite"
        cursor.execute("PRAGMA synchronous" if sqlite else "SHOW synchronous_commit")
        return cursor.fetchone()[0]
    finally:
        cursor.close()


def test_the_writer_connection_gets_the_relaxed_setting(engine: Engine, keys: LocalKeyring) -> None:
    sqlite = engine.dialect.name == "sqlite"
    with AuditLog(engine, keys) as log:
        log.set_durability("flush")
        log.record("alice", "model.predict", "deployment:x")
        assert _writer_setting(log, engine) == (1 if sqlite else "off")  # NORMAL
        log.set_durability("fsync")
        log.record("alice", "model.predict", "deployment:x")
        assert _writer_setting(log, engine) == (2 if sqlite else "on")  # FULL
    with engine.connect() as conn:  # other connections keep the strict setting
        if sqlite:
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 2


def test_a_checkpoint_is_anchored_only_once_synced(
    engine: Engine, keys: LocalKeyring, tmp_path: Path
) -> None:
    with AuditLog(engine, keys, checkpoint_every=1000, anchor=tmp_path / "anchor.json") as log:
        log.init_anchor()
        log.set_durability("flush", 1.0)  # a long interval: only the anchor can force it
        for i in range(5):
            log.record("alice", "model.predict", "deployment:x", "ok", {"i": i})
        assert log.durability.due_in() is not None
        log.checkpoint()
        assert log.durability.due_in() is None
        assert log.verify().anchored_tree_size == 5


@pytest.mark.parametrize(("mode", "interval"), [("sync", 0.05), ("flush", 0.0), ("flush", 5)])
def test_bad_settings_are_refused(
    sqlite_engine: Engine, keys: LocalKeyring, mode: str, interval: float
) -> None:
    with AuditLog(sqlite_engine, keys) as log, pytest.raises(ConfigError, match="audit"):
        log.set_durability(mode, interval)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from bastion.security.audit import AuditLog
    from bastion.security.keys import LocalKeyring
    from bastion.store.db import make_engine

    engine = make_engine(sys.argv[1])
    keys = LocalKeyring.open(Path(sys.argv[2]), sys.argv[3])
    log = AuditLog(engine, keys, checkpoint_every=50, anchor=Path(sys.argv[4]))
    log.set_durability("flush", 1.0)
    for i in range(int(sys.argv[5])):
        log.record("alice", "model.predict", "deployment:x", "ok", {"i": i})
        print(i, flush=True)  # answered
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no final sync
    """
)


def test_a_killed_process_loses_no_answered_entry(
    engine: Engine, keys: LocalKeyring, database_url: str, tmp_path: Path
) -> None:
    """``flush``'s promise against a process crash: every answered entry is there after a
    SIGKILL, and the chain (with its anchor) verifies."""
    anchor = tmp_path / "anchor.json"
    with AuditLog(engine, keys, anchor=anchor) as log:
        log.init_anchor()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    res = subprocess.run(
        [
            sys.executable,
            str(script),
            database_url,
            str(tmp_path / "keyring.json"),
            PASSPHRASE,
            str(anchor),
            "120",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert res.returncode == -signal.SIGKILL, res.stderr
    answered = len(res.stdout.split())
    assert answered == 120
    with AuditLog(engine, keys, anchor=anchor) as log:
        report = log.verify()
    assert report.entries >= answered
    with engine.connect() as conn:
        actions = conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'model.predict'")
        ).scalar()
    assert actions == answered


def test_a_commit_made_while_the_log_syncs_stays_pending(
    sqlite_engine: Engine, keys: LocalKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's sync is an fsync of the WAL file, run while inline commits go on (the
    writer does not hold the connection for it): a commit that lands during the fsync may
    not be covered by it, so it stays pending, due within the interval, until the next."""
    from bastion.security.audit.durability import Durability

    with AuditLog(sqlite_engine, keys) as log:  # a WAL with entries in it
        log.set_durability("flush")
        log.record("alice", "model.predict", "deployment:x")
    durability = Durability(sqlite_engine)
    durability.choose("flush")
    conn = sqlite_engine.raw_connection()
    try:
        durability.prepare(conn)
        durability.committed()
        real = os.fsync

        def fsync_during_a_commit(fd: int) -> None:
            real(fd)
            durability.committed()  # another thread's commit, after the bytes were synced

        monkeypatch.setattr(os, "fsync", fsync_during_a_commit)
        durability.sync(None)
        due = durability.due_in()
        assert due is not None and due <= durability.interval  # still pending
        monkeypatch.setattr(os, "fsync", real)
        durability.sync(None)
        assert durability.due_in() is None  # nothing committed during this one
    finally:
        conn.close()
