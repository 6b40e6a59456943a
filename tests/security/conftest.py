"""Fixtures for the attack tests: a real SQLite home database, real keyrings, and the real
audit log (``sink``), which a test can make unwritable (``sink.fail = True``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.security.access import AccessControl
from bastion.security.keys import LocalKeyring
from bastion.store.db import make_engine, migrate
from tests.helpers.audit import RecordingLog
from tests.helpers.rows import sealed_rows

PASSPHRASE = "a long test passphrase"


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
def sink(engine: sa.Engine) -> Iterator[RecordingLog]:
    with RecordingLog(engine) as log:
        yield log


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def access(engine: sa.Engine, sink: RecordingLog, clock: FakeClock) -> AccessControl:
    return AccessControl(engine, sink, rows=sealed_rows(engine), clock=clock)


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
    engine = new_engine(tmp_path_factory.mktemp("db"))
    return AccessControl(engine, RecordingLog(engine), rows=sealed_rows(engine))
