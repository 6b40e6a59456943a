"""Crash-safe file helpers: atomic replace, folder fsync, an advisory lock.

A write through :func:`atomic_write` either leaves the old file untouched or the new one
complete: the bytes go to a temporary file in the same folder, are fsynced, renamed over
the target, and the folder is fsynced so the rename itself survives a power cut.

Everything Bastion writes under a home is private whatever the process umask: files are
0600 (:func:`atomic_write`, :func:`temp_file_in`, :func:`file_lock`), folders 0700
(:func:`private_dir`), and :func:`loose_modes` lists what is not, for ``bastion verify``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "Writable",
    "atomic_write",
    "file_lock",
    "fsync_dir",
    "loose_modes",
    "private_dir",
    "temp_file_in",
    "write_all",
]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


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


def private_dir(path: Path) -> Path:
    """Make ``path`` a 0700 folder, creating it and any missing parents as 0700 folders.

    ``Path.mkdir(mode=..., parents=True)`` gives the parents the umask's mode (0755 under
    the usual 0022) and the mode itself is masked too; here each folder made is chmod-ed.
    """
    missing: list[Path] = []
    at = path
    while not at.is_dir():
        missing.append(at)
        if at.parent == at:
            break
        at = at.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_DIR)
        os.chmod(folder, PRIVATE_DIR)
    if not missing and stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return path


def loose_modes(root: Path) -> list[tuple[Path, int, int]]:
    """``(path, mode, expected)`` of each file under ``root`` (itself included) that is not
    0600 and each folder that is not 0700; symbolic links are neither followed nor listed."""
    found: list[tuple[Path, int, int]] = []

    def check(path: Path) -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return  # removed while we walked (a temporary file)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode) and mode != PRIVATE_DIR:
            found.append((path, mode, PRIVATE_DIR))
        elif stat.S_ISREG(st.st_mode) and mode != PRIVATE_FILE:
            found.append((path, mode, PRIVATE_FILE))

    check(root)
    for folder, dirs, files in os.walk(root):
        for name in sorted(dirs) + sorted(files):
            check(Path(folder) / name)
    return found


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
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


class Writable(Protocol):
    """Where :func:`write_all` writes: any binary file, or a wrapper with ``write``."""

    def write(self, data: memoryview, /) -> int | None: ...


def write_all(dst: Writable, data: memoryview | bytes) -> None:
    """Write every byte of ``data`` to ``dst``, looping over short writes."""
    view = memoryview(data)
    while view:
        written = dst.write(view)
        if written is None:
            raise OSError("non-blocking destination is not supported")
        view = view[written:]
