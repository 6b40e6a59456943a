"""Signed checkpoints: the tree head a signature covers and the exported file's format.

::

    checkpoint= (tree_size, MTH(lh_1..lh_n), ts, key_id, Ed25519 signature, frontier)
    signed    = "bastion audit checkpoint v1\\n{tree_size}\\n{root hex}\\n{ts}\\n{key_id}\\n"

``docs/formats/checkpoint.md`` specifies the bytes and the exported JSON file, with test
vectors. A checkpoint is trusted only through public keys from the
:class:`~bastion.security.keys.KeyProvider`: an exported file never carries its own trust.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bastion.errors import ConfigError
from bastion.security.keys import KeyProvider, verify_ed25519

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "checkpoint_of", "read_checkpoint"]

CHECKPOINT_FORMAT: Final = "bastion-audit-checkpoint"
_CHECKPOINT_VERSION = 1
_SIGNING_CONTEXT = b"bastion audit checkpoint v1\n"
_MAX_CHECKPOINT_FILE = 65_536
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the Merkle root of the first ``tree_size`` entries."""

    tree_size: int
    root: bytes
    ts: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The exact bytes the signature covers."""
        text = f"{self.tree_size}\n{self.root.hex()}\n{self.ts}\n{self.key_id}\n"
        return _SIGNING_CONTEXT + text.encode()

    def verify(self, keys: KeyProvider) -> None:
        """Raise UnknownKeyError or SignatureError unless a keyring key signed this."""
        verify_ed25519(keys.public_key(self.key_id), self.signature, self.message())

    def to_json(self) -> bytes:
        """The exported file's bytes (see ``docs/formats/checkpoint.md``)."""
        doc = {
            "format": CHECKPOINT_FORMAT,
            "version": _CHECKPOINT_VERSION,
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "ts": self.ts,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


def checkpoint_of(row: Sequence[Any]) -> Checkpoint:
    """The checkpoint of a stored row ``(tree_size, root, ts, key_id, signature, ...)``."""
    return Checkpoint(int(row[0]), bytes(row[1]), str(row[2]), str(row[3]), bytes(row[4]))


def read_checkpoint(path: Path, keys: KeyProvider) -> Checkpoint:
    """Load an exported checkpoint and check its signature against ``keys``.

    Raises ConfigError for a file that is not a checkpoint, UnknownKeyError when its key id
    is not in the keyring, SignatureError when the signature does not verify.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read checkpoint ({exc.strerror})") from None
    if len(raw) > _MAX_CHECKPOINT_FILE:
        raise ConfigError(f"{path}: not a checkpoint (larger than {_MAX_CHECKPOINT_FILE} bytes)")
    checkpoint = _parse_checkpoint(path, raw)
    checkpoint.verify(keys)
    return checkpoint


def _parse_checkpoint(path: Path, raw: bytes) -> Checkpoint:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{path}: not a {CHECKPOINT_FORMAT} v{_CHECKPOINT_VERSION} file: {why}")

    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("invalid JSON") from None
    expected = {"format", "version", "tree_size", "root", "ts", "key_id", "signature"}
    if not isinstance(doc, dict) or set(doc) != expected:
        raise bad(f"expected exactly the keys {sorted(expected)}")
    if doc["format"] != CHECKPOINT_FORMAT or doc["version"] != _CHECKPOINT_VERSION:
        raise bad(f"format {doc['format']!r} version {doc['version']!r}")
    size, root, ts, key_id, sig = (
        doc[k] for k in ("tree_size", "root", "ts", "key_id", "signature")
    )
    if type(size) is not int or size < 1:
        raise bad("tree_size must be a positive integer")
    if not isinstance(root, str) or not re.fullmatch(r"[0-9a-f]{64}", root):
        raise bad("root must be 64 lowercase hex digits")
    for name, value in (("ts", ts), ("key_id", key_id)):
        if not isinstance(value, str) or not 0 < len(value) <= 64 or _CONTROL.search(value):
            raise bad(f"{name} must be 1..64 printable characters")
    try:
        signature = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
    except binascii.Error:
        signature = b""
    if len(signature) != 64:
        raise bad("signature must be 64 bytes in base64")
    return Checkpoint(size, bytes.fromhex(root), ts, key_id, signature)
