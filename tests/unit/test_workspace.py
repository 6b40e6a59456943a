"""The home folder: created private, opened only with the passphrase and a token, on SQLite
or PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion import Workspace
from bastion.errors import AccessDenied, AuthError, ConfigError, StateError
from tests.conftest import PASSPHRASE


def test_workspace_round_trip_on_each_database(database_url: str | None, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        database_url = None  # the home's own SQLite file
    ws, token = Workspace.init(
        tmp_path / "h", PASSPHRASE, database_url=database_url, scrypt_log_n=14
    )
    try:
        ref = ws.store.put(b"payload", actor="admin", name="p")
        ws.attest([("p", ref.digest)], "https://example.org/t/v1", {"k": 1})
        assert ws.identity.principal == "admin"  # init returns the admin's workspace
        assert ws.authorize("keys:rotate").principal == "admin"
    finally:
        ws.close()
    marker = json.loads((tmp_path / "h" / "home.json").read_text())
    assert marker["database"] == ("sqlite" if database_url is None else "external")
    assert "postgres" not in json.dumps(marker)  # the URL (and any password) is never stored
    opened = Workspace.open(
        tmp_path / "h", PASSPHRASE, token=token.token, database_url=database_url
    )
    with opened as ws:
        assert ws.identity.principal == "admin"
        assert ws.store.read_bytes(ref.digest) == b"payload"
        report = ws.verify()
        assert report.ok, report.problems
        assert (report.artifacts, report.statements) == (1, 1)
        assert report.audit_entries >= 5


def test_external_database_home_needs_the_url(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_DATABASE_URL", raising=False)
    ws, issued = Workspace.init(
        tmp_path / "h", PASSPHRASE, database_url=postgres_url, scrypt_log_n=14
    )
    ws.close()
    with pytest.raises(StateError, match="BASTION_DATABASE_URL"):
        Workspace.open(tmp_path / "h", PASSPHRASE, token=issued.token)


def test_home_is_private(workspace: Workspace) -> None:
    assert workspace.home.stat().st_mode & 0o777 == 0o700
    assert (workspace.home / "keyring.json").stat().st_mode & 0o777 == 0o600


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        Workspace.init(tmp_path / "h", PASSPHRASE, scrypt_log_n=14)
    assert (tmp_path / "h" / "precious.txt").read_text() == "keep me"


def test_open_needs_a_home_and_the_right_passphrase(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(StateError, match="not a Bastion home"):
        Workspace.open(tmp_path / "nowhere", PASSPHRASE, token=workspace.admin_token)
    with pytest.raises(AuthError):
        Workspace.open(workspace.home, "a wrong but long passphrase", token=workspace.admin_token)


def test_no_default_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_MASTER_KEY", raising=False)
    with pytest.raises(StateError, match="BASTION_MASTER_KEY"):
        Workspace.init(tmp_path / "h", scrypt_log_n=14)


def test_denied_authorization_is_recorded(workspace: Workspace) -> None:
    issued = workspace.access.create_token("admin", "admin", actor="admin")
    workspace.access.add_principal("carol", "person", actor="admin")
    workspace.access.grant(
        "carol", "consumer", resource_type="deployment", resource="adult", actor="admin"
    )
    consumer = workspace.access.create_token(
        "carol", "consumer", resource_type="deployment", resource="adult", actor="admin"
    )
    carol = workspace.authenticate(consumer.token)
    workspace.authorize(
        "deployment:predict", resource_type="deployment", resource="adult", identity=carol
    )
    with pytest.raises(AccessDenied):
        workspace.authorize(
            "deployment:predict", resource_type="deployment", resource="other", identity=carol
        )
    admin = workspace.authenticate(issued.token)
    assert workspace.authorize("audit:read", identity=admin).principal == "admin"
    last = workspace.audit.entries(start=1, limit=1000)[-1]
    assert (last.actor, last.outcome, last.action) == ("carol", "denied", "deployment:predict")


def test_attest_refuses_subjects_not_in_the_store(workspace: Workspace) -> None:
    with pytest.raises(ConfigError, match="not in the store"):
        workspace.attest([("x", "ab" * 32)], "https://example.org/t/v1", {})
