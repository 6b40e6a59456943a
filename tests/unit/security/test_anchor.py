"""The sealed audit anchor: its bytes (the vector of docs/formats/checkpoint.md), the
reader's refusals, and sealing that never moves the anchor backwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from bastion.errors import ConfigError, IntegrityError, SignatureError, UnknownKeyError
from bastion.security.anchor import AnchorKeeper, read_anchor
from bastion.security.keys import LocalKeyring
from bastion.security.merkle import EMPTY_ROOT

RFC8032_TEST1_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
VECTOR = {
    "checkpoints": 1,
    "format": "bastion-audit-anchor",
    "key_id": "sig-rfc8032-test1",
    "root": "1a5971b4dc69808b86cd0259d1181561e6324eff6033b72885062aba0f400a70",
    "signature": "XLR60jcLH/pgkmSENPNEU8CuA94vs7uKdI/StgMB86bpXF49afsEa27daOIPfyJtXdM1U5q40as5"
    "8FF9/HMmCg==",
    "tree_size": 3,
    "ts": "2026-01-01T00:00:04.000000+00:00",
    "version": 1,
}


class _OnePublicKey:
    """Just enough of a KeyProvider to verify: the RFC 8032 TEST 1 public key."""

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        if key_id != VECTOR["key_id"]:
            raise UnknownKeyError(key_id)
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(RFC8032_TEST1_PUBLIC))


def test_anchor_test_vector(tmp_path: Path) -> None:
    path = tmp_path / "audit-anchor.json"
    path.write_text(json.dumps(VECTOR))
    anchor = read_anchor(path, _OnePublicKey())  # type: ignore[arg-type]
    assert anchor.message() == (
        b"bastion audit anchor v1\n3\n" + str(VECTOR["root"]).encode()
        + b"\n1\n2026-01-01T00:00:04.000000+00:00\nsig-rfc8032-test1\n"
    )  # fmt: skip
    assert anchor.to_json() == json.dumps(VECTOR, indent=2, sort_keys=True).encode() + b"\n"
    for field, value in (("tree_size", 2), ("checkpoints", 0), ("ts", "2026-01-02T00:00:00Z")):
        path.write_text(json.dumps(dict(VECTOR, **{field: value})))
        with pytest.raises(SignatureError):
            read_anchor(path, _OnePublicKey())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": -1},
        {"tree_size": "3"},
        {"checkpoints": 1.0},
        {"root": "AB" * 32},
        {"format": "bastion-audit-checkpoint"},
        {"version": 2},
        {"signature": "not base64!"},
        {"key_id": ""},
        {"extra": 1},
    ],
)
def test_a_malformed_anchor_is_refused_naming_the_file(tmp_path: Path, change: dict) -> None:
    path = tmp_path / "audit-anchor.json"
    path.write_text(json.dumps(dict(VECTOR, **change)))
    with pytest.raises(IntegrityError, match=r"audit-anchor\.json: not a bastion-audit-anchor v1"):
        read_anchor(path, _OnePublicKey())  # type: ignore[arg-type]


@given(st.binary(max_size=300))
def test_any_bytes_read_as_an_anchor_or_one_integrity_error(raw: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "audit-anchor.json"
        path.write_bytes(raw)
        with pytest.raises(IntegrityError):
            read_anchor(path, _OnePublicKey())  # type: ignore[arg-type]


def test_a_missing_anchor_is_an_integrity_error(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="the audit anchor is missing"):
        read_anchor(tmp_path / "audit-anchor.json", _OnePublicKey())  # type: ignore[arg-type]


def test_sealing_never_moves_the_anchor_backwards(tmp_path: Path, keys: LocalKeyring) -> None:
    keeper = AnchorKeeper(tmp_path / "audit-anchor.json", keys)
    assert keeper.create().tree_size == 0
    with pytest.raises(ConfigError, match="already exists"):
        keeper.create()
    root = bytes(range(32))
    assert keeper.seal(10, root, 1).tree_size == 10
    assert keeper.seal(5, EMPTY_ROOT, 0).tree_size == 10  # a stale writer: the file keeps 10
    keeper.submit(7, EMPTY_ROOT, 0)
    keeper.submit(12, root, 2)
    keeper.close()
    anchor = read_anchor(keeper.path, keys)
    assert (anchor.tree_size, anchor.root, anchor.checkpoints) == (12, root, 2)
    assert keeper.path.stat().st_mode & 0o777 == 0o600
