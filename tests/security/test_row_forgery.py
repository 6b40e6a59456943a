"""Attacks on the metadata rows, by someone who can write every file of the home but lacks
the passphrase: forged, edited and widened rows are refused where they are used (the real
CLI, the Python API) and reported by ``bastion verify``; a token may not live longer than
365 days whatever its row says. Ends with a campaign of random single-field edits."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bastion import Workspace
from bastion.errors import AccessDenied, AuthError, ForgedCredential, ForgedRow, IntegrityError
from bastion.security.rows import SEALED, SEALED_TABLES, RowMac, encode_row, scan
from bastion.store.db import models
from tests.conftest import PASSPHRASE, Home, run_cli

VECTOR_MAC = "017c76cd548388deea421a094ac9dc3fe00e218ebf437090c737995beab1e5bd"


def _db(home: Home) -> sqlite3.Connection:
    return sqlite3.connect(home.path / "bastion.db")


def _new_token() -> tuple[str, str, bytes]:
    """(token text, id, SHA-256 of the secret) as an attacker would make them."""
    token_id = secrets.token_hex(8)
    raw = secrets.token_bytes(32)
    secret = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"bst_{token_id}_{secret}", token_id, hashlib.sha256(raw).digest()


def _audit_actions(home: Home) -> list[tuple[str, str]]:
    with _db(home) as conn:
        return [tuple(r) for r in conn.execute("SELECT action, resource FROM audit_log")]


@pytest.fixture
def ws(home: Home) -> Iterator[Workspace]:
    workspace = Workspace.open(home.path, PASSPHRASE, token=home.token)
    try:
        yield workspace
    finally:
        workspace.close()


# -- the encoding ----------------------------------------------------------------------------


def test_row_encoding_vector() -> None:
    values = {"role": "consumer", "permission": "deployment:predict"}
    encoded = encode_row("role_permissions", values)
    assert encoded == (
        b"bastion-row v1\n"
        b"\x00\x00\x00\x10role_permissions\x00\x00\x00\x02"
        b"\x00\x00\x00\x04roleS\x00\x00\x00\x08consumer"
        b"\x00\x00\x00\x0apermissionS\x00\x00\x00\x12deployment:predict"
    )
    mac = RowMac(bytes(range(32))).mac("role_permissions", values)
    assert mac == hmac.new(bytes(range(32)), encoded, hashlib.sha256).digest()
    assert mac.hex() == VECTOR_MAC
    # typed: a boolean, an integer and text never encode alike
    p = {"name": "a", "kind": "person", "created": "t"}
    assert len({encode_row("principals", dict(p, disabled=v)) for v in (True, 1, "1")}) == 3


# -- the attacks -----------------------------------------------------------------------------


def test_forged_token_row_is_refused(home: Home, tmp_path: Path) -> None:
    token, token_id, digest = _new_token()
    with _db(home) as conn:
        conn.execute(
            "INSERT INTO tokens (id, principal, role, resource_type, resource, secret_hash,"
            " created, expires, revoked, description, mac)"
            " VALUES (?, 'admin', 'admin', '*', '*', ?, '2026-01-01T00:00:00+00:00',"
            " '2099-01-01T00:00:00+00:00', NULL, '', ?)",
            (token_id, digest, secrets.token_bytes(32)),
        )
    res = run_cli(["audit", "show", "--limit", "1"], home.env(BASTION_TOKEN=token))
    assert res.code == 1, res.out + res.err
    assert "does not match its MAC" in res.err
    assert ("row.refused", f"tokens:id={token_id}") in _audit_actions(home)
    with pytest.raises(AccessDenied) as refused:  # the Python API
        Workspace.open(home.path, PASSPHRASE, token=token)
    assert isinstance(refused.value, AuthError)  # which the server answers with 401
    assert run_cli(["audit", "show", "--limit", "1"], home.env()).code == 0  # the real admin
    report = run_cli(["verify", "--json"], home.env())
    assert report.code == 1
    assert [p["subject"] for p in report.json()["problems"]] == [f"tokens:id={token_id}"]


def test_stretched_token_expiry_is_refused(home: Home) -> None:
    # a row with a good MAC (as only the passphrase holder could write) may still not say
    # more than 365 days
    token, token_id, digest = _new_token()
    now = datetime.now(UTC)
    row = {
        "id": token_id,
        "principal": "admin",
        "role": "admin",
        "resource_type": "*",
        "resource": "*",
        "secret_hash": digest,
        "created": now.isoformat(timespec="seconds"),
        "expires": (now + timedelta(days=366)).isoformat(timespec="seconds"),
        "revoked": None,
        "description": "",
    }
    with (
        Workspace.open(home.path, PASSPHRASE, token=home.token) as ws,
        ws.engine.begin() as conn,
    ):
        conn.execute(sa.insert(SEALED_TABLES["tokens"]).values(**ws.rows.sealed("tokens", row)))
    with pytest.raises(AuthError, match="invalid or expired token"):
        Workspace.open(home.path, PASSPHRASE, token=token)
    assert ("token.refused", f"token:{token_id}") in _audit_actions(home)
    # and a stretched row (2099) fails its MAC
    admin_id = home.token.split("_")[1]
    with _db(home) as conn:
        conn.execute(
            "UPDATE tokens SET expires = '2099-01-01T00:00:00+00:00' WHERE id = ?", (admin_id,)
        )
    res = run_cli(["audit", "show", "--limit", "1"], home.env())
    assert res.code == 1 and "does not match its MAC" in res.err


def test_widened_grant_is_refused(ws: Workspace, home: Home) -> None:
    ws.access.add_principal("svc", "service", actor="admin")
    ws.access.grant("svc", "consumer", resource_type="deployment", resource="fraud", actor="admin")
    issued = ws.access.create_token(
        "svc", "consumer", resource_type="deployment", resource="fraud", actor="admin"
    )
    assert ws.access.authenticate(issued.token).principal == "svc"
    with ws.engine.begin() as conn:
        conn.execute(sa.text("UPDATE grants SET resource = '*' WHERE principal = 'svc'"))
    with pytest.raises(ForgedCredential, match="grants row"):
        ws.access.authenticate(issued.token)
    with pytest.raises(ForgedRow, match="grants row"):  # no wider token on it either
        ws.access.create_token(
            "svc", "consumer", resource_type="deployment", resource="other", actor="admin"
        )
    problems = ws.verify().problems
    assert [(p.kind, p.subject) for p in problems] == [
        ("row", "grants:principal=svc, role=consumer, resource_type=deployment, resource=*")
    ]


def test_added_role_permission_is_refused(ws: Workspace, home: Home) -> None:
    ws.access.add_principal("reader", "person", actor="admin")
    ws.access.grant("reader", "consumer", actor="admin")
    issued = ws.access.create_token("reader", "consumer", actor="admin")
    assert ws.access.permissions("consumer") == frozenset({"deployment:predict"})
    before = run_cli(["audit", "show", "--limit", "1"], home.env(BASTION_TOKEN=issued.token))
    assert before.code == 1 and "role_permissions" not in before.err
    with ws.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO role_permissions (role, permission) VALUES ('consumer', '*')")
        )
    with pytest.raises(ForgedCredential, match="role_permissions row"):
        ws.access.permissions("consumer")
    ws.close()
    res = run_cli(["audit", "show", "--limit", "1"], home.env(BASTION_TOKEN=issued.token))
    assert res.code == 1 and "role_permissions" in res.err
    assert ("row.refused", "role_permissions:role=consumer, permission=*") in _audit_actions(home)


def test_edited_artifact_metadata_is_reported(ws: Workspace, home: Home) -> None:
    ref = ws.store.put(b"age,income\n39,>50K\n", actor="admin", media_type="text/csv")
    ws.close()
    with _db(home) as conn:
        conn.execute(
            "UPDATE artifacts SET created_by = 'someone-else' WHERE digest = ?", (ref.digest,)
        )
    res = run_cli(["verify", "--json"], home.env())
    assert res.code == 1
    assert [(p["kind"], p["subject"]) for p in res.json()["problems"]] == [
        ("row", f"artifacts:digest={ref.digest}")
    ]
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as again, pytest.raises(ForgedRow):
        again.store.info(ref.digest)


def test_edited_model_row_is_not_served(ws: Workspace) -> None:
    """A registered row (sealed as the runner seals it) edited to point at another blob: the
    model is neither resolved nor loaded, and the error names it."""
    good = ws.store.put(b"model bytes", actor="admin")
    other = ws.store.put(b"other model bytes", actor="admin")
    row = {
        "name": "adult-income",
        "version": 1,
        "digest": good.digest,
        "statement_id": "0" * 64,
        "run_id": "r1",
        "status": "registered",
        "created": "2026-01-01T00:00:00+00:00",
        "record": json.dumps({"metrics": {}}),
    }
    with ws.engine.begin() as conn:
        conn.execute(sa.insert(models).values(**ws.rows.sealed("models", row)))
        conn.execute(
            sa.update(models).where(models.c.name == "adult-income").values(digest=other.digest)
        )
    for ref in ("adult-income", "adult-income:1"):
        with pytest.raises(IntegrityError, match="adult-income") as refused:
            ws.models.load(ref)
        assert "MAC" in str(refused.value) or "damaged" in str(refused.value)
    problems = [p for p in ws.verify().problems if p.kind in ("model", "row")]
    assert problems and all("adult-income" in p.subject for p in problems)


def test_home_without_row_macs_is_sealed_once(home: Home) -> None:
    """A home from before row MACs: sealed at the first open (audited), then strict."""
    keyring = json.loads((home.path / "keyring.json").read_text())
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        ring = ws.keyring
        ring._doc.pop("rows_sealed")  # the keyring as the previous version wrote it
        ring._save()
    with _db(home) as conn:
        for table in SEALED:
            conn.execute(f"UPDATE {table} SET mac = NULL")  # noqa: S608 - fixed names
    assert "rows_sealed" not in json.loads((home.path / "keyring.json").read_text())
    assert keyring.get("rows_sealed") is True
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        assert ws.keyring.rows_sealed
        assert ws.access.authenticate(home.token).principal == "admin"
        assert ws.verify().ok
    sealed = [a for a in _audit_actions(home) if a[0] == "rows.sealed"]
    assert len(sealed) == 2  # init's seeded permissions, and this upgrade
    with _db(home) as conn:  # from now on a row without a MAC is forged, not sealed
        conn.execute("UPDATE tokens SET mac = NULL")
    with pytest.raises(ForgedCredential):
        Workspace.open(home.path, PASSPHRASE, token=home.token)
    assert len([a for a in _audit_actions(home) if a[0] == "rows.sealed"]) == 2


# -- the campaign ----------------------------------------------------------------------------


def _mutate(rng: random.Random, value: Any) -> Any:
    """A different value, sometimes of another type."""
    choice = rng.random()
    if choice < 0.1:
        return None if value is not None else "x"
    if choice < 0.2 and not isinstance(value, bytes):
        return str(value) if not isinstance(value, str) else 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice([-1, 1, 1000])
    if isinstance(value, bytes):
        if not value:
            return b"\x00"
        i = rng.randrange(len(value))
        return value[:i] + bytes([value[i] ^ (1 << rng.randrange(8))]) + value[i + 1 :]
    if isinstance(value, str):
        edits = [
            value + rng.choice("0aZ*:"),
            value[:-1] if value else "*",
            "*",
            value.upper() if value != value.upper() else value.lower() + "x",
            "2099-01-01T00:00:00+00:00",
        ]
        new = rng.choice(edits)
        return new if new != value else value + "1"
    return "x"


@pytest.fixture
def populated(ws: Workspace) -> Workspace:
    for i in range(3):
        name = f"svc-{i}"
        ws.access.add_principal(name, "service", actor="admin")
        ws.access.grant(
            name, "consumer", resource_type="deployment", resource=f"d{i}", actor="admin"
        )
        ws.access.create_token(
            name, "consumer", resource_type="deployment", resource=f"d{i}", actor="admin"
        )
    ws.access.disable_principal("svc-2", actor="admin")
    for i in range(3):
        ws.store.put(f"artifact {i}".encode(), actor="admin", name=f"a{i}")
    lifted = ws.block_store.block("svc-0", "EXTRACTION_SUSPECTED", {"q": 50}, actor="monitor")
    ws.block_store.lift(lifted.id, reason="test", actor="admin")  # one lifted, one active
    ws.block_store.block("svc-1", "EXTRACTION_SUSPECTED", {"q": 60}, actor="monitor")
    ws.audit.checkpoint()
    return ws


_MODEL = {
    "name": "m",
    "version": 1,
    "digest": "a" * 64,
    "statement_id": "b" * 64,
    "run_id": "r",
    "status": "registered",
    "created": "2026-01-01T00:00:00+00:00",
    "record": "{}",
}


def test_mutation_campaign_every_edit_is_caught(populated: Workspace) -> None:
    ws = populated
    report = ws.verify()
    assert report.ok, report.problems  # 0 false reports on an untouched home
    # a model row sealed as the runner seals it (its history is the registry's business:
    # only the row's MAC is under test here)
    with ws.engine.begin() as conn:
        conn.execute(sa.insert(models).values(**ws.rows.sealed("models", _MODEL)))
    rng = random.Random(20261202)
    with ws.engine.connect() as conn:
        assert scan(conn, ws.rows) == []
        rows = {
            name: [dict(r._mapping) for r in conn.execute(sa.select(table))]
            for name, table in SEALED_TABLES.items()
        }
    targets = [(name, r) for name, found in rows.items() for r in found]
    assert len({name for name, _r in targets}) == len(SEALED)
    applied = caught = by_use = 0
    missed: list[tuple[str, str, Any, Any]] = []
    while applied < 1000:
        name, row = rng.choice(targets)
        key, sealed = SEALED[name]
        column = rng.choice([*key, *sealed, "mac"])
        new = _mutate(rng, row[column])
        table = SEALED_TABLES[name]
        where = [table.c[c] == row[c] for c in key]
        with ws.engine.connect() as conn:
            outer = conn.begin()
            try:
                changed = conn.execute(sa.update(table).where(*where).values({column: new}))
            except sa.exc.StatementError:  # NOT NULL, UNIQUE, a foreign key, a bad type
                outer.rollback()
                continue
            if changed.rowcount != 1:
                outer.rollback()
                continue
            after = [dict(r._mapping) for r in conn.execute(sa.select(table))]
            if after == rows[name]:  # SQLite's type affinity stored the very same value
                outer.rollback()
                continue
            applied += 1
            bad = scan(conn, ws.rows)  # what `bastion verify` reports
            if [b.table for b in bad] == [name]:
                caught += 1
            else:
                missed.append((name, column, row[column], new))
            outer.rollback()
        if name == "tokens" and column != "description" and applied % 10 == 0:
            by_use += _refused_where_used(ws, table, where, column, new, row)
    assert missed == []
    assert caught == applied == 1000
    assert by_use > 0
    with ws.engine.begin() as conn:
        assert scan(conn, ws.rows) == []  # every edit was rolled back
        conn.execute(sa.delete(models))
    assert ws.verify().ok


def _refused_where_used(
    ws: Workspace, table: sa.Table, where: list[Any], column: str, new: Any, row: dict[str, Any]
) -> int:
    """Commit one edit of a token row and show authentication refuses a known token of it;
    then put the row back. 1 when checked this way."""
    issued = ws.access.create_token("admin", "admin", actor="admin")
    token_id = issued.id
    with ws.engine.connect() as conn:  # to put back as it was (the sealed access state)
        original = dict(conn.execute(sa.select(table).where(table.c.id == token_id)).one()._mapping)
    with ws.engine.begin() as conn:
        try:
            conn.execute(sa.update(table).where(table.c.id == token_id).values({column: new}))
        except sa.exc.StatementError:
            return 0
    try:
        with pytest.raises(AuthError):
            ws.access.authenticate(issued.token)
    finally:
        with ws.engine.begin() as conn:
            conn.execute(
                sa.delete(table).where(table.c.id == (new if column == "id" else token_id))
            )
            conn.execute(sa.insert(table).values(**original))
    return 1
