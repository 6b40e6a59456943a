"""One interface for the audits' heavy, independent work: ``Executor.map(fn, items)``.

Reference models, attack batches and bootstrap resamples are independent tasks; an audit
hands them to an :class:`Executor` and gets the results back in the order of ``items``.

- :class:`LocalExecutor` runs them in local processes (``concurrent.futures``). Its worker
  count comes from Bastion's thread policy (:func:`bastion.threads.resolve_threads`:
  ``BASTION_THREADS`` if set, else the setting, else what the machine has free). With one
  worker it runs each task inline, in this process, with no pool to start.
- Each task runs with scikit-learn's OpenMP and BLAS pools capped (threadpoolctl), so that
  ``workers`` processes × their threads never oversubscribe the cores: ``threads_per_task``
  (default 1).

``fn`` and the items must be picklable when ``workers > 1`` (a module-level function, not a
lambda). A task's result never depends on the worker count: give each task its own seed in
its item, never draw from a shared random state. Another backend (e.g. Ray) implements the
same ``map``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol, TypeVar

from bastion.threads import ThreadSetting, resolve_threads

__all__ = ["Executor", "LocalExecutor"]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs independent tasks; results come back in the order of the items."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]: ...


def _capped(fn: Callable[[Any], Any], threads: int, item: Any) -> Any:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return fn(item)


class LocalExecutor:
    """Tasks in local processes; ``workers=1`` runs them inline.

    ``workers`` is a count or ``"auto"`` (resolved now through the thread policy, so
    ``BASTION_THREADS`` wins); ``threads_per_task`` caps each task's BLAS/OpenMP pools.
    """

    def __init__(
        self, workers: ThreadSetting | str | None = None, *, threads_per_task: int = 1
    ) -> None:
        if threads_per_task < 1:
            raise ValueError(
                f"threads_per_task: expected a whole number >= 1, got {threads_per_task}"
            )
        self.workers = resolve_threads(workers)
        self.threads_per_task = threads_per_task

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        todo = list(items)
        if self.workers == 1 or len(todo) <= 1:
            return [_capped(fn, self.threads_per_task, item) for item in todo]
        with ProcessPoolExecutor(max_workers=min(self.workers, len(todo))) as pool:
            futures = [pool.submit(_capped, fn, self.threads_per_task, item) for item in todo]
            return [f.result() for f in futures]
