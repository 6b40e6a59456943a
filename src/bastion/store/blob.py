# Over 400 lines, because one byte format, its writer and its verifying reader stay together.
"""Blob format v1: how one artifact's bytes are encrypted on disk, and how they are checked.

A blob is ``fixed header ‖ key slot ‖ chunks`` (every byte is in docs/formats/artifact.md):

* the 52-byte fixed header names the format, the chunk size and a random nonce prefix, and
  ends with a *key commitment*, HMAC-SHA256(DEK, label ‖ the header bytes before it);
* the key slot holds the data key (DEK) wrapped by a keyring KEK, the wrap bound to
  SHA-256(fixed header) and the KEK id, so that rotation can re-wrap by rewriting the slot
  alone (:func:`rewrap_slot`) while the slot stays authenticated;
* the chunks are AES-256-GCM under the DEK, each bound to SHA-256(fixed header), its index
  and a final flag, so reordering, splicing, truncation and appending all fail a tag.

:func:`write_blob` streams a source into a blob and returns the plaintext's SHA-256; it
reads one chunk ahead so that it knows which chunk is final. :class:`BlobReader` does the
reverse, one chunk at a time in constant memory, and raises
:class:`~bastion.errors.IntegrityError` on the first thing that does not verify; the
content digest is checked when the final chunk is reached, before its bytes are handed out.

Speed: with large chunks SHA-256 runs on a worker thread while the calling thread reads,
encrypts (or decrypts) and writes; hashlib and AES-GCM both release the GIL, so the two
overlap on two cores. Buffers are reused (``encrypt_into``/``decrypt_into``).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import re
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from bastion._fs import Writable, write_all
from bastion.errors import ConfigError, IntegrityError, UnknownKeyError
from bastion.security.keys import KeyProvider
from bastion.security.recipes import InvalidTag, data_cipher, new_data_key

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
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
    "TAG_LEN",
    "BlobHeader",
    "BlobReader",
    "Writable",
    "check_chunk_size",
    "check_kek_id",
    "open_dek",
    "read_header",
    "rewrap_slot",
    "write_blob",
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
_AAD_TAIL = struct.Struct(">QB")
_NONCE_TAIL = struct.Struct(">I")
_U16 = struct.Struct(">H")
_KEK_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_THREAD_MIN_CHUNK = 128 << 10  # below this a worker thread costs more than it saves
_SLOTS = 3  # buffers in flight per stage: one being worked on, one being filled, one spare


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


def _fixed_header(dek: bytes, chunk_size: int, nonce_prefix: bytes) -> bytes:
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, ALGORITHM, 0, chunk_size, nonce_prefix)
    return prefix + hmac.new(dek, _COMMIT_LABEL + prefix, hashlib.sha256).digest()


def _wrap_aad(header_hash: bytes, kek: bytes) -> bytes:
    return _DEK_LABEL + header_hash + kek


def _slot(keys: KeyProvider, kek_id: str, dek: bytes, header_hash: bytes) -> bytes:
    kek = check_kek_id(kek_id)
    wrapped = keys.wrap(kek_id, dek, _wrap_aad(header_hash, kek))
    if not MIN_WRAPPED_LEN <= len(wrapped) <= MAX_WRAPPED_LEN:
        raise ConfigError(
            f"key {kek_id}: wrapped data key of {len(wrapped)} bytes, expected"
            f" {MIN_WRAPPED_LEN}..{MAX_WRAPPED_LEN}"
        )
    return bytes([len(kek)]) + kek + _U16.pack(len(wrapped)) + wrapped


def _read_full(src: BinaryIO, buf: memoryview) -> int:
    """Fill ``buf`` from ``src``; fewer bytes only at end of stream."""
    readinto = getattr(src, "readinto", None)
    filled = 0
    while filled < len(buf):
        if readinto is not None:
            got = readinto(buf[filled:])
        else:
            data = src.read(len(buf) - filled)
            got = None if data is None else len(data)
            if got:
                buf[filled : filled + got] = data
        if got is None:
            raise ConfigError("source: a non-blocking stream had no data; pass a blocking one")
        if not got:
            break
        filled += got
    return filled


class _Lane:
    """Calls run in order on one worker thread (or inline when ``threaded`` is false).

    Work is tagged with the slot of the buffer it reads; :meth:`release` waits for a slot's
    work (and re-raises its error) before the caller writes into that buffer again.
    """

    def __init__(self, threaded: bool, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, name) if threaded else None
        self._pending: list[Future[None] | None] = [None] * _SLOTS

    def submit(self, slot: int, fn: Callable[[memoryview], object], data: memoryview) -> None:
        if self._pool is None:
            fn(data)
        else:
            self._pending[slot] = self._pool.submit(_discard, fn, data)

    def release(self, slot: int) -> None:
        pending = self._pending[slot]
        if pending is not None:
            self._pending[slot] = None
            pending.result()

    def drain(self) -> None:
        for slot in range(_SLOTS):
            self.release(slot)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _discard(fn: Callable[[memoryview], object], data: memoryview) -> None:
    fn(data)


def write_blob(
    src: BinaryIO, dst: Writable, keys: KeyProvider, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[str, int]:
    """Encrypt all of ``src`` into ``dst`` under a fresh data key wrapped by the active KEK.

    Returns ``(sha256 hex of the plaintext, plaintext size)``. Memory use is a few chunks
    whatever the size. ``dst`` is written sequentially and neither flushed nor closed.
    With large chunks, hashing and writing each run on their own thread while this one
    reads and encrypts.
    """
    check_chunk_size(chunk_size)
    dek = new_data_key()
    nonce_prefix = os.urandom(8)
    fixed = _fixed_header(dek, chunk_size, nonce_prefix)
    header_hash = hashlib.sha256(fixed).digest()
    write_all(dst, fixed + _slot(keys, keys.active_kek(), dek, header_hash))
    aead = data_cipher(dek)
    plain = [memoryview(bytearray(chunk_size)) for _ in range(_SLOTS)]
    sealed = [memoryview(bytearray(chunk_size + TAG_LEN)) for _ in range(_SLOTS)]
    threaded = chunk_size >= _THREAD_MIN_CHUNK
    digest = hashlib.sha256()
    hasher = _Lane(threaded, "bastion-sha256")
    writer = _Lane(threaded, "bastion-write")
    try:
        slot, index, size = 0, 0, 0
        filled = _read_full(src, plain[0])
        while True:
            if index >= MAX_CHUNKS:
                raise ConfigError(
                    f"source: larger than {MAX_CHUNKS} chunks of {chunk_size} bytes;"
                    " use a larger chunk_size"
                )
            chunk = plain[slot][:filled]
            hasher.submit(slot, digest.update, chunk)
            ahead = (slot + 1) % _SLOTS
            hasher.release(ahead)
            following = _read_full(src, plain[ahead]) if filled == chunk_size else 0
            final = following == 0
            writer.release(slot)
            out = sealed[slot][: filled + TAG_LEN]
            aead.encrypt_into(
                nonce_prefix + _NONCE_TAIL.pack(index),
                chunk,
                header_hash + _AAD_TAIL.pack(index, final),
                out,
            )
            writer.submit(slot, partial(write_all, dst), out)
            size += filled
            if final:
                hasher.drain()
                writer.drain()
                return digest.hexdigest(), size
            slot, filled, index = ahead, following, index + 1
    finally:
        hasher.close()
        writer.close()


def _read_exact(fh: BinaryIO, n: int, where: str, what: str) -> bytes:
    buf = bytearray(n)
    if _read_full(fh, memoryview(buf)) != n:
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
    return header.fixed + _slot(keys, kek_id, dek, header.header_hash)


class BlobReader(io.BufferedIOBase):
    """The plaintext of one blob, verified chunk by chunk as it is read.

    A file-like reader (``read``, ``readinto``, iteration, ``with``). Header, key slot and
    commitment are checked when it is made; each chunk's tag when it is reached. On the
    final chunk the content's SHA-256 is compared with ``expected_digest`` before that
    chunk's bytes are returned; truncation, trailing bytes or a wrong digest raise
    :class:`IntegrityError`, so a consumer that reads to the end has read verified bytes.
    It owns ``fh`` and closes it.
    """

    def __init__(
        self, fh: BinaryIO, keys: KeyProvider, *, where: str, expected_digest: str | None = None
    ) -> None:
        super().__init__()
        self._fh = fh
        self._where = where
        self._expected = expected_digest
        self._failed: IntegrityError | None = None
        try:
            self.header = read_header(fh, where)
            self._aead = data_cipher(open_dek(self.header, keys, where))
        except BaseException:
            fh.close()
            super().close()
            raise
        size = self.header.chunk_size
        self._hh = self.header.header_hash
        self._records = [bytearray(size + TAG_LEN), bytearray(size + TAG_LEN)]
        self._plain = [bytearray(size) for _ in range(_SLOTS)]
        self._hash = hashlib.sha256()
        self._hasher = _Lane(size >= _THREAD_MIN_CHUNK, "bastion-sha256")
        self._index = 0
        self._done = False
        self._view = memoryview(b"")
        self.digest: str | None = None  # hex SHA-256 of the plaintext, once read to the end
        self._rec_len = _read_full(fh, memoryview(self._records[0]))

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> memoryview | None:
        if self.closed:
            raise ValueError("I/O operation on closed blob reader")
        if self._failed is not None:
            raise IntegrityError(str(self._failed))
        if self._done:
            return None
        try:
            return self._decrypt_next()
        except IntegrityError as exc:
            self._failed = exc
            raise

    def _decrypt_next(self) -> memoryview:
        where, index, rec_len = self._where, self._index, self._rec_len
        if rec_len < TAG_LEN:
            raise IntegrityError(f"{where}: truncated at chunk {index}")
        ahead = self._records[1 - index % 2]
        following = _read_full(self._fh, memoryview(ahead))
        # Records are read whole, so only the last one can be short; bytes appended after
        # the final chunk either lengthen it or make it look not final: its tag fails.
        final = following == 0
        if index >= MAX_CHUNKS or (rec_len == TAG_LEN and index > 0):
            raise IntegrityError(f"{where}: malformed chunk {index}")
        slot = index % _SLOTS
        self._hasher.release(slot)
        out = memoryview(self._plain[slot])[: rec_len - TAG_LEN]
        try:
            self._aead.decrypt_into(
                self.header.nonce_prefix + _NONCE_TAIL.pack(index),
                memoryview(self._records[index % 2])[:rec_len],
                self._hh + _AAD_TAIL.pack(index, final),
                out,
            )
        except InvalidTag:
            raise IntegrityError(
                f"{where}: chunk {index} does not authenticate"
                " (altered, truncated, reordered or from another blob)"
            ) from None
        self._hasher.submit(slot, self._hash.update, out)
        self._rec_len, self._index = following, index + 1
        if final:
            self._done = True
            self._hasher.drain()
            self._hasher.close()
            self.digest = self._hash.hexdigest()
            if self._expected is not None and not hmac.compare_digest(self.digest, self._expected):
                raise IntegrityError(
                    f"{where}: content does not hash to its digest (replayed or misfiled blob)"
                )
        return out.toreadonly()

    def chunks(self) -> Iterator[memoryview]:
        """Yield the rest of the plaintext a chunk at a time, without copying.

        Each view is valid only until the next one is requested.
        """
        if self._view:
            view, self._view = self._view, memoryview(b"")
            yield view
        while (chunk := self._next_chunk()) is not None:
            yield chunk

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target):
            if not self._view:
                chunk = self._next_chunk()
                if chunk is None:
                    break
                self._view = chunk
            take = min(len(self._view), len(target) - filled)
            target[filled : filled + take] = self._view[:take]
            self._view = self._view[take:]
            filled += take
        return filled

    def read(self, size: int | None = -1, /) -> bytes:
        out = io.BytesIO()
        if size is None or size < 0:
            for chunk in self.chunks():
                out.write(chunk)
            return out.getvalue()
        while out.tell() < size:
            if not self._view:
                following = self._next_chunk()
                if following is None:
                    break
                self._view = following
            take = min(len(self._view), size - out.tell())
            out.write(self._view[:take])
            self._view = self._view[take:]
        return out.getvalue()

    def read1(self, size: int = -1, /) -> bytes:
        if not self._view:
            chunk = self._next_chunk()
            if chunk is None:
                return b""
            self._view = chunk
        take = len(self._view) if size < 0 else min(size, len(self._view))
        data = bytes(self._view[:take])
        self._view = self._view[take:]
        return data

    def peek(self, size: int = 0, /) -> bytes:
        """Bytes ahead without consuming them (at most the rest of the current chunk)."""
        if not self._view:
            chunk = self._next_chunk()
            if chunk is None:
                return b""
            self._view = chunk
        return bytes(self._view)

    def close(self) -> None:
        if not self.closed:
            self._view = memoryview(b"")
            self._hasher.close()
            self._fh.close()
        super().close()
