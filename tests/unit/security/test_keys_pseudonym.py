"""Pseudonym keys: stable tokens under one key, unlinkable after rotation, never the material.

Also: every change to the keyring is made on the file as it is on disk, so a second handle
(another process) never overwrites keys that the first one added.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.errors import AuthError, ConfigError, UnknownKeyError
from bastion.security.keys import LocalKeyring

PASS = "a long test passphrase"
TOKEN = re.compile(r"^p_[0-9a-f]{32}$")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keyring.json"


@pytest.fixture
def ring(path: Path) -> LocalKeyring:
    return LocalKeyring.create(path, PASS, scrypt_log_n=14)


def _old_keyring(path: Path) -> None:
    """A keyring as written before pseudonym keys existed: a KEK and a signing key only."""
    ring = LocalKeyring.create(path, PASS, scrypt_log_n=14)
    gone = ring.active_pseudonym_key()
    ring._doc["keys"] = [k for k in ring._doc["keys"] if k["kind"] != "pseudonym"]
    ring._material.pop(gone)
    ring._save()


def test_new_keyring_has_an_active_pseudonym_key(ring: LocalKeyring) -> None:
    key_id = ring.active_pseudonym_key()
    assert key_id.startswith("psk-")
    info = next(k for k in ring.keys() if k.id == key_id)
    assert (info.kind, info.state, info.public_key) == ("pseudonym", "active", None)


def test_token_is_p_underscore_and_128_bits_of_hmac_under_an_hkdf_domain_key(
    ring: LocalKeyring,
) -> None:
    # The format, computed independently: HKDF-SHA256(material, info=prefix|domain), then
    # HMAC-SHA256 of the UTF-8 value, first 32 hex characters.
    key_id = ring.active_pseudonym_key()
    material = ring._material[key_id]
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion pseudonym v1|email"
    ).derive(material)
    expected = "p_" + hmac.new(derived, "zoë@example.org".encode(), hashlib.sha256).hexdigest()[:32]
    assert ring.pseudonymize(key_id, "email", ["zoë@example.org"]) == [expected]


def test_equal_values_get_equal_tokens_and_domains_are_separate(ring: LocalKeyring) -> None:
    key_id = ring.active_pseudonym_key()
    tokens = ring.pseudonymize(key_id, "email", ["a@x.org", "b@x.org", "a@x.org", ""])
    assert all(TOKEN.match(t) for t in tokens)
    assert tokens[0] == tokens[2] != tokens[1]
    assert len(set(tokens)) == 3
    other = ring.pseudonymize(key_id, "customer", ["a@x.org"])
    assert other[0] != tokens[0]


def test_pseudonyms_are_stable_across_opens_of_one_keyring(ring: LocalKeyring, path: Path) -> None:
    key_id = ring.active_pseudonym_key()
    first = ring.pseudonymize(key_id, "ssn", ["123-45-6789", "987-65-4321"])
    again = LocalKeyring.open(path, PASS)
    assert again.active_pseudonym_key() == key_id
    assert again.pseudonymize(key_id, "ssn", ["123-45-6789", "987-65-4321"]) == first


def test_rotation_changes_every_pseudonym_and_erases_the_old_key(
    ring: LocalKeyring, path: Path
) -> None:
    values = [f"user{i}@example.org" for i in range(100)]
    old = ring.active_pseudonym_key()
    before = ring.pseudonymize(old, "email", values)
    new = ring.add_pseudonym_key()
    assert new != old and ring.active_pseudonym_key() == new
    after = ring.pseudonymize(new, "email", values)
    assert not set(before) & set(after)
    states = {k.id: k.state for k in ring.keys()}
    assert (states[old], states[new]) == ("retired", "active")
    entry = next(k for k in json.loads(path.read_text())["keys"] if k["id"] == old)
    assert "material" not in entry
    with pytest.raises(UnknownKeyError):
        ring.pseudonymize(old, "email", values)  # old pseudonyms can no longer be made
    reopened = LocalKeyring.open(path, PASS)
    assert reopened.pseudonymize(new, "email", values) == after


def test_only_a_pseudonym_key_makes_pseudonyms(ring: LocalKeyring) -> None:
    with pytest.raises(UnknownKeyError, match="not a usable pseudonym key"):
        ring.pseudonymize(ring.active_kek(), "email", ["a"])
    with pytest.raises(UnknownKeyError):
        ring.pseudonymize("psk-0000000000000000", "email", ["a"])
    with pytest.raises(ConfigError, match="domain"):
        ring.pseudonymize(ring.active_pseudonym_key(), "", ["a"])


def test_a_keyring_from_before_pseudonym_keys_opens_and_gets_one_once(path: Path) -> None:
    _old_keyring(path)
    ring = LocalKeyring.open(path, PASS)
    assert sorted(k.kind for k in ring.keys()) == ["kek", "signing"]
    key_id = ring.active_pseudonym_key()
    assert key_id.startswith("psk-")
    assert LocalKeyring.open(path, PASS).active_pseudonym_key() == key_id  # saved


def test_two_handles_on_an_old_keyring_agree_on_one_pseudonym_key(path: Path) -> None:
    _old_keyring(path)
    first, second = LocalKeyring.open(path, PASS), LocalKeyring.open(path, PASS)
    made = first.active_pseudonym_key()
    assert second.active_pseudonym_key() == made  # re-read under the lock, not made twice
    kinds = [k.kind for k in LocalKeyring.open(path, PASS).keys()]
    assert kinds.count("pseudonym") == 1


def test_a_stale_handle_never_overwrites_keys_added_elsewhere(path: Path) -> None:
    first = LocalKeyring.create(path, PASS, scrypt_log_n=14)
    second = LocalKeyring.open(path, PASS)
    kek_a = first.add_kek()
    wrapped = first.wrap(kek_a, os.urandom(32), b"blob")
    kek_b = second.add_kek()  # made on the file as it is now, which holds kek_a
    assert len(second.unwrap(kek_a, wrapped, b"blob")) == 32
    ids = {k.id for k in LocalKeyring.open(path, PASS).keys()}
    assert {kek_a, kek_b} <= ids


def test_a_change_to_a_file_edited_since_opening_is_refused(ring: LocalKeyring, path: Path) -> None:
    doc = json.loads(path.read_text())
    doc["keys"][0]["state"] = "decrypt-only"
    path.write_text(json.dumps(doc))
    with pytest.raises(AuthError, match=r"^wrong passphrase or damaged keyring$"):
        ring.add_pseudonym_key()


def test_workspace_rotation_can_replace_the_pseudonym_key(workspace) -> None:
    old = workspace.keyring.active_pseudonym_key()
    report = workspace.rotate_keys(pseudonym=True)
    assert report.new_pseudonym_key and report.new_pseudonym_key != old
    assert workspace.keyring.active_pseudonym_key() == report.new_pseudonym_key
    done = workspace.audit.entries(action="keys.rotate", limit=10)[-1]
    assert done.outcome == "ok"
    assert done.details["new_pseudonym_key"] == report.new_pseudonym_key
    plain = workspace.rotate_keys()
    assert plain.new_pseudonym_key is None
    assert workspace.keyring.active_pseudonym_key() == report.new_pseudonym_key
