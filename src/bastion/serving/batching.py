"""Micro-batching: many concurrent requests, one model call.

A model call has a fixed cost (DataFrame building, the column transformer, the estimator's
setup) that dwarfs the per-row cost, so the server answers concurrent requests faster by
predicting their rows together. :class:`MicroBatcher` collects the rows that requests
:meth:`~MicroBatcher.submit` (column by column) for at most ``max_wait`` seconds after the
first one arrives (default 0: what is queued; what queues while the model runs is the next
batch), or until ``max_rows`` are waiting, runs ONE call of ``predict`` on all of
them in a worker thread (the event loop keeps reading requests meanwhile, so the next batch
fills while this one runs; a batch of at most ``inline_rows`` rows runs on the loop itself),
then hands each request its own slice of the results.

A request whose caller gave up (its deadline passed, the client went away) before its batch
started is dropped, not predicted. If ``predict`` raises, every request of that batch gets
the exception. Requests larger than ``max_rows`` run as a batch of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bastion.monitoring.screening import RowsByColumn

__all__ = ["INLINE_ROWS", "BatchStats", "MicroBatcher"]

#: A compiled model predicts batches of up to this many rows on the event loop itself (tens
#: of microseconds: less than the hop to the worker thread and back); larger ones, and any
#: scikit-learn call, run in the worker thread.
INLINE_ROWS = 64

R = TypeVar("R")


@dataclass(slots=True)
class _Job:
    columns: RowsByColumn
    rows: int
    future: asyncio.Future[Sequence[Any]]


@dataclass(slots=True)
class BatchStats:
    """Counters for /metrics: model calls made, rows predicted, requests served."""

    batches: int = 0
    rows: int = 0
    requests: int = 0
    busy_seconds: float = 0.0


class MicroBatcher(Generic[R]):
    """Coalesce concurrent ``submit`` calls into single ``predict`` calls.

    ``predict`` gets ``{column: [values...]}`` for all rows of a batch and must return one
    result per row, in order; it runs in one worker thread, set up by ``thread_init``. Use
    :meth:`start` inside the running event loop (the server's lifespan) and :meth:`close` on
    shutdown.
    """

    def __init__(
        self,
        predict: Callable[[dict[str, list[Any]]], Sequence[R]],
        *,
        max_wait: float = 0.0,
        max_rows: int = 2048,
        on_batch: Callable[[int, int, float], None] | None = None,
        thread_init: Callable[[], object] | None = None,
        inline_rows: int = 0,
    ) -> None:
        if max_wait < 0:
            raise ValueError(f"max_wait: expected seconds >= 0, got {max_wait}")
        if max_rows < 1:
            raise ValueError(f"max_rows: expected a positive integer, got {max_rows}")
        self._predict = predict
        self.max_wait = max_wait
        self.max_rows = max_rows
        self._on_batch = on_batch
        self.inline_rows = inline_rows
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="bastion-predict",
            initializer=thread_init,
        )
        self.stats = BatchStats()

    def start(self) -> None:
        """Start the collecting task on the running loop."""
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop collecting; queued requests get CancelledError; the worker thread ends."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.cancel()
        self._pool.shutdown(wait=True)

    async def submit(self, columns: RowsByColumn) -> list[R]:
        """Queue ``columns`` (one equal-length list per column) and await their results."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        rows = len(next(iter(columns.values()))) if columns else 0
        future: asyncio.Future[Sequence[Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(columns, rows, future))
        return list(await future)

    async def _run(self) -> None:
        queue = self._queue
        if queue is None:  # pragma: no cover - start() sets it
            return
        loop = asyncio.get_running_loop()
        while True:
            first = await queue.get()
            jobs = [first] if not first.future.done() else []
            rows = first.rows if jobs else 0
            deadline = loop.time() + self.max_wait
            while rows < self.max_rows:
                timeout = deadline - loop.time()
                try:
                    job = (
                        queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(queue.get(), timeout)
                    )
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if job.future.done():  # cancelled while waiting: never predicted
                    continue
                if jobs and rows + job.rows > self.max_rows:
                    await self._dispatch(loop, jobs, rows)
                    jobs, rows = [], 0
                jobs.append(job)
                rows += job.rows
            if jobs:
                await self._dispatch(loop, jobs, rows)

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], rows: int) -> None:
        live = [j for j in jobs if not j.future.done()]
        if not live:
            return
        if len(live) == 1:
            merged = {k: list(v) for k, v in live[0].columns.items()}
        else:
            merged = {k: [] for k in live[0].columns}
            for job in live:
                for key, values in job.columns.items():
                    merged[key].extend(values)
        rows = sum(j.rows for j in live)
        started = time.perf_counter()
        try:
            if rows <= self.inline_rows:  # microseconds of work: a thread hop costs more
                results = self._predict(merged)
            else:
                results = await loop.run_in_executor(self._pool, self._predict, merged)
        except asyncio.CancelledError:
            for job in live:
                if not job.future.done():
                    job.future.cancel()
            raise
        except Exception as exc:
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.requests += len(live)
        self.stats.busy_seconds += elapsed
        if self._on_batch is not None:
            self._on_batch(len(live), rows, elapsed)
        if len(results) != rows:
            error = RuntimeError(f"predict returned {len(results)} results for {rows} rows")
            for job in live:
                if not job.future.done():
                    job.future.set_exception(error)
            return
        at = 0
        for job in live:
            part = results[at : at + job.rows]
            at += job.rows
            if not job.future.done():
                job.future.set_result(part)
