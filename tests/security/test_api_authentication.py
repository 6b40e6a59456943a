"""Attacker D, the holder of the passphrase, through the Python API: the passphrase opens
the keys, but only a token says who acts. Without one nothing opens and nothing is minted;
the actor recorded is always the token's principal; a refused call is audited exactly as
the CLI's refusal is, because both go through ``Workspace.authorize``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from bastion import Pipeline, Workspace
from bastion.errors import AccessDenied, AuthError
from bastion.workspace import opened
from tests.conftest import PASSPHRASE, Home, run_cli
from tests.helpers.adult import EXAMPLE


def _entries(home: Home) -> list[Any]:
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        return ws.audit_entries(limit=10_000)


def _tokens(home: Home) -> list[Any]:
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        return ws.list_tokens()


def _consumer(home: Home) -> tuple[str, str]:
    """A consumer token for one deployment: (token, its principal)."""
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        issued = ws.create_token("consumer", resource_type="deployment", resource="adult-income")
    return issued.token, issued.principal


def test_python_api_without_a_token_is_refused(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_TOKEN", raising=False)
    monkeypatch.delenv("BASTION_TOKEN_FILE", raising=False)
    tokens, entries = _tokens(home), _entries(home)

    with pytest.raises(AuthError, match="no token: pass token= or set BASTION_TOKEN"):
        Workspace.open(home.path, PASSPHRASE)  # the passphrase alone opens nothing
    with pytest.raises(AuthError, match="no token"), opened(home.path, PASSPHRASE):
        pass
    forged = "bst_0123456789abcdef_" + "A" * 43
    with pytest.raises(AuthError, match=r"^invalid or expired token$"):
        Workspace.open(home.path, PASSPHRASE, token=forged)
    monkeypatch.setenv("BASTION_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(AuthError, match="BASTION_TOKEN_FILE: cannot read"):
        Workspace.open(home.path, PASSPHRASE)

    # nothing was minted and nothing acted: the tokens and the log are as they were
    assert _tokens(home) == tokens
    assert len(tokens) == 1
    assert [(e.actor, e.action) for e in _entries(home)] == [(e.actor, e.action) for e in entries]

    # the same token from the environment (a file, as the CLI reads it) does open it
    (tmp_path / "token").write_text(home.token + "\n")
    monkeypatch.setenv("BASTION_TOKEN_FILE", str(tmp_path / "token"))
    with Workspace.open(home.path, PASSPHRASE) as ws:
        assert ws.identity.principal == "admin"


def test_actor_that_is_no_principal_is_refused(home: Home, tmp_path: Path) -> None:
    # the public operations take no actor: it is the token's principal
    for method in (Pipeline.run, Workspace.rotate_keys, Workspace.create_token):
        assert "actor" not in inspect.signature(method).parameters, method
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        ws.add_principal("alice")
        ws.grant("alice", "ml-engineer")
        alice = ws.create_token("ml-engineer", principal="alice").token

    data = tmp_path / "rows.csv"
    data.write_bytes(b"a,b\n1,2\n")
    with Workspace.open(home.path, PASSPHRASE, token=alice) as ws:
        ref, _statement = ws.put_artifact(data, media_type="text/csv")
        with pytest.raises(AccessDenied, match="only the authenticated principal 'alice'"):
            ws.attest([("rows", ref.digest)], "https://example.org/t/v1", {}, actor="admin")

    entries = _entries(home)
    mine = [e for e in entries if e.action in ("artifact.put", "statement.sign")]
    assert mine and {e.actor for e in mine} == {"alice"}
    refused = entries[-1]
    assert (refused.actor, refused.action, refused.outcome) == ("alice", "actor.refused", "denied")
    assert refused.details["claimed"] == "admin"
    signed = [e for e in entries if e.action == "statement.sign"]
    assert len(signed) == 1  # the refused statement was never signed


def test_denied_api_call_is_audited(home: Home) -> None:
    consumer, principal = _consumer(home)
    tokens = _tokens(home)
    with Workspace.open(home.path, PASSPHRASE, token=consumer) as ws:
        assert ws.identity.principal == principal
        with pytest.raises(AccessDenied, match="may not pipeline:run"):
            Pipeline.from_yaml(EXAMPLE).run(ws)
        with pytest.raises(AccessDenied, match="may not token:create"):
            ws.create_token("admin", principal="admin")
        with pytest.raises(AccessDenied, match="may not keys:rotate"):
            ws.rotate_keys()
    assert _tokens(home) == tokens  # nothing minted
    denied = [e for e in _entries(home) if e.outcome == "denied"]
    assert [(e.actor, e.action, e.resource) for e in denied] == [
        (principal, "pipeline:run", "*:*"),
        (principal, "token:create", "*:*"),
        (principal, "keys:rotate", "*:*"),
    ]
    assert all(e.details["role"] == "consumer" for e in denied)


def test_cli_and_api_refuse_through_the_same_path(home: Home) -> None:
    """The same refusal from the CLI and from the API leaves the same audit entry."""
    consumer, principal = _consumer(home)
    cli = run_cli(
        ["token", "create", "--role", "admin", "--json"], home.env(BASTION_TOKEN=consumer)
    )
    assert cli.code == 1, cli.err
    assert "may not token:create" in cli.err
    with (
        Workspace.open(home.path, PASSPHRASE, token=consumer) as ws,
        pytest.raises(AccessDenied) as api,
    ):
        ws.create_token("admin")
    assert str(api.value) in cli.err

    denied = [e for e in _entries(home) if e.outcome == "denied"]
    assert len(denied) == 2
    shape = {(e.actor, e.action, e.resource, e.outcome, tuple(sorted(e.details))) for e in denied}
    assert shape == {(principal, "token:create", "*:*", "denied", ("role", "token"))}
    assert denied[0].details == denied[1].details
