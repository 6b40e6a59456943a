"""The blocks table: a block and its lifting are recorded, audited, MAC'd and authorized.

Attacks: a block row edited to look lifted (or a lifted row forged) is never read as lifted;
lifting a forged row would launder it and is refused; a consumer cannot list or lift.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bastion import Workspace
from bastion.errors import AccessDenied, ConfigError, ForgedRow, NotFound, StateError
from bastion.security.blocks import EXTRACTION_SUSPECTED, Block
from bastion.security.schema import audit_log
from bastion.store.db import blocks
from tests.conftest import PASSPHRASE

DETAIL = {"deployment": "adult-income", "detector": "coverage", "statistic": 0.9, "queries": 50}


def _block(ws: Workspace, principal: str = "svc-thief") -> Block:
    return ws.block_store.block(principal, EXTRACTION_SUSPECTED, DETAIL, actor="extraction-monitor")


def _actions(ws: Workspace) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    c = audit_log.c
    with ws.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.actor, c.action, c.resource, c.outcome, c.details).order_by(c.seq)
        ).all()
    return [(a, b, r, o, json.loads(d)) for a, b, r, o, d in rows]


def _db(ws: Workspace) -> sqlite3.Connection:
    return sqlite3.connect(Path(ws.home) / "bastion.db")


def test_a_block_is_recorded_audited_listed_and_lifted(workspace: Workspace) -> None:
    ws = workspace
    blk = _block(ws)
    assert blk.active and blk.code == EXTRACTION_SUSPECTED and len(blk.id) == 16
    assert _block(ws).id == blk.id  # one active block per principal
    assert [b.id for b in ws.blocks.list()] == [blk.id]
    assert ws.block_store.enforced() == {"svc-thief": blk}
    lifted = ws.blocks.lift(blk.id, reason="batch test, confirmed with the owner")
    assert not lifted.active and lifted.lifted_by == "admin"
    assert ws.blocks.list() == []
    assert [b.lift_reason for b in ws.blocks.list(active_only=False)] == [
        "batch test, confirmed with the owner"
    ]
    assert ws.block_store.enforced() == {}
    assert ws.block_store.lifted([blk.id, "0" * 16]) == {blk.id}
    audited = [(a, act, r, o) for a, act, r, o, _ in _actions(ws) if act.startswith("serve.")]
    assert audited == [
        ("extraction-monitor", "serve.block", "principal:svc-thief", "denied"),
        ("admin", "serve.unblock", f"block:{blk.id}", "ok"),
    ]
    again = _block(ws)  # a new alarm after the lift is a new block
    assert again.id != blk.id and again.active
    assert ws.verify().ok


def test_lift_refuses_bad_input_unknown_and_lifted_blocks(workspace: Workspace) -> None:
    ws = workspace
    blk = _block(ws)
    with pytest.raises(ConfigError, match="block id: expected 16 lowercase hex digits"):
        ws.blocks.lift("nope", reason="x")
    with pytest.raises(ConfigError, match="reason: expected 1 to 500 printable"):
        ws.blocks.lift(blk.id, reason="  ")
    with pytest.raises(NotFound, match="no such block"):
        ws.blocks.lift("0" * 16, reason="x")
    ws.blocks.lift(blk.id, reason="ok")
    with pytest.raises(StateError, match="already lifted"):
        ws.blocks.lift(blk.id, reason="twice")


def test_a_forged_lift_is_refused_and_the_block_stays_enforced(workspace: Workspace) -> None:
    ws = workspace
    blk = _block(ws)
    with _db(ws) as conn:  # the attacker can write the database, not compute a MAC
        conn.execute(
            "UPDATE blocks SET lifted = '2026-12-05T00:00:00+00:00', lifted_by = 'admin',"
            " lift_reason = 'ok' WHERE id = ?",
            (blk.id,),
        )
    assert set(ws.block_store.enforced()) == {"svc-thief"}  # still blocked
    assert ws.block_store.lifted([blk.id]) == set()
    with pytest.raises(ForgedRow, match=f"blocks row \\(id={blk.id}\\)"):
        ws.blocks.list(active_only=False)
    with pytest.raises(ForgedRow):
        ws.blocks.lift(blk.id, reason="launder it")
    refused = [(r, d["use"]) for _, act, r, _, d in _actions(ws) if act == "row.refused"]
    assert refused == [(f"blocks:id={blk.id}", "enforce")]  # reported once per row
    report = ws.verify()
    assert not report.ok and any("blocks" in str(p) for p in report.problems)


def test_a_forged_lifted_row_inserted_outright_does_not_check(workspace: Workspace) -> None:
    ws = workspace
    row = {
        "id": "ab" * 8,
        "principal": "svc-thief",
        "code": EXTRACTION_SUSPECTED,
        "created": "2026-12-05T00:00:00+00:00",
        "created_by": "extraction-monitor",
        "detail": "{}",
        "lifted": "2026-12-05T00:00:01+00:00",
        "lifted_by": "admin",
        "lift_reason": "forged",
        "mac": b"\0" * 32,
    }
    with ws.engine.begin() as conn:
        conn.execute(sa.insert(blocks).values(**row))
    assert ws.block_store.lifted([row["id"]]) == set()
    assert set(ws.block_store.enforced()) == {"svc-thief"}  # fail closed: counted as active


def test_only_serve_admin_may_list_or_lift(workspace: Workspace) -> None:
    ws = workspace
    blk = _block(ws)
    issued = ws.create_token("consumer", expires_in=timedelta(days=1))
    with Workspace.open(ws.home, PASSPHRASE, token=issued.token) as consumer:
        with pytest.raises(AccessDenied, match="may not serve:admin"):
            consumer.blocks.list()
        with pytest.raises(AccessDenied, match="may not serve:admin"):
            consumer.blocks.lift(blk.id, reason="let me in")
    assert ws.blocks.get(blk.id).active
    denied = [a for a, act, _, o, _ in _actions(ws) if (act, o) == ("serve:admin", "denied")]
    assert denied == [issued.principal] * 2


def test_a_deleted_block_row_stays_enforced_from_the_audit_log(workspace: Workspace) -> None:
    ws = workspace
    kept = _block(ws, "svc-thief")
    done = _block(ws, "svc-tester")
    ws.blocks.lift(done.id, reason="reviewed")
    with _db(ws) as conn:  # the attacker deletes both rows
        conn.execute("DELETE FROM blocks")
    enforced = ws.block_store.enforced()
    assert set(enforced) == {"svc-thief"} and enforced["svc-thief"].id == kept.id
    assert [b.id for b in ws.block_store.missing()] == [kept.id, done.id]
    missing = [(r, d["use"]) for _, act, r, _, d in _actions(ws) if act == "row.missing"]
    assert missing == [(f"blocks:id={kept.id}", "enforce")]
    report = ws.verify()
    gone = [p.subject for p in report.problems if "its row is gone" in p.message]
    assert not report.ok and gone == [f"blocks:id={kept.id}", f"blocks:id={done.id}"]


@pytest.mark.postgres
def test_blocks_on_postgresql_forged_lift_refused(postgres_url: str, tmp_path: Path) -> None:
    ws, _ = Workspace.init(
        tmp_path / "pg-home", PASSPHRASE, database_url=postgres_url, scrypt_log_n=14
    )
    try:
        blk = _block(ws)
        with ws.engine.begin() as conn:  # the attacker writes the database directly
            conn.execute(
                sa.update(blocks)
                .where(blocks.c.id == blk.id)
                .values(lifted="2026-12-05T00:00:00+00:00", lifted_by="admin", lift_reason="x")
            )
        assert set(ws.block_store.enforced()) == {"svc-thief"}
        with pytest.raises(ForgedRow):
            ws.blocks.lift(blk.id, reason="launder it")
        other = _block(ws, "svc-other")
        assert not ws.blocks.lift(other.id, reason="reviewed").active
        assert set(ws.block_store.enforced()) == {"svc-thief"}
    finally:
        ws.close()
