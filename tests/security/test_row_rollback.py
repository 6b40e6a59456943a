"""Rollback attacks on the access-control rows, by someone who can write every file of the
home but lacks the passphrase: an older genuine copy of a row put back (a revoked token, a
disabled principal), a deleted row put back (a revoked grant), a row deleted (a role
permission). Every row still matches its MAC; the sealed access state
(``security/access_state.py``) refuses the home at open (exit 1, naming the row) and
``bastion verify`` reports the row. Concurrent writers and a crash between the commit and
the seal write leave a home that verifies clean."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bastion import Workspace
from bastion.errors import AccessDenied, AuthError, ForgedCredential
from bastion.security.access_state import STATE_FILE
from tests.conftest import PASSPHRASE, Home, run_cli

REFUSED = "differ from their sealed state"


def _db(home: Home) -> sqlite3.Connection:
    return sqlite3.connect(home.path / "bastion.db")


def _copy(home: Home, table: str, where: str, *args: Any) -> dict[str, Any]:
    with _db(home) as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute(f"SELECT * FROM {table} WHERE {where}", args).fetchone()  # noqa: S608
    assert row is not None
    return dict(row)


def _put_back(home: Home, table: str, row: dict[str, Any], where: str, *args: Any) -> None:
    """Replace the row(s) ``where`` selects with an older copy, MAC included."""
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    with _db(home) as conn:
        conn.execute(f"DELETE FROM {table} WHERE {where}", args)  # noqa: S608
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))  # noqa: S608


def _actions(home: Home) -> list[str]:
    with _db(home) as conn:
        return [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY seq")]


def _problems(home: Home) -> list[tuple[str, str, str]]:
    res = run_cli(["verify", "--json"], home.env())
    assert res.code == 1, res.out + res.err
    return [(p["kind"], p["subject"], p["message"]) for p in res.json()["problems"]]


@pytest.fixture
def ws(home: Home) -> Iterator[Workspace]:
    workspace = home.open()
    try:
        yield workspace
    finally:
        workspace.close()


def test_replayed_revoked_token_row_is_refused(ws: Workspace, home: Home) -> None:
    issued = ws.create_token("admin", principal="admin", description="second admin")
    ws.close()
    before = _copy(home, "tokens", "id = ?", issued.id)  # copied while still valid
    assert run_cli(["token", "revoke", issued.id], home.env()).code == 0
    revoked = run_cli(["audit", "show", "--limit", "1"], home.env(BASTION_TOKEN=issued.token))
    assert revoked.code == 1 and "invalid or expired token" in revoked.err
    _put_back(home, "tokens", before, "id = ?", issued.id)  # the row checks its MAC

    res = run_cli(["audit", "show", "--limit", "1"], home.env(BASTION_TOKEN=issued.token))
    assert res.code == 1, res.out + res.err
    assert REFUSED in res.err and f"tokens row (id={issued.id})" in res.err
    assert run_cli(["token", "list"], home.env()).code == 1  # the real admin too: not its state
    with home.open(issued.token) as again, pytest.raises(ForgedCredential, match=REFUSED):
        again.list_tokens()
    assert "access.refused" in _actions(home)
    problems = _problems(home)
    assert [(k, s) for k, s, _m in problems] == [("row", f"tokens:id={issued.id}")]
    assert "older copy" in problems[0][2]


def test_restored_deleted_grant_is_refused(ws: Workspace, home: Home) -> None:
    ws.add_principal("svc", "service")
    ws.grant("svc", "consumer", resource_type="deployment", resource="fraud")
    issued = ws.create_token(
        "consumer", principal="svc", resource_type="deployment", resource="fraud"
    )
    grant = _copy(home, "grants", "principal = 'svc'")
    ws.access.revoke_grant(
        "svc", "consumer", resource_type="deployment", resource="fraud", actor="admin"
    )
    token = _copy(home, "tokens", "id = ?", issued.id)
    assert token["revoked"] is not None  # revoke_grant revoked the token it covered
    ws.close()
    _put_back(home, "grants", grant, "id = ?", grant["id"])

    res = run_cli(["token", "list"], home.env())
    assert res.code == 1 and REFUSED in res.err
    subject = "grants:principal=svc, role=consumer, resource_type=deployment, resource=fraud"
    problems = _problems(home)
    assert [(k, s) for k, s, _m in problems] == [("row", subject)]
    assert "not in the sealed access state" in problems[0][2]
    with home.open() as again, pytest.raises(ForgedCredential):  # and no write seals it
        again.access.create_token(
            "svc", "consumer", resource_type="deployment", resource="fraud", actor="admin"
        )


def test_reenabled_principal_row_is_refused(ws: Workspace, home: Home) -> None:
    ws.add_principal("svc", "service")
    ws.grant("svc", "consumer", resource_type="deployment", resource="fraud")
    issued = ws.create_token(
        "consumer", principal="svc", resource_type="deployment", resource="fraud"
    )
    enabled = _copy(home, "principals", "name = 'svc'")
    ws.disable_principal("svc")
    with pytest.raises(AuthError):
        ws.authenticate(issued.token)
    ws.close()
    _put_back(home, "principals", enabled, "name = 'svc'")

    # the row checks, so the token authenticates; the workspace then refuses to act on it
    with home.open(issued.token) as again:
        with pytest.raises(AccessDenied, match=REFUSED):
            again.authorize("deployment:predict", resource_type="deployment", resource="fraud")
        with pytest.raises(AuthError, match=REFUSED):  # the server's path: 401
            again.authenticate(issued.token)
    problems = _problems(home)
    assert [(k, s) for k, s, _m in problems] == [("row", "principals:name=svc")]


def test_deleted_role_permission_is_reported(home: Home) -> None:
    with _db(home) as conn:
        conn.execute(
            "DELETE FROM role_permissions WHERE role = 'auditor' AND permission = 'audit:read'"
        )
    res = run_cli(["audit", "show", "--limit", "1"], home.env())
    assert res.code == 1 and "role_permissions row (role=auditor, permission=audit:read)" in res.err
    problems = _problems(home)
    assert [(k, s) for k, s, _m in problems] == [
        ("row", "role_permissions:role=auditor, permission=audit:read")
    ]
    assert problems[0][2].startswith("deleted")


def test_deleted_or_edited_state_file_is_refused(home: Home) -> None:
    state = home.path / STATE_FILE
    doc = json.loads(state.read_text())
    doc["state"]["tokens"] = []  # forget every token: the MAC no longer checks
    state.write_text(json.dumps(doc))
    res = run_cli(["token", "list"], home.env())
    assert res.code == 1 and "does not check" in res.err
    state.unlink()
    res = run_cli(["token", "list"], home.env())
    assert res.code == 1 and "missing" in res.err
    assert [s for _k, s, _m in _problems(home)] == [STATE_FILE]


_WRITER = """
import sys
from bastion import Workspace
ws = Workspace.open(sys.argv[1], sys.argv[2], token=sys.argv[3])
try:
    for i in range(int(sys.argv[4])):
        ws.create_token("consumer", description=f"{sys.argv[5]}-{i}")
