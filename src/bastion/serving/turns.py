"""One vectorised call per event-loop turn for the per-row work of many requests.

Screening and the extraction detector work row by row against the training profile, with a
handful of NumPy calls per request whatever its size: for a single-row request the per-call
overhead, not the row, is the cost. :class:`PerTurn` collects the requests of one deployment
that reach it in the same event-loop turn, merges their rows column by column, runs the
vectorised part ONCE over them (``compute``), then gives each request its own part of the
result in arrival order (``part``). A row's result depends on that row only, so each request
gets exactly what it would get alone; ``part`` may keep per-request state (the extraction
detector's per-principal history), which sees the requests in the order they arrived.

Requests whose columns differ (another deployment's, or rows missing a column) are computed
on their own. An exception in ``compute`` fails every request of that call; one in ``part``
fails only its request (the server answers 500 for it, closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from bastion.monitoring.screening import RowsByColumn

__all__ = ["PerTurn", "row_count"]

T = TypeVar("T")
R = TypeVar("R")


def row_count(columns: RowsByColumn) -> int:
    """How many rows ``columns`` holds (0 for no columns)."""
    return len(next(iter(columns.values()))) if columns else 0


_Item = tuple[RowsByColumn, Any, "asyncio.Future[Any]"]


class PerTurn(Generic[T, R]):
    """Batches ``compute(key, rows)`` per key and event-loop turn; see the module docstring.

    ``part(key, result, start, stop, tag)`` is one request's answer from the merged
    ``result`` (rows ``start:stop`` of it); ``tag`` is what the request passed to
    :meth:`submit` (the principal, for the extraction detector).
    """

    def __init__(
        self,
        compute: Callable[[str, RowsByColumn], T],
        part: Callable[[str, T, int, int, Any], R],
    ) -> None:
        self._compute = compute
        self._part = part
        self._pending: dict[str, list[_Item]] = {}

    async def submit(self, key: str, columns: RowsByColumn, tag: Any = None) -> R:
        """This request's answer, from its turn's one call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = []
            loop.call_soon(self._flush, key)
        pending.append((columns, tag, future))
        return await future

    def _flush(self, key: str) -> None:
        batch = self._pending.pop(key, [])
        if not batch:
            return
        names = list(batch[0][0])
        if len(batch) > 1 and all(list(cols) == names for cols, _, _ in batch):
            merged = {n: [v for cols, _, _ in batch for v in cols[n]] for n in names}
            self._settle(key, merged, batch)
            return
        for item in batch:  # one request, or rows of different shapes
            self._settle(key, item[0], [item])

    def _settle(self, key: str, columns: RowsByColumn, batch: Sequence[_Item]) -> None:
        try:
            result = self._compute(key, columns)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for cols, tag, future in batch:
            stop = start + row_count(cols)
            try:  # a request that went away still has its rows counted, in order
                answer = self._part(key, result, start, stop, tag)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(answer)
            start = stop
