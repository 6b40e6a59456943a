"""Homes made before the audit anchor and the access state: the first open with the
passphrase adopts both (trust on first use, audited, recorded in the keyring), and from
then on a deleted anchor or access state is an attack, refused and reported."""

from __future__ import annotations

import json

from bastion.security.access_state import STATE_FILE
from bastion.security.anchor import ANCHOR_FILE
from tests.conftest import Home, run_cli


def _as_before_the_upgrade(home: Home) -> None:
    """The home as the previous version left it: no anchor, no access state, and a keyring
    that says neither (its flags cleared under its own MAC, as that version wrote it)."""
    with home.open() as ws:
        ws.create_token("consumer")  # some history before the upgrade
        ring = ws.keyring
        ring._doc.pop("audit_anchored")
        ring._doc.pop("access_sealed")
        ring._save()
    (home.path / ANCHOR_FILE).unlink()
    (home.path / STATE_FILE).unlink()


def _actions(home: Home) -> list[str]:
    res = run_cli(["audit", "show", "--limit", "1000", "--json"], home.env())
    assert res.code == 0, res.err
    return [e["action"] for e in res.json()["entries"]]


def test_home_from_before_the_anchor_adopts_one(home: Home) -> None:
    _as_before_the_upgrade(home)
    made = run_cli(["token", "create", "--role", "consumer", "--json"], home.env())
    assert made.code == 0, made.err  # opens and appends
    keyring = json.loads((home.path / "keyring.json").read_text())
    assert keyring["audit_anchored"] is True and keyring["access_sealed"] is True
    anchor = json.loads((home.path / ANCHOR_FILE).read_text())
    assert anchor["tree_size"] > 0
    actions = _actions(home)
    assert actions.count("audit.anchored") == 1 and actions.count("access.sealed") == 2
    assert run_cli(["audit", "verify"], home.env()).code == 0
    res = run_cli(["verify", "--json"], home.env())
    assert res.code == 0, res.out
    run_cli(["token", "list"], home.env())
    assert _actions(home).count("audit.anchored") == 1  # once


def test_deleted_anchor_of_an_anchored_home_is_refused(home: Home) -> None:
    (home.path / ANCHOR_FILE).unlink()
    res = run_cli(["token", "create", "--role", "consumer"], home.env())
    assert res.code == 1 and "does not extend its anchor" in res.err
    assert not (home.path / ANCHOR_FILE).exists()  # never made again
    report = run_cli(["verify", "--json"], home.env())
    assert report.code == 1
    assert any(p["kind"] == "audit" and "anchor" in p["message"] for p in report.json()["problems"])
