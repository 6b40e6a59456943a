"""Rewriting the audit history with write access to the home but no passphrase.

The attacker edits ``bastion.db`` with plain SQL: deletes checkpoint rows, erases or edits
entries, renumbers what is left and recomputes every leaf, chain value and the head exactly
as the writer does, so that the rows alone check. What they cannot do is sign: the home's
sealed anchor (``audit-anchor.json``, the newest tree head signed with the keyring's key)
still says how far the log reached and what it said. Every attack here is found by the real
``bastion audit verify`` and ``bastion verify`` with no exported checkpoint, and the writer
refuses to sign the forged history. The last tests pin down the window that remains:
entries after the newest anchor, and an older genuine anchor put back.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Container
from pathlib import Path

import pytest

from bastion import Workspace
from bastion.security.merkle import leaf_hash
from tests.conftest import PASSPHRASE, Home, Result, run_cli

ENTRIES = 2_500  # after the init entries: checkpoints at 1,000 and 2,000; anchored at close
ANCHOR = "audit-anchor.json"


def fill(home: Home, count: int = ENTRIES) -> int:
    """Append ``count`` entries through the real workspace and close it; the log's size."""
    with Workspace.open(home.path, PASSPHRASE, token=home.token) as ws:
        futures = [
            ws.audit.submit("svc-api", "model.predict", "deployment:fraud", details={"i": i})
            for i in range(count)
        ]
        for future in futures:
            future.result()
        if count:  # an alarm worth erasing
            ws.audit.record("monitor", "extraction.alarm", "deployment:fraud", "failed")
        return ws.audit.head()[0]


def db(home: Home) -> sqlite3.Connection:
    return sqlite3.connect(home.path / "bastion.db")


def rewrite(home: Home, *, drop: Container[int] = (), edit: bool = False) -> int:
    """Forge the rows as the writer would have written them: drop the entries whose seq is
    in ``drop``, with ``edit`` turn the extraction alarm into a harmless prediction, renumber
    what is left 1..n, recompute every leaf, chain value and the head. Returns n."""
    with db(home) as conn:
        rows = conn.execute(
            "SELECT seq, ts, actor, action, resource, outcome, details FROM audit_log ORDER BY seq"
        ).fetchall()
        kept = [r for r in rows if r[0] not in drop]
        conn.execute("DELETE FROM audit_log")
        chain = bytes(32)
        for seq, (_old, ts, actor, action, resource, outcome, details) in enumerate(kept, 1):
            if edit and action == "extraction.alarm":
                action, outcome = "model.predict", "ok"
            leaf = leaf_hash("\0".join(map(str, (seq, ts, actor, action, resource, outcome,
                                                   details))).encode())  # fmt: skip
            chain = hashlib.sha256(chain + leaf).digest()
            conn.execute(
                "INSERT INTO audit_log (seq, ts, actor, action, resource, outcome, details, chain)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (seq, ts, actor, action, resource, outcome, details, chain),
            )
        conn.execute("UPDATE audit_head SET seq = ?, chain = ? WHERE id = 1", (len(kept), chain))
    return len(kept)


def truncate(home: Home, after: int) -> None:
    """Drop every entry after ``after`` and point the head at the last one kept."""
    with db(home) as conn:
        conn.execute("DELETE FROM audit_log WHERE seq > ?", (after,))
        conn.execute("DELETE FROM audit_checkpoints WHERE tree_size > ?", (after,))
        (chain,) = conn.execute("SELECT chain FROM audit_log WHERE seq = ?", (after,)).fetchone()
        conn.execute("UPDATE audit_head SET seq = ?, chain = ? WHERE id = 1", (after, chain))


def checkpoint_rows(home: Home) -> int:
    with db(home) as conn:
        return int(conn.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0])


def audit_verify(home: Home) -> Result:
    return run_cli(["audit", "verify", "--json"], home.env())


def home_verify(home: Home) -> Result:
    return run_cli(["verify", "--json"], home.env())


