"""Blob format v1, the bytes before the chunks: fixed header, key commitment and key slot.

* the 52-byte fixed header names the format, the chunk size and a random nonce prefix, and
  ends with a *key commitment*, HMAC-SHA256(DEK, label ‖ the header bytes before it);
* the key slot holds the data key (DEK) wrapped by a keyring KEK, the wrap bound to
  SHA-256(fixed header) and the KEK id, so that rotation can re-wrap by rewriting the slot
  alone (:func:`rewrap_slot`) while the slot stays authenticated.

:func:`read_header` parses and bounds-checks both; :func:`open_dek` unwraps the data key
and checks the commitment before any chunk is read. Each chunk's nonce is the nonce prefix
‖ :data:`NONCE_TAIL` (its index) and its AAD SHA-256(fixed header) ‖ :data:`AAD_TAIL`
(index, final flag). Every byte is in docs/formats/artifact.md; the writer is in
:mod:`bastion.store.blob`, the reader in :mod:`bastion.store.blob_reader`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

from bastion.errors import ConfigError, IntegrityError, UnknownKeyError
from bastion.security.keys import KeyProvider
from bastion.store._streams import read_full

__all__ = [
    "AAD_TAIL",
    "ALGORITHM",
    "DEFAULT_CHUNK_SIZE",
    "DEK_LEN",
    "FIXED_HEADER_LEN",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_CHUNKS",
    "MAX_CHUNK_SIZE",
    "MAX_WRAPPED_LEN",
    "MIN_CHUNK_SIZE",
    "MIN_WRAPPED_LEN",
    "NONCE_TAIL",
    "TAG_LEN",
    "BlobHeader",
    "check_chunk_size",
    "check_kek_id",
    "fixed_header",
    "key_slot",
    "open_dek",
    "read_header",
    "rewrap_slot",
]

MAGIC = b"BSTN"
FORMAT_VERSION = 1
ALGORITHM = 1  # AES-256-GCM in chunks, SHA-256 for content and header hashes
FIXED_HEADER_LEN = 52
TAG_LEN = 16
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 64 << 20
MAX_CHUNKS = 1 << 32  # the nonce carries the chunk index in 32 bits
MIN_WRAPPED_LEN = 16
MAX_WRAPPED_LEN = 1024
DEK_LEN = 32

_COMMIT_LABEL = b"bastion/artifact/v1/commit"
_DEK_LABEL = b"bastion/artifact/v1/dek"
_PREFIX = struct.Struct(">4sBBHI8s")  # the 20 header bytes the commitment covers
AAD_TAIL = struct.Struct(">QB")
NONCE_TAIL = struct.Struct(">I")
_U16 = struct.Struct(">H")
_KEK_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def check_chunk_size(chunk_size: int) -> None:
    """Raise :class:`ConfigError` unless ``chunk_size`` is a storable chunk size."""
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigError(
            f"chunk_size: expected {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes, got {chunk_size}"
        )


def check_kek_id(kek_id: str) -> bytes:
    """The ASCII bytes of a KEK id that fits a key slot; :class:`ConfigError` otherwise."""
    raw = kek_id.encode("ascii", "replace")
    if not _KEK_ID.fullmatch(raw) or len(raw) != len(kek_id):
        raise ConfigError(
            f"kek id: expected 1..64 characters of A-Z a-z 0-9 . _ : -, got {kek_id[:80]!r}"
        )
    return raw


@dataclass(frozen=True, slots=True)
class BlobHeader:
    """The parsed fixed header and key slot of a blob (nothing here is secret)."""

    fixed: bytes  # the 52 fixed-header bytes as stored
    chunk_size: int
    nonce_prefix: bytes
    commitment: bytes
    kek_id: str
    wrapped: bytes

    @property
    def header_hash(self) -> bytes:
        """SHA-256 of the fixed header: bound into the wrap and every chunk."""
        return hashlib.sha256(self.fixed).digest()

    @property
    def slot(self) -> bytes:
        """The key slot bytes as stored."""
        kek = self.kek_id.encode("ascii")
        return bytes([len(kek)]) + kek + _U16.pack(len(self.wrapped)) + self.wrapped

    @property
    def body_offset(self) -> int:
        """Where the first chunk starts."""
        return FIXED_HEADER_LEN + 3 + len(self.kek_id) + len(self.wrapped)


def fixed_header(dek: bytes, chunk_size: int, nonce_prefix: bytes) -> bytes:
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, ALGORITHM, 0, chunk_size, nonce_prefix)
    return prefix + hmac.new(dek, _COMMIT_LABEL + prefix, hashlib.sha256).digest()


def _wrap_aad(header_hash: bytes, kek: bytes) -> bytes:
    return _DEK_LABEL + header_hash + kek


def key_slot(keys: KeyProvider, kek_id: str, dek: bytes, header_hash: bytes) -> bytes:
    kek = check_kek_id(kek_id)
    wrapped = keys.wrap(kek_id, dek, _wrap_aad(header_hash, kek))
    if not MIN_WRAPPED_LEN <= len(wrapped) <= MAX_WRAPPED_LEN:
        raise ConfigError(
            f"key {kek_id}: wrapped data key of {len(wrapped)} bytes, expected"
            f" {MIN_WRAPPED_LEN}..{MAX_WRAPPED_LEN}"
        )
    return bytes([len(kek)]) + kek + _U16.pack(len(wrapped)) + wrapped


def _read_exact(fh: BinaryIO, n: int, where: str, what: str) -> bytes:
    buf = bytearray(n)
    if read_full(fh, memoryview(buf)) != n:
        raise IntegrityError(f"{where}: truncated in the {what}")
    return bytes(buf)


def read_header(fh: BinaryIO, where: str) -> BlobHeader:
    """Parse and check the fixed header and key slot; ``fh`` is left at the first chunk."""
    fixed = _read_exact(fh, FIXED_HEADER_LEN, where, "fixed header")
    magic, version, algorithm, reserved, chunk_size, nonce_prefix = _PREFIX.unpack_from(fixed)
    if magic != MAGIC:
        raise IntegrityError(f"{where}: not a Bastion blob (bad magic, expected {MAGIC!r})")
    if version != FORMAT_VERSION:
        raise IntegrityError(
            f"{where}: unsupported format version {version}, expected {FORMAT_VERSION}"
        )
    if algorithm != ALGORITHM:
        raise IntegrityError(f"{where}: unsupported algorithm {algorithm}, expected {ALGORITHM}")
    if reserved != 0:
        raise IntegrityError(f"{where}: reserved header field is {reserved}, expected 0")
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(
            f"{where}: chunk size {chunk_size} outside {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}"
        )
    kek_len = _read_exact(fh, 1, where, "key slot")[0]
    if not 1 <= kek_len <= 64:
        raise IntegrityError(f"{where}: key id length {kek_len}, expected 1..64")
    kek = _read_exact(fh, kek_len, where, "key slot")
    if not _KEK_ID.fullmatch(kek):
        raise IntegrityError(f"{where}: key id has characters outside A-Z a-z 0-9 . _ : -")
    (wrapped_len,) = _U16.unpack(_read_exact(fh, 2, where, "key slot"))
    if not MIN_WRAPPED_LEN <= wrapped_len <= MAX_WRAPPED_LEN:
        raise IntegrityError(
            f"{where}: wrapped key length {wrapped_len},"
            f" expected {MIN_WRAPPED_LEN}..{MAX_WRAPPED_LEN}"
        )
    wrapped = _read_exact(fh, wrapped_len, where, "key slot")
    return BlobHeader(fixed, chunk_size, nonce_prefix, fixed[20:], kek.decode("ascii"), wrapped)


def open_dek(header: BlobHeader, keys: KeyProvider, where: str) -> bytes:
    """Unwrap the data key and check the key commitment; raise before any chunk is read."""
    aad = _wrap_aad(header.header_hash, header.kek_id.encode("ascii"))
    try:
        dek = keys.unwrap(header.kek_id, header.wrapped, aad)
    except UnknownKeyError:
        raise UnknownKeyError(
            f"{where}: data key is wrapped under {header.kek_id!r}, which the keyring lacks"
        ) from None
    except (IntegrityError, ValueError):
        raise IntegrityError(
            f"{where}: data key does not unwrap (key slot, key id or header altered)"
        ) from None
    expected = hmac.new(dek, _COMMIT_LABEL + header.fixed[:20], hashlib.sha256).digest()
    if len(dek) != DEK_LEN or not hmac.compare_digest(expected, header.commitment):
        raise IntegrityError(f"{where}: key commitment does not match the header")
    return dek


def rewrap_slot(header: BlobHeader, keys: KeyProvider, kek_id: str, where: str) -> bytes:
    """The fixed header and a new key slot wrapping the same data key under ``kek_id``.

    The old slot is verified first (unwrap and commitment). The chunks that follow are
    unchanged: the caller copies them byte for byte.
    """
    dek = open_dek(header, keys, where)
    return header.fixed + key_slot(keys, kek_id, dek, header.header_hash)
