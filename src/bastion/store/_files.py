"""The artifact store's files: the put source as a stream, scratch files, kernel writeback.

:func:`open_source` turns what :meth:`~bastion.store.artifacts.ArtifactStore.put` accepts
(bytes, a path, a binary stream) into one binary stream; :func:`scratch_file` makes the
0600 temporary file that a blob or an export is written to before it is renamed into place
(and removes it if it was not); :class:`WritebackFile` starts the kernel's writeback as it
goes, so the fsync before that rename is short.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from bastion.errors import ConfigError

__all__ = ["Source", "WritebackFile", "open_source", "scratch_file"]

_WRITEBACK_EVERY = 16 << 20

Source = bytes | bytearray | memoryview | Path | BinaryIO
"""What :meth:`~bastion.store.artifacts.ArtifactStore.put` accepts: bytes, a file path, or a
binary stream."""


@contextlib.contextmanager
def open_source(source: Source) -> Iterator[BinaryIO]:
    """The put source as a binary stream; a path is opened (and closed) here."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
        return
    if isinstance(source, Path):
        try:
            fh = open(source, "rb", buffering=0)  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the source ({exc.strerror})") from None
        with fh:
            yield fh
        return
    if isinstance(source, str | io.TextIOBase) or not callable(getattr(source, "read", None)):
        raise ConfigError(
            f"source: expected bytes, a pathlib.Path or a binary file, got {type(source).__name__}"
        )
    yield source


class WritebackFile:
    """A file being written, whose kernel writeback is started every 16 MiB.

    ``POSIX_FADV_DONTNEED`` on the bytes just written starts their writeback at once and
    lets the page cache drop them when done, so the final fsync waits only for the tail
    and a large put neither stalls at the end nor floods the cache. No-op where the
    call does not exist.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._fd = fh.fileno()
        self._written = self._advised = 0

    def write(self, data: memoryview, /) -> int:
        count = self._fh.write(data)
        self._written += count
        if self._written - self._advised >= _WRITEBACK_EVERY and hasattr(os, "posix_fadvise"):
            length = self._written - self._advised
            os.posix_fadvise(self._fd, self._advised, length, os.POSIX_FADV_DONTNEED)
            self._advised = self._written
        return count


@contextlib.contextmanager
def scratch_file(folder: Path, suffix: str) -> Iterator[tuple[BinaryIO, Path]]:
    """A new 0600 file in ``folder`` open for writing; on exit it is closed, and removed
    unless the caller renamed it away."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    path = Path(name)
    try:
        with open(fd, "wb", buffering=0) as fh:
            yield fh, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
