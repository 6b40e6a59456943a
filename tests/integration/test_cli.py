"""The real ``bastion`` command in a subprocess, on a temporary home."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, Home, run_cli


def test_init_prints_the_admin_token_once_and_makes_a_private_home(tmp_path: Path) -> None:
    home = tmp_path / "h"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(BASTION_HOME=str(home), BASTION_MASTER_KEY=PASSPHRASE)
    res = run_cli(["init", "--scrypt-log-n", "14", "--json"], env)
    assert res.code == 0, res.err
    data = res.json()
    assert data["token"].startswith("bst_") and data["admin"] == "admin"
    assert home.stat().st_mode & 0o777 == 0o700
    for name in ("keyring.json", "bastion.db", "objects", "home.json"):
        assert (home / name).exists()
    raw = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    secret = data["token"].split("_", 2)[2]  # bst_<id>_<secret>; the secret may hold "_"
    assert len(secret) == 43 and secret.encode() not in raw  # stored only as a hash
    again = run_cli(["init", "--scrypt-log-n", "14"], env)
    assert again.code == 2 and "already exists" in again.err


def test_init_without_a_passphrase_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["BASTION_HOME"] = str(tmp_path / "h")
    res = run_cli(["init"], env, input="")
    assert res.code == 2
    assert "BASTION_MASTER_KEY" in res.err
    assert "Traceback" not in res.err


def test_put_get_list_verify_round_trip(home: Home, tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n1,2\n" * 1000)
    put = run_cli(["artifact", "put", str(src), "--media-type", "text/csv", "--json"], home.env())
    assert put.code == 0, put.err
    digest = put.json()["digest"]
    out = tmp_path / "back.csv"
    got = run_cli(["artifact", "get", digest, "-o", str(out), "--json"], home.env())
    assert got.code == 0, got.err
    assert out.read_bytes() == src.read_bytes()
    listed = run_cli(["artifact", "list", "--json"], home.env()).json()
    assert [a["digest"] for a in listed["artifacts"]] == [digest]
    ver = run_cli(["verify", "--json"], home.env())
    assert ver.code == 0, ver.out + ver.err
    report = ver.json()
    assert report["ok"] and report["artifacts"] == 1 and report["statements"] == 1


def test_verify_names_each_tampered_artifact_and_exits_1(home: Home, tmp_path: Path) -> None:
    digests = []
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_bytes(os.urandom(5000 + i))
        digests.append(run_cli(["artifact", "put", str(f), "--json"], home.env()).json()["digest"])
    for d in digests[:2]:
        blob = home.path / "objects" / d[:2] / d
        data = bytearray(blob.read_bytes())
        data[-100] ^= 0x40
        blob.write_bytes(bytes(data))
    res = run_cli(["verify", "--json"], home.env())
    assert res.code == 1
    problems = res.json()["problems"]
    assert sorted(p["subject"] for p in problems) == sorted(digests[:2])
    human = run_cli(["verify"], home.env())
    assert human.code == 1 and digests[0] in human.out and digests[1] in human.out


def test_audit_show_verify_checkpoint_and_detect_truncation(home: Home, tmp_path: Path) -> None:
    cp = tmp_path / "cp.json"
    assert run_cli(["audit", "checkpoint", "--export", str(cp)], home.env()).code == 0
    shown = run_cli(["audit", "show", "--json", "--limit", "3", "--oldest-first"], home.env())
    assert shown.code == 0
    entries = shown.json()["entries"]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["action"] == "home.init"
    ok = run_cli(["audit", "verify", "--checkpoint", str(cp), "--json"], home.env())
    assert ok.code == 0, ok.out + ok.err
    import sqlite3

    with sqlite3.connect(home.path / "bastion.db") as conn:
        last = conn.execute("SELECT max(seq) FROM audit_log").fetchone()[0]
        conn.execute("DELETE FROM audit_log WHERE seq = ?", (last,))
    bad = run_cli(["audit", "verify", "--checkpoint", str(cp), "--json"], home.env())
    assert bad.code == 1
    assert bad.json()["ok"] is False and bad.json()["problems"]


def test_token_create_list_revoke_and_role_limits(home: Home) -> None:
    made = run_cli(
        ["token", "create", "--role", "consumer", "--deployment", "adult", "--json"], home.env()
    )
    assert made.code == 0, made.err
    consumer = made.json()
    assert set(consumer) >= {"token", "id", "principal", "expires"}
    # a consumer may not read the audit log or mint tokens
    denied = run_cli(["audit", "show"], home.env(BASTION_TOKEN=consumer["token"]))
    assert denied.code == 1 and "audit:read" in denied.err
    listed = run_cli(["token", "list", "--json"], home.env()).json()["tokens"]
    assert consumer["id"] in {t["id"] for t in listed}
    assert consumer["token"] not in json.dumps(listed)
    assert run_cli(["token", "revoke", consumer["id"]], home.env()).code == 0
    gone = run_cli(["audit", "show"], home.env(BASTION_TOKEN=consumer["token"]))
    assert gone.code == 1 and "invalid or expired token" in gone.err  # access failed
    auditor = run_cli(["token", "create", "--role", "auditor", "--json"], home.env()).json()
    assert run_cli(["audit", "verify"], home.env(BASTION_TOKEN=auditor["token"])).code == 0
    assert run_cli(["keys", "rotate"], home.env(BASTION_TOKEN=auditor["token"])).code == 1


def test_denied_actions_are_audited(home: Home) -> None:
    consumer = run_cli(["token", "create", "--role", "consumer", "--json"], home.env()).json()
    run_cli(["keys", "rotate"], home.env(BASTION_TOKEN=consumer["token"]))
    shown = run_cli(["audit", "show", "--json", "--limit", "1000"], home.env()).json()
    denied = [e for e in shown["entries"] if e["outcome"] == "denied"]
    assert denied and denied[-1]["action"] == "keys:rotate"
    assert denied[-1]["actor"] == consumer["principal"]


def test_keys_rotate_rewraps_and_retires(home: Home, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"secret rows" * 100)
    run_cli(["artifact", "put", str(f)], home.env())
    res = run_cli(["keys", "rotate", "--json"], home.env())
    assert res.code == 0, res.err
    report = res.json()
    assert report["rewrapped"] == 1 and len(report["retired"]) == 1
    keys = run_cli(["keys", "list", "--json"], home.env()).json()["keys"]
    states = {k["id"]: k["state"] for k in keys}
    assert states[report["new_kek"]] == "active"
    assert states[report["retired"][0]] == "retired"
    assert run_cli(["verify"], home.env()).code == 0


def test_keys_rotate_pseudonym_replaces_and_erases_the_pseudonym_key(home: Home) -> None:
    before = run_cli(["keys", "list", "--json"], home.env()).json()["keys"]
    (old,) = [k["id"] for k in before if k["kind"] == "pseudonym"]
    res = run_cli(["keys", "rotate", "--pseudonym", "--json"], home.env())
    assert res.code == 0, res.err
    new = res.json()["new_pseudonym_key"]
    assert new.startswith("psk-") and new != old
    keys = run_cli(["keys", "list", "--json"], home.env()).json()["keys"]
    states = {k["id"]: (k["kind"], k["state"]) for k in keys}
    assert states[old] == ("pseudonym", "retired")
    assert states[new] == ("pseudonym", "active")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["token", "create", "--role", "overlord"], "role"),
        (["token", "create", "--role", "consumer", "--expires-in", "forever"], "--expires-in"),
        (["artifact", "get", "not-a-digest", "-o", "x"], "digest"),
        (["artifact", "put", "/no/such/file"], "/no/such/file"),
        (["audit", "show", "--limit", "0"], "--limit"),
        (["no-such-command"], "No such command"),
        (["token", "revoke", "bst0000"], "bst0000"),
    ],
)
def test_bad_input_exits_2_with_a_one_line_message(
    home: Home, args: list[str], needle: str
) -> None:
    res = run_cli(args, home.env())
    assert res.code == 2, (res.code, res.err)
    assert needle in res.err
    assert "Traceback" not in res.err


def test_wrong_passphrase_and_token_are_bland(home: Home) -> None:
    """Given and refused: access failed (exit 1), not bad usage."""
    res = run_cli(["audit", "show"], home.env(BASTION_MASTER_KEY="not the passphrase at all"))
    assert res.code == 1 and res.err.strip() == "error: wrong passphrase or damaged keyring"
    res = run_cli(["audit", "show"], home.env(BASTION_TOKEN="bst_0123456789abcdef_nope"))
    assert res.code == 1 and res.err.strip() == "error: invalid or expired token"


def test_debug_shows_a_traceback(home: Home) -> None:
    res = run_cli(["audit", "show", "--debug"], home.env(BASTION_TOKEN="bst_x_y"))
    assert res.code != 0 and "Traceback" in res.err


def test_help_does_not_import_the_heavy_modules(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from bastion.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'cryptography', 'bastion.workspace')"
        " if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    assert out == "HEAVY="