def kinds(result: Result) -> set[str]:
    """The problem kinds ``bastion audit verify --json`` printed."""
    return {p.split(":", 1)[0] for p in result.json()["problems"]}


def audit_messages(result: Result) -> str:
    """The audit problems ``bastion verify --json`` printed, as one text."""
    return "\n".join(p["message"] for p in result.json()["problems"] if p["kind"] == "audit")


# -- the attacks ------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ["erase", "rewrite"])
def test_deleted_checkpoints_and_recomputed_history_are_detected(home: Home, attack: str) -> None:
    size = fill(home)
    assert checkpoint_rows(home) >= 3  # init, 1,000, 2,000
    with db(home) as conn:
        conn.execute("DELETE FROM audit_checkpoints")
    if attack == "erase":  # 1,001 entries gone and the alarm (the last); no gap left behind
        assert rewrite(home, drop={*range(1_500, 2_501), size}) == size - 1_002
        expected = {"truncated", "checkpoint-deleted"}
    else:  # same length, the alarm turned into a prediction
        assert rewrite(home, edit=True) == size
        expected = {"fork", "checkpoint-deleted"}

    res = audit_verify(home)
    assert res.code == 1, res.out + res.err
    assert res.json()["ok"] is False
    assert kinds(res) == expected
    assert "checkpoint rows were deleted" in res.out

    whole = home_verify(home)
    assert whole.code == 1, whole.out + whole.err
    messages = audit_messages(whole)
    assert "checkpoint rows were deleted" in messages
    assert ("entries were removed" if attack == "erase" else "history was rewritten") in messages


def test_truncation_after_last_checkpoint_is_detected(home: Home) -> None:
    size = fill(home)  # the last checkpoint row is at 2,000; the anchor, made at close, is at size
    with db(home) as conn:
        (last_row,) = conn.execute("SELECT max(tree_size) FROM audit_checkpoints").fetchone()
    assert last_row < size
    assert json.loads((home.path / ANCHOR).read_text())["tree_size"] == size
    truncate(home, size - 1)  # the alarm, the newest entry, is gone; no checkpoint touched

    res = audit_verify(home)
    assert res.code == 1, res.out
    assert kinds(res) == {"truncated"}
    assert f"the anchor covers {size} entries but the log holds {size - 1}" in res.out
    whole = home_verify(home)
    assert whole.code == 1 and "entries were removed" in audit_messages(whole)


def test_checkpoint_refuses_to_sign_forged_history(home: Home) -> None:
    fill(home)
    anchor_before = (home.path / ANCHOR).read_bytes()
    with db(home) as conn:
        conn.execute("DELETE FROM audit_checkpoints")
    rewrite(home, edit=True)

    res = run_cli(["audit", "checkpoint", "--json"], home.env())
    assert res.code == 1
    assert "does not extend its anchor" in res.err
    assert checkpoint_rows(home) == 0  # nothing was signed
    assert (home.path / ANCHOR).read_bytes() == anchor_before  # and the anchor stands
    assert kinds(audit_verify(home)) == {"fork", "checkpoint-deleted"}


def test_checkpoint_refuses_to_sign_a_truncated_history(home: Home) -> None:
    size = fill(home)
    truncate(home, size - 10)
    res = run_cli(["audit", "checkpoint", "--json"], home.env())
    assert res.code == 1 and "does not extend its anchor" in res.err
    with db(home) as conn:
        (largest,) = conn.execute("SELECT max(tree_size) FROM audit_checkpoints").fetchone()
    assert largest < size - 10


