"""The keyring: sealed under a passphrase, atomic, bland about secrets, strict about life cycle."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bastion.errors import (
    AuthError,
    ConfigError,
    IntegrityError,
    KeyringError,
    SignatureError,
    UnknownKeyError,
)
from bastion.security.keys import LocalKeyring, verify_ed25519

PASS = "a long test passphrase"


@pytest.fixture
def ring(tmp_path: Path) -> LocalKeyring:
    return LocalKeyring.create(tmp_path / "keyring.json", PASS, scrypt_log_n=14)


def test_new_keyring_has_one_active_key_of_each_kind(ring: LocalKeyring) -> None:
    kinds = sorted((k.kind, k.state) for k in ring.keys())
    assert kinds == [("kek", "active"), ("pseudonym", "active"), ("signing", "active")]


def test_keyring_file_is_private_and_holds_no_plain_material(
    ring: LocalKeyring, tmp_path: Path
) -> None:
    path = tmp_path / "keyring.json"
    assert path.stat().st_mode & 0o777 == 0o600
    dek = os.urandom(32)
    wrapped = ring.wrap(ring.active_kek(), dek, b"aad")
    reopened = LocalKeyring.open(path, PASS)
    assert reopened.unwrap(ring.active_kek(), wrapped, b"aad") == dek
    raw = path.read_bytes()
    assert PASS.encode() not in raw


def test_wrong_passphrase_gets_one_bland_error(ring: LocalKeyring, tmp_path: Path) -> None:
    with pytest.raises(AuthError, match=r"^wrong passphrase or damaged keyring$"):
        LocalKeyring.open(tmp_path / "keyring.json", PASS + "!")


@pytest.mark.parametrize("edit", ["state", "delete_key", "swap_material"])
def test_edited_keyring_is_refused_with_the_same_bland_error(
    ring: LocalKeyring, tmp_path: Path, edit: str
) -> None:
    ring.add_kek()
    path = tmp_path / "keyring.json"
    doc = json.loads(path.read_text())
    keks = [k for k in doc["keys"] if k["kind"] == "kek"]
    if edit == "state":
        keks[0]["state"] = "active"
        keks[1]["state"] = "decrypt-only"
    elif edit == "delete_key":
        doc["keys"].remove(keks[0])
    else:
        keks[0]["material"], keks[1]["material"] = keks[1]["material"], keks[0]["material"]
    path.write_text(json.dumps(doc))
    with pytest.raises(AuthError, match=r"^wrong passphrase or damaged keyring$"):
        LocalKeyring.open(path, PASS)


def test_short_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 12 characters"):
        LocalKeyring.create(tmp_path / "k.json", "short", scrypt_log_n=14)


def test_existing_keyring_is_never_overwritten(ring: LocalKeyring, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already exists"):
        LocalKeyring.create(tmp_path / "keyring.json", PASS, scrypt_log_n=14)


def test_not_a_keyring_is_an_integrity_error(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text("{not json")
    with pytest.raises(IntegrityError):
        LocalKeyring.open(tmp_path / "k.json", PASS)


def test_unwrap_with_other_associated_data_is_refused(ring: LocalKeyring) -> None:
    wrapped = ring.wrap(ring.active_kek(), os.urandom(32), b"blob-a")
    with pytest.raises(IntegrityError):
        ring.unwrap(ring.active_kek(), wrapped, b"blob-b")


def test_unknown_key_id_is_refused(ring: LocalKeyring) -> None:
    with pytest.raises(UnknownKeyError):
        ring.unwrap("kek-0000000000000000", b"\0" * 60, b"")


def test_rotation_keeps_old_kek_for_decryption_until_retired(ring: LocalKeyring) -> None:
    old = ring.active_kek()
    wrapped = ring.wrap(old, b"k" * 32, b"a")
    new = ring.add_kek()
    assert ring.active_kek() == new
    assert ring.unwrap(old, wrapped, b"a") == b"k" * 32
    with pytest.raises(KeyringError, match="still wraps"):
        ring.retire_kek(old, in_use={old})
    with pytest.raises(KeyringError, match="active KEK cannot be retired"):
        ring.retire_kek(new, in_use=set())
    ring.retire_kek(old, in_use=set())
    with pytest.raises(UnknownKeyError):
        ring.unwrap(old, wrapped, b"a")
    states = {k.id: k.state for k in ring.keys()}
    assert states[old] == "retired"


def test_retired_material_is_erased_from_the_file(ring: LocalKeyring, tmp_path: Path) -> None:
    old = ring.active_kek()
    ring.add_kek()
    ring.retire_kek(old, in_use=set())
    doc = json.loads((tmp_path / "keyring.json").read_text())
    entry = next(k for k in doc["keys"] if k["id"] == old)
    assert "material" not in entry
    LocalKeyring.open(tmp_path / "keyring.json", PASS)  # still opens


def test_old_signing_keys_still_verify_after_rotation(ring: LocalKeyring) -> None:
    old = ring.active_signing_key()
    sig = ring.sign(old, b"message")
    ring.add_signing_key()
    verify_ed25519(ring.public_key(old), sig, b"message")
    with pytest.raises(SignatureError):
        verify_ed25519(ring.public_key(old), sig, b"other message")
