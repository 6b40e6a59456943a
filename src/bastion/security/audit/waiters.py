"""What callers of the audit writer wait on, and what they queue for it.

``record`` blocks on a :class:`Waiter` (one lock, lighter than a Future); ``arecord`` awaits
an :class:`AsyncWaiter`, which the writer settles with one event-loop wake-up per batch;
``submit`` returns a plain :class:`~concurrent.futures.Future`. A :class:`Control` (flush,
checkpoint, stop) is queued behind the entries before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from concurrent.futures import Future

from bastion.security.audit.checkpoint import Checkpoint
from bastion.security.audit.entry import Item

__all__ = ["AsyncWaiter", "Control", "Message", "Result", "Waiter", "drain", "settle"]

_BATCH_CAP = 5_000
_GROUP_WAIT = 0.001  # seconds the writer may wait to grow a batch (see drain)
_GROUP_GAP = 0.0002  # ... as long as messages keep coming this close together


class Control:
    """A writer instruction queued behind the entries before it: flush, checkpoint, stop."""

    __slots__ = ("future", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.future: Future[Checkpoint | None] = Future()


class Waiter:
    """What ``record`` blocks on: a lighter Future (one lock, no condition variable)."""

    __slots__ = ("_done", "error", "seq")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.seq = 0
        self.error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, seq: int) -> None:
        self.seq = seq
        self._done.release()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self._done.release()

    def wait(self) -> int:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.seq


class AsyncWaiter:
    """What ``arecord`` awaits: settled on its event loop, one loop wake-up per batch."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[int] = loop.create_future()

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def set_result(self, seq: int) -> None:  # only used on failure paths, one by one
        result: Result = (self.future, seq, None)
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            self.loop.call_soon_threadsafe(settle, [result])

    def set_exception(self, error: BaseException) -> None:
        result: Result = (self.future, 0, error)
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(settle, [result])


Result = tuple["asyncio.Future[int]", int, BaseException | None]


def settle(results: list[Result]) -> None:
    """Resolve asyncio futures on their own loop (called there by the writer)."""
    for future, seq, error in results:
        if future.done():  # the awaiting task was cancelled; the entry is written anyway
            continue
        if error is None:
            future.set_result(seq)
        else:
            future.set_exception(error)


Message = tuple[Item, "Future[int] | Waiter | AsyncWaiter"] | Control


def drain(messages: queue.SimpleQueue[Message], timeout: float | None, grow: bool) -> list[Message]:
    """The writer's next batch: block for one message (``timeout`` seconds at most, for a
    sync that falls due: then none), then take what is queued, up to 5,000. With ``grow``
    (the last batch held several entries), sleep in 0.2 ms steps (1 ms at most) while the
    batch grows: callers enqueue without waking the writer."""
    get_nowait = messages.get_nowait
    try:
        batch = [messages.get(timeout=timeout)]
    except queue.Empty:
        return []
    deadline = time.perf_counter() + _GROUP_WAIT
    while True:
        taken = len(batch)
        while len(batch) < _BATCH_CAP:
            try:
                batch.append(get_nowait())
            except queue.Empty:
                break
        grew = len(batch) > taken or taken == 1
        if (
            not grow
            or not grew
            or len(batch) >= _BATCH_CAP
            or not isinstance(batch[-1], tuple)
            or time.perf_counter() > deadline
        ):
            return batch
        time.sleep(_GROUP_GAP)
