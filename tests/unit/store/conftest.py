"""Fixtures for the artifact store tests: a real keyring, a real SQLite database, a real
file system, and an in-memory audit sink that can be told to refuse writes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bastion.errors import AuditError
from bastion.security.keys import LocalKeyring
from bastion.store.artifacts import ArtifactStore
from bastion.store.db import make_engine, migrate

PASSPHRASE = "a long test passphrase"
SMALL_CHUNK = 64


@dataclass
class ListSink:
    """An AuditSink that keeps entries in a list, or refuses them all while ``fail`` is set."""

    entries: list[tuple[str, str, str, str, dict[str, Any]]] = field(default_factory=list)
    fail: bool = False

    def record(
        self,
        actor: str,
        action: str,
        resource: str,
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
    ) -> int:
        if self.fail:
            raise AuditError("audit log unavailable")
        self.entries.append((actor, action, resource, outcome, dict(details or {})))
        return len(self.entries)


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
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def store(
    tmp_path: Path, keyring: LocalKeyring, engine: sa.Engine, sink: ListSink
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
    yield ArtifactStore(
        folder / "store", module_keyring, engine, ListSink(), chunk_size=SMALL_CHUNK
    )
    engine.dispose()
