"""MicroBatcher: concurrent requests share one model call and each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bastion.serving.batching import MicroBatcher


class Model:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, cols: dict[str, list[Any]]) -> list[int]:
        self.threads.add(threading.current_thread().name)
        if self.delay:
            threading.Event().wait(self.delay)
        self.calls.append(len(cols["x"]))
        if self.fail:
            raise ValueError("model exploded")
        return [v * 10 for v in cols["x"]]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    model = Model()

    async def main() -> list[list[int]]:
        b: MicroBatcher[int] = MicroBatcher(model, max_wait=0.05, max_rows=1000)
        b.start()
        try:
            return await asyncio.gather(*(b.submit({"x": [i, i + 100]}) for i in range(20)))
        finally:
            await b.close()

    results = run(main())
    assert results == [[i * 10, (i + 100) * 10] for i in range(20)]
    assert model.calls == [40]
    assert model.threads and all(t.startswith("bastion-predict") for t in model.threads)


def test_max_rows_splits_batches_without_splitting_requests() -> None:
    model = Model()

    async def main() -> list[list[int]]:
        b: MicroBatcher[int] = MicroBatcher(model, max_wait=0.05, max_rows=5)
        b.start()
        try:
            return await asyncio.gather(*(b.submit({"x": [1, 2]}) for _ in range(6)))
        finally:
            await b.close()

    assert run(main()) == [[10, 20]] * 6
    assert sum(model.calls) == 12 and max(model.calls) <= 5


def test_a_request_larger_than_max_rows_runs_alone() -> None:
    model = Model()

    async def main() -> list[int]:
        b: MicroBatcher[int] = MicroBatcher(model, max_wait=0.0, max_rows=2)
        b.start()
        try:
            return await b.submit({"x": list(range(7))})
        finally:
            await b.close()

    assert run(main()) == [v * 10 for v in range(7)]
    assert model.calls == [7]


def test_model_error_reaches_every_request_of_the_batch() -> None:
    async def main() -> list[Any]:
        b: MicroBatcher[int] = MicroBatcher(Model(fail=True), max_wait=0.02)
        b.start()
        try:
            return await asyncio.gather(
                *(b.submit({"x": [1]}) for _ in range(3)), return_exceptions=True
            )
        finally:
            await b.close()

    results = run(main())
    assert all(isinstance(r, ValueError) for r in results)


def test_cancelled_request_is_not_predicted_and_others_are_unaffected() -> None:
    model = Model(delay=0.05)

    async def main() -> list[int]:
        b: MicroBatcher[int] = MicroBatcher(model, max_wait=0.0)
        b.start()
        try:
            busy = asyncio.create_task(b.submit({"x": [1]}))  # occupies the worker
            await asyncio.sleep(0.01)
            doomed = asyncio.create_task(b.submit({"x": [2]}))
            await asyncio.sleep(0)
            doomed.cancel()
            later = await b.submit({"x": [3]})
            await busy
            return later
        finally:
            await b.close()

    assert run(main()) == [30]
    assert 2 not in [c for c in model.calls if c != 1]
    assert sum(model.calls) == 2  # rows 1 and 3; the cancelled row never ran


def test_submit_before_start_is_an_error() -> None:
    async def main() -> None:
        await MicroBatcher(Model()).submit({"x": [1]})

    with pytest.raises(RuntimeError, match="start"):
        run(main())


@pytest.mark.parametrize(("wait", "rows"), [(-1.0, 1), (0.0, 0)])
def test_bad_settings_are_refused(wait: float, rows: int) -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Model(), max_wait=wait, max_rows=rows)


def test_small_batches_run_inline_and_larger_ones_in_the_worker() -> None:
    """``inline_rows``: a batch of at most that many rows is predicted on the event loop's
    own thread (no hop); a larger one in the worker thread; results are the same."""
    model = Model()

    async def main() -> tuple[list[int], list[int], str]:
        b: MicroBatcher[int] = MicroBatcher(model, max_wait=0.0, max_rows=1000, inline_rows=4)
        b.start()
        try:
            small = await b.submit({"x": [1, 2]})
            large = await b.submit({"x": list(range(10))})
            return small, large, threading.current_thread().name
        finally:
            await b.close()

    small, large, loop_thread = run(main())
    assert small == [10, 20] and large == [v * 10 for v in range(10)]
    assert model.calls == [2, 10]
    assert loop_thread in model.threads
    assert any(t.startswith("bastion-predict") for t in model.threads)


def test_no_wait_batches_what_queued_while_the_model_ran() -> None:
    """``max_wait=0`` (the server's default): a lone request is predicted at once; requests
    that arrive while the model runs form the next batch together."""
    model = Model(delay=0.05)

    async def main() -> list[list[int]]:
        b: MicroBatcher[int] = MicroBatcher(model, max_wait=0.0, max_rows=1000)
        b.start()
        try:
            first = asyncio.ensure_future(b.submit({"x": [0]}))
            await asyncio.sleep(0.01)  # the first call is running now
            rest = [b.submit({"x": [i]}) for i in range(1, 6)]
            return [await first, *await asyncio.gather(*rest)]
        finally:
            await b.close()

    assert run(main()) == [[0], [10], [20], [30], [40], [50]]
    assert model.calls == [1, 5]
