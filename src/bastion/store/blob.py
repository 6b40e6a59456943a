"""Blob format v1: how one artifact's bytes are encrypted on disk, and how they are checked.

A blob is ``fixed header ‖ key slot ‖ chunks`` (every byte is in docs/formats/artifact.md):

* the 52-byte fixed header names the format, the chunk size and a random nonce prefix, and
  ends with a *key commitment*, HMAC-SHA256(DEK, label ‖ the header bytes before it);
* the key slot holds the data key (DEK) wrapped by a keyring KEK, the wrap bound to
  SHA-256(fixed header) and the KEK id, so that rotation can re-wrap by rewriting the slot
  alone (:func:`rewrap_slot`) while the slot stays authenticated;
* the chunks are AES-256-GCM under the DEK, each bound to SHA-256(fixed header), its index
  and a final flag, so reordering, splicing, truncation and appending all fail a tag.

:func:`write_blob` (here) streams a source into a blob and returns the plaintext's SHA-256;
it reads one chunk ahead so that it knows which chunk is final. :class:`BlobReader`
(:mod:`bastion.store.blob_reader`) does the reverse, one chunk at a time in constant
memory, and raises :class:`~bastion.errors.IntegrityError` on the first thing that does not
verify; the content digest is checked when the final chunk is reached, before its bytes are
handed out. The header and key slot are read and written by :mod:`bastion.store.blob_format`;
every name of both is importable from here.

Speed: with large chunks SHA-256 runs on a worker thread while the calling thread reads,
encrypts (or decrypts) and writes; hashlib and AES-GCM both release the GIL, so the two
overlap on two cores. Buffers are reused (``encrypt_into``/``decrypt_into``).
"""

from __future__ import annotations

import hashlib
import os
from functools import partial
from typing import BinaryIO

from bastion._fs import Writable, write_all
from bastion.errors import ConfigError
from bastion.security.keys import KeyProvider
from bastion.security.recipes import data_cipher, new_data_key
from bastion.store._streams import SLOTS, THREAD_MIN_CHUNK, Lane, read_full
from bastion.store.blob_format import (
    AAD_TAIL,
    ALGORITHM,
    DEFAULT_CHUNK_SIZE,
    DEK_LEN,
    FIXED_HEADER_LEN,
    FORMAT_VERSION,
    MAGIC,
    MAX_CHUNK_SIZE,
    MAX_CHUNKS,
    MAX_WRAPPED_LEN,
    MIN_CHUNK_SIZE,
    MIN_WRAPPED_LEN,
    NONCE_TAIL,
    TAG_LEN,
    BlobHeader,
    check_chunk_size,
    check_kek_id,
    fixed_header,
    key_slot,
    open_dek,
    read_header,
    rewrap_slot,
)
from bastion.store.blob_reader import BlobReader

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
    fixed = fixed_header(dek, chunk_size, nonce_prefix)
    header_hash = hashlib.sha256(fixed).digest()
    write_all(dst, fixed + key_slot(keys, keys.active_kek(), dek, header_hash))
    aead = data_cipher(dek)
    plain = [memoryview(bytearray(chunk_size)) for _ in range(SLOTS)]
    sealed = [memoryview(bytearray(chunk_size + TAG_LEN)) for _ in range(SLOTS)]
    threaded = chunk_size >= THREAD_MIN_CHUNK
    digest = hashlib.sha256()
    hasher = Lane(threaded, "bastion-sha256")
    writer = Lane(threaded, "bastion-write")
    try:
        slot, index, size = 0, 0, 0
        filled = read_full(src, plain[0])
        while True:
            if index >= MAX_CHUNKS:
                raise ConfigError(
                    f"source: larger than {MAX_CHUNKS} chunks of {chunk_size} bytes;"
                    " use a larger chunk_size"
                )
            chunk = plain[slot][:filled]
            hasher.submit(slot, digest.update, chunk)
            ahead = (slot + 1) % SLOTS
            hasher.release(ahead)
            following = read_full(src, plain[ahead]) if filled == chunk_size else 0
            final = following == 0
            writer.release(slot)
            out = sealed[slot][: filled + TAG_LEN]
            aead.encrypt_into(
                nonce_prefix + NONCE_TAIL.pack(index),
                chunk,
                header_hash + AAD_TAIL.pack(index, final),
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
