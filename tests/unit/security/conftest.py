"""Real databases and a real keyring for the audit-log tests.

``engine`` is migrated on ``database_url`` from ``tests/conftest.py``: a SQLite file, and a
fresh PostgreSQL database (marked ``postgres``, skipped with the reason when no server
answers).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bastion.security.audit import AuditLog
from bastion.security.keys import LocalKeyring
from bastion.store.db import make_engine, migrate


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated engine on each kind of database."""
    eng = make_engine(database_url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite engine, for tests about input rather than storage."""
    eng = make_engine(f"sqlite:///{tmp_path / 'input.db'}")
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def keys(tmp_path: Path) -> LocalKeyring:
    """A real keyring (cheap scrypt: tests only)."""
    return LocalKeyring.create(tmp_path / "keyring.json", "a long test passphrase", scrypt_log_n=14)


@pytest.fixture
def log(engine: Engine, keys: LocalKeyring) -> Iterator[AuditLog]:
    """An audit log that checkpoints every 5 entries, closed after the test."""
    with AuditLog(engine, keys, checkpoint_every=5) as audit:
        yield audit
