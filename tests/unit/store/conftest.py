"""Fixtures for the artifact store tests: a real keyring, a real SQLite database, a real
file system, and the real audit log, which a test can make unwritable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.security.keys import LocalKeyring
from bastion.store.artifacts import ArtifactStore
from bastion.store.db import make_engine, migrate
from tests.helpers.audit import RecordingLog

PASSPHRASE = "a long test passphrase"
SMALL_CHUNK = 64


def new_engine(folder: Path) -> sa.Engine:
    engine = make_engine("sqlite:///" + str(folder / "meta.db"))
    migrate(engine)
    return engine


@pytest.fixture
def keyring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "keyring.json", PASSPHRASE, scrypt_log_n=14)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = new_engine(tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def sink(engine: sa.Engine, keyring: LocalKeyring) -> Iterator[RecordingLog]:
    with RecordingLog(engine, keyring) as log:
        yield log


@pytest.fixture
def store(
    tmp_path: Path, keyring: LocalKeyring, engine: sa.Engine, sink: RecordingLog
) -> ArtifactStore:
    """A store with 64-byte chunks, so that small inputs span many chunks."""
    return ArtifactStore(tmp_path / "store", keyring, engine, sink, chunk_size=SMALL_CHUNK)


@pytest.fixture(scope="module")
def module_keyring(tmp_path_factory: pytest.TempPathFactory) -> LocalKeyring:
    folder = tmp_path_factory.mktemp("keys")
    return LocalKeyring.create(folder / "keyring.json", PASSPHRASE, scrypt_log_n=14)


@pytest.fixture(scope="module")
def module_store(
    tmp_path_factory: pytest.TempPathFactory, module_keyring: LocalKeyring
) -> Iterator[ArtifactStore]:
    """One store for property tests, which must not rebuild it for every example."""
    folder = tmp_path_factory.mktemp("store")
    engine = new_engine(folder)
    with RecordingLog(engine, module_keyring) as log:
        yield ArtifactStore(folder / "store", module_keyring, engine, log, chunk_size=SMALL_CHUNK)
    engine.dispose()