finally:
    ws.close()
"""


def test_concurrent_token_creation_verifies_clean(home: Home) -> None:
    count = 8
    env = home.env()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(home.path), PASSPHRASE, home.token, str(count), w],
            env=env,
            stderr=subprocess.PIPE,
        )
        for w in ("a", "b")
    ]
    for writer in writers:
        _out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err.decode()
    with home.open() as ws:
        made = [t.description for t in ws.list_tokens() if t.description[:2] in ("a-", "b-")]
        assert len(made) == 2 * count
        report = ws.verify()
    assert report.ok, report.problems
    assert json.loads((home.path / STATE_FILE).read_text())["pending"] is None


def test_write_between_reading_the_state_and_the_rows_is_not_refused(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An open reads the file, another writer commits and seals, then the open reads the
    rows: the new rows are in the sealed state by then, so nothing is refused; a row put
    back outside Bastion still is."""
    with home.open() as writer, home.open() as reader:
        read = reader.access_state.read
        seen: list[Any] = []

        def read_then_write() -> Any:
            found = read()
            if not seen:  # once: the real write lands between the file and the rows
                seen.append(writer.create_token("consumer", description="between"))
            return found

        monkeypatch.setattr(reader.access_state, "read", read_then_write)
        assert reader.access_state.check(reader.engine) == []
        assert seen and json.loads((home.path / STATE_FILE).read_text())["pending"] is None
        monkeypatch.undo()
        grant = _copy(home, "grants", "principal = ?", seen[0].principal)
        writer.access.revoke_grant(seen[0].principal, "consumer", actor="admin")
        _put_back(home, "grants", grant, "id = ?", grant["id"])
        problems = reader.access_state.check(reader.engine)
    assert [(p.table, p.kind) for p in problems] == [("grants", "unlisted")]


def test_crash_between_commit_and_seal_is_accepted(ws: Workspace, home: Home) -> None:
    """The file as a crash leaves it (old state, new one pending) opens either way."""
    old, _none = ws.access_state.read()
    issued = ws.create_token("consumer")
    new, _none = ws.access_state.read()
    ws.access_state.write(old, new)  # crashed after the commit, before the final write
    ws.close()
    with home.open() as again:
        assert again.verify().ok
    assert json.loads((home.path / STATE_FILE).read_text())["pending"] is None
    # crashed before the commit: the row never landed, the file holds it as pending
    with home.open() as again:
        again.access_state.write(old, new)
    with _db(home) as conn:
        conn.execute("DELETE FROM tokens WHERE id = ?", (issued.id,))
        conn.execute("DELETE FROM grants WHERE principal LIKE 'svc-consumer-%'")
        conn.execute("DELETE FROM principals WHERE name LIKE 'svc-consumer-%'")
    with home.open() as again:
        assert again.verify().ok
        assert again.create_token("consumer").id
