"""Streaming for blobs: fill a buffer from a stream, and run work in order on one thread.

:func:`read_full` fills a buffer (fewer bytes only at the end of the stream). A
:class:`Lane` runs calls in order on one worker thread, tagged with the buffer slot they
read (:data:`SLOTS` buffers per stage), so the writer (:mod:`bastion.store.blob`) and the
reader (:mod:`bastion.store.blob_reader`) hash and write on other threads while they
encrypt or decrypt. Below :data:`THREAD_MIN_CHUNK` a lane runs its calls inline.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from bastion.errors import ConfigError

__all__ = [
    "SLOTS",
    "THREAD_MIN_CHUNK",
    "Lane",
    "read_full",
]

THREAD_MIN_CHUNK = 128 << 10  # below this a worker thread costs more than it saves
SLOTS = 3  # buffers in flight per stage: one being worked on, one being filled, one spare


def read_full(src: BinaryIO, buf: memoryview) -> int:
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


class Lane:
    """Calls run in order on one worker thread (or inline when ``threaded`` is false).

    Work is tagged with the slot of the buffer it reads; :meth:`release` waits for a slot's
    work (and re-raises its error) before the caller writes into that buffer again.
    """

    def __init__(self, threaded: bool, name: str) -> None:
        self._pool = ThreadPoolExecutor(1, name) if threaded else None
        self._pending: list[Future[None] | None] = [None] * SLOTS

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
        for slot in range(SLOTS):
            self.release(slot)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _discard(fn: Callable[[memoryview], object], data: memoryview) -> None:
    fn(data)
