"""Crash-safe file helpers: atomic replace, folder fsync, an advisory lock.

A write through :func:`atomic_write` either leaves the old file untouched or the new one
complete: the bytes go to a temporary file in the same folder, are fsynced, renamed over
the target, and the folder is fsynced so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "file_lock", "fsync_dir", "temp_file_in"]


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def temp_file_in(folder: Path, suffix: str = ".tmp") -> Iterator[tuple[int, Path]]:
    """Yield ``(fd, path)`` of a new 0600 file in ``folder``; it is removed on error."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    path = Path(name)
    try:
        yield fd, path
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or new file."""
    with temp_file_in(path.parent) as (fd, tmp):
        with os.fdopen(fd, "wb", closefd=True) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created 0600 if missing)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