@pytest.mark.parametrize("tamper", ["edited", "deleted", "garbage", "other-home"])
def test_anchor_file_tampering_is_detected(home: Home, tmp_path: Path, tamper: str) -> None:
    fill(home, 10)
    path = home.path / ANCHOR
    doc = json.loads(path.read_text())
    if tamper == "edited":  # claims fewer entries, so that some could be erased
        doc["tree_size"] -= 5
        path.write_text(json.dumps(doc))
        expected = "anchor-signature"
    elif tamper == "deleted":
        path.unlink()
        expected = "anchor"
    elif tamper == "garbage":
        path.write_text("{not json")
        expected = "anchor"
    else:  # a genuine anchor, signed by another home's key
        ws, _ = Workspace.init(tmp_path / "other", PASSPHRASE, scrypt_log_n=14)
        ws.close()
        shutil.copyfile(tmp_path / "other" / ANCHOR, path)
        expected = "anchor-key"

    res = audit_verify(home)
    assert res.code == 1, res.out
    assert kinds(res) == {expected}
    assert ANCHOR in res.out
    whole = home_verify(home)
    assert whole.code == 1 and ANCHOR in audit_messages(whole)
    # the writer does not make a fresh anchor for whatever the database now holds
    refused = run_cli(["audit", "checkpoint"], home.env())
    assert refused.code == 1 and "does not extend its anchor" in refused.err
    if tamper == "deleted":
        assert not path.exists()


def test_untouched_home_verifies_clean(home: Home) -> None:
    size = fill(home)
    res = audit_verify(home)
    assert res.code == 0, res.out + res.err
    assert res.json()["entries"] == size and res.json()["anchored"] == size
    whole = home_verify(home)
    assert whole.code == 0, whole.out
    assert whole.json()["problems"] == []
    made = run_cli(["audit", "checkpoint", "--json"], home.env())
    assert made.code == 0, made.err
    again = audit_verify(home)
    assert again.code == 0 and again.json()["anchored"] == again.json()["entries"]


# -- the window that remains (docs/formats/checkpoint.md, "What remains") --------------------


def test_entries_after_the_newest_anchor_are_the_window(home: Home) -> None:
    """A process that dies without closing the log leaves its entries after the last
    checkpoint unanchored: erasing those goes unseen in the home (fewer than the checkpoint
    interval). Entries the anchor covers stay protected."""
    size = fill(home, 1_100)  # anchored at close
    code = (
        "import os\n"
        "from bastion import Workspace\n"
        f"ws = Workspace.open({str(home.path)!r}, {PASSPHRASE!r}, token={home.token!r})\n"
        "for i in range(20):\n"
        "    ws.audit.record('svc-api', 'model.predict', 'deployment:fraud')\n"
        "os._exit(0)\n"  # no close: no anchor for these 20
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert json.loads((home.path / ANCHOR).read_text())["tree_size"] == size
    truncate(home, size)
    assert audit_verify(home).code == 0  # the window: 20 unanchored entries erased unseen
    truncate(home, size - 1)
    assert kinds(audit_verify(home)) == {"truncated"}


def test_a_rolled_back_anchor_exposes_only_what_came_after_it(home: Home, tmp_path: Path) -> None:
    """An older genuine anchor put back verifies: everything after it can then be erased.
    This is why checkpoints are also exported off the home."""
    first = json.loads((home.path / ANCHOR).read_text())["tree_size"]
    old = tmp_path / "old-anchor.json"
    shutil.copyfile(home.path / ANCHOR, old)  # a copy the attacker kept
    size = fill(home, 50)
    exported = tmp_path / "exported.json"
    assert run_cli(["audit", "checkpoint", "--export", str(exported)], home.env()).code == 0
    truncate(home, first + 10)
    assert kinds(audit_verify(home)) == {"truncated"}  # the current anchor catches it

    shutil.copyfile(old, home.path / ANCHOR)  # rolled back: entries after it are exposed
    assert audit_verify(home).code == 0
    truncate(home, first)
    assert audit_verify(home).code == 0
    caught = run_cli(["audit", "verify", "--json", "--checkpoint", str(exported)], home.env())
    assert caught.code == 1 and kinds(caught) == {"truncated"}  # an export off the home does
    assert size > first + 10
