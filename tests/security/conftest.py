"""Fixtures for the attack tests: a real SQLite home database, real keyrings, audit doubles.

The audit log itself is wired in by the workspace; here an :class:`AuditSink` double
either keeps what it is given (so tests can read it) or refuses everything, as a full or
broken log would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.errors import AuditError
from bastion.security.access import AccessControl
from bastion.security.keys import LocalKeyring
from bastion.store.db import make_engine, migrate

PASSPHRASE = "a long test passphrase"


@dataclass
class RecordingSink:
    """An AuditSink that keeps every entry in memory."""

    entries: list[tuple[str, str, str, str, dict[str, Any]]] = field(default_factory=list)

    def record(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        self.entries.append((actor, action, resource, outcome, dict(details or {})))
        return len(self.entries)


class FailingSink:
    """An AuditSink whose every write fails, like a full disk under the real log."""

    def record(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        raise AuditError("audit log unavailable")


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def new_engine(folder: Path) -> sa.Engine:
    engine = make_engine("sqlite:///" + str(folder / "m.db"))
    migrate(engine)
    return engine


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return new_engine(tmp_path)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def failing_sink() -> FailingSink:
    return FailingSink()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def access(engine: sa.Engine, sink: RecordingSink, clock: FakeClock) -> AccessControl:
    return AccessControl(engine, sink, clock=clock)


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "keyring.json", PASSPHRASE, scrypt_log_n=14)


@pytest.fixture
def other_keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "other-keyring.json", PASSPHRASE, scrypt_log_n=14)


@pytest.fixture(scope="module")
def module_keyring(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyring:
    folder = tmp_path_factory.mktemp("keys")
    return LocalKeyring.create(folder / "keyring.json", PASSPHRASE, scrypt_log_n=14)


@pytest.fixture(scope="module")
def module_access(tmp_path_factory: pytest.TempPathFactory) -> AccessControl:
    """One access database for property tests, which must not rebuild it per example."""
    return AccessControl(new_engine(tmp_path_factory.mktemp("db")), RecordingSink())
