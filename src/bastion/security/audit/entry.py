"""The audit entry format: the one leaf-hash encoding, the chain step, and entry validation.

::

    entry i   = (seq, ts, actor, action, resource, outcome, details)   seq = 1, 2, 3, ... no gaps
    leaf_i    = UTF-8(f"{seq}\\0{ts}\\0{actor}\\0{action}\\0{resource}\\0{outcome}\\0{details}")
    lh_i      = SHA-256(0x00 || leaf_i)                                 RFC 6962 leaf hash
    chain_i   = SHA-256(chain_{i-1} || lh_i),  chain_0 = 32 zero bytes   stored in every row

No field may contain a control character (``details`` is canonical JSON, which escapes
them), so the NUL-separated leaf encoding is unambiguous. ``docs/formats/checkpoint.md``
specifies the bytes, with test vectors.

Every part of the log that hashes an entry calls :func:`leaf_hash` (fields as text, as the
writer holds them and SQLite returns them) or :func:`leaf_hashes` (the same bytes from
columns already in UTF-8, as verification reads them in bulk); the tests hold both to the
vectors and to each other. ``docs/verify_outside.py`` is an independent recipe on purpose.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, Final

from bastion._canonical import encoder
from bastion.errors import ConfigError

__all__ = [
    "OUTCOMES",
    "ZERO",
    "AuditEntry",
    "Item",
    "chain_hash",
    "chain_hashes",
    "leaf_bytes",
    "leaf_hash",
    "leaf_hashes",
    "now",
    "validated",
]

OUTCOMES: Final = ("denied", "error", "failed", "ok", "started")
ZERO: Final = bytes(32)  # chain_0
_MAX_LENGTHS = {"actor": 128, "action": 128, "resource": 512}
_MAX_DETAILS_BYTES = 65_536
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")  # control characters, lone surrogates
_NUL = b"\0"
_sha256 = hashlib.sha256


def leaf_bytes(
    seq: int, ts: str, actor: str, action: str, resource: str, outcome: str, details: str
) -> bytes:
    """``leaf_i``: the bytes whose ``SHA-256(0x00 || ...)`` is the entry's Merkle leaf hash."""
    return f"{seq}\0{ts}\0{actor}\0{action}\0{resource}\0{outcome}\0{details}".encode()


def leaf_hash(
    seq: int, ts: str, actor: str, action: str, resource: str, outcome: str, details: str
) -> bytes:
    """``lh_i = SHA-256(0x00 || leaf_i)`` of one entry given as text."""
    return _sha256(_NUL + leaf_bytes(seq, ts, actor, action, resource, outcome, details)).digest()


def leaf_hashes(seqs: Iterable[bytes], *columns: Iterable[bytes]) -> list[bytes]:
    """``lh_i`` of many entries from their UTF-8 fields, one iterable per column.

    ``seqs`` holds each seq in ASCII decimal and ``columns`` the six text fields in entry
    order (ts, actor, action, resource, outcome, details): the same bytes as
    :func:`leaf_bytes`, joined without decoding. Raises TypeError for a field that is not
    bytes-like.
    """
    joined = map(_NUL.join, zip(repeat(b""), seqs, *columns, strict=False))
    return [_sha256(data).digest() for data in joined]


def chain_hashes(prev: bytes, leaves: Iterable[bytes]) -> list[bytes]:
    """``chain_i = SHA-256(chain_{i-1} || lh_i)`` for each leaf hash in turn after ``prev``."""
    chains: list[bytes] = []
    add, sha = chains.append, _sha256
    for leaf in leaves:
        prev = sha(prev + leaf).digest()
        add(prev)
    return chains


def chain_hash(prev: bytes, leaf: bytes) -> bytes:
    """One step of :func:`chain_hashes`."""
    return chain_hashes(prev, (leaf,))[0]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One stored entry. ``details_json`` is the canonical JSON text that was hashed."""

    seq: int
    ts: str
    actor: str
    action: str
    resource: str
    outcome: str
    details_json: str
    chain: bytes

    @property
    def details(self) -> dict[str, Any]:
        """The details as a fresh dict."""
        value: dict[str, Any] = json.loads(self.details_json)
        return value

    def leaf_bytes(self) -> bytes:
        """The bytes whose ``SHA-256(0x00 || ...)`` is this entry's Merkle leaf hash."""
        return leaf_bytes(
            self.seq,
            self.ts,
            self.actor,
            self.action,
            self.resource,
            self.outcome,
            self.details_json,
        )


# -- validation -----------------------------------------------------------------------------

Item = tuple[str, str, str, str, str, str]  # ts, actor, action, resource, outcome, details
_JSON = encoder()  # canonical JSON, strict: the details bytes the leaf hash covers
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, reused within it


def now() -> str:
    """ISO-8601 UTC with microseconds, e.g. ``2026-01-31T12:00:00.000001+00:00``."""
    global _second
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}")
    return f"{cached[1]}.{micro:06d}+00:00"


def _text(field: str, value: object, *, empty_ok: bool) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{field}: expected a string, got {type(value).__name__}")
    if not value and not empty_ok:
        raise ConfigError(f"{field}: must not be empty")
    limit = _MAX_LENGTHS[field]
    if len(value) > limit:
        raise ConfigError(f"{field}: at most {limit} characters, got {len(value)}")
    if _UNSAFE.search(value):
        raise ConfigError(f"{field}: control characters and lone surrogates are not allowed")
    return value


def validated(
    actor: str, action: str, resource: str, outcome: str, details: Mapping[str, Any] | None
) -> Item:
    """The entry to append, timestamped now; ConfigError naming the field if one is bad."""
    if outcome not in OUTCOMES:
        raise ConfigError(f"outcome: expected one of {', '.join(OUTCOMES)}, got {outcome!r}")
    if not details:
        text = "{}"
    elif not isinstance(details, Mapping):
        raise ConfigError(f"details: expected a mapping, got {type(details).__name__}")
    else:
        try:
            text = _JSON.encode(details if type(details) is dict else dict(details))
            size = len(text.encode())
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"details: expected JSON-serialisable values with string keys ({exc})"
            ) from None
        if size > _MAX_DETAILS_BYTES:
            raise ConfigError(f"details: at most {_MAX_DETAILS_BYTES} bytes of JSON, got {size}")
    return (
        now(),
        _text("actor", actor, empty_ok=False),
        _text("action", action, empty_ok=False),
        _text("resource", resource, empty_ok=True),
        outcome,
        text,
    )
