"""Reading a blob: its plaintext, verified chunk by chunk as it is read, in constant memory.

:class:`BlobReader` checks the header, key slot and key commitment when it is made
(:mod:`bastion.store.blob_format`), each chunk's tag when the chunk is reached, and the
content's SHA-256 on the final chunk before handing out its bytes; the first thing that
does not verify raises :class:`~bastion.errors.IntegrityError`. Hashing runs on a worker
thread for large chunks (:mod:`bastion.store._streams`).
"""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from bastion.errors import IntegrityError
from bastion.security.keys import KeyProvider
from bastion.security.recipes import InvalidTag, data_cipher
from bastion.store._streams import SLOTS, THREAD_MIN_CHUNK, Lane, read_full
from bastion.store.blob_format import (
    AAD_TAIL,
    MAX_CHUNKS,
    NONCE_TAIL,
    TAG_LEN,
    open_dek,
    read_header,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["BlobReader"]


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
        self._plain = [bytearray(size) for _ in range(SLOTS)]
        self._hash = hashlib.sha256()
        self._hasher = Lane(size >= THREAD_MIN_CHUNK, "bastion-sha256")
        self._index = 0
        self._done = False
        self._view = memoryview(b"")
        self.digest: str | None = None  # hex SHA-256 of the plaintext, once read to the end
        self._rec_len = read_full(fh, memoryview(self._records[0]))

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
        following = read_full(self._fh, memoryview(ahead))
        # Records are read whole, so only the last one can be short; bytes appended after
        # the final chunk either lengthen it or make it look not final: its tag fails.
        final = following == 0
        if index >= MAX_CHUNKS or (rec_len == TAG_LEN and index > 0):
            raise IntegrityError(f"{where}: malformed chunk {index}")
        slot = index % SLOTS
        self._hasher.release(slot)
        out = memoryview(self._plain[slot])[: rec_len - TAG_LEN]
        try:
            self._aead.decrypt_into(
                self.header.nonce_prefix + NONCE_TAIL.pack(index),
                memoryview(self._records[index % 2])[:rec_len],
                self._hh + AAD_TAIL.pack(index, final),
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
