"""PerTurn: one vectorised call per event-loop turn, each request its own part, in order;
and the extraction detector split in two (features once, then each principal's rows)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bastion.monitoring.extraction import ExtractionMonitor
from bastion.monitoring.screening import TrainingProfile
from bastion.serving.turns import PerTurn, row_count
from bastion.spec.config import ColumnSpec


class Recorder:
    """compute: doubles each row's value, remembering every call; part: the request's
    slice, tagged."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.parts: list[Any] = []

    def compute(self, key: str, columns: dict[str, list[Any]]) -> list[int]:
        self.calls.append((key, row_count(columns)))
        if any(v == "boom" for v in columns.get("x", [])):
            raise ValueError("compute failed")
        return [2 * v for v in columns["x"]]

    def part(self, key: str, result: list[int], start: int, stop: int, tag: Any) -> Any:
        self.parts.append(tag)
        if tag == "bad":
            raise RuntimeError("part failed")
        return (tag, result[start:stop])


def test_requests_of_one_turn_share_one_call_and_get_their_own_rows() -> None:
    rec = Recorder()
    turns: PerTurn[list[int], Any] = PerTurn(rec.compute, rec.part)

    async def main() -> list[Any]:
        return await asyncio.gather(
            turns.submit("a", {"x": [1]}, "p1"),
            turns.submit("a", {"x": [2, 3]}, "p2"),
            turns.submit("b", {"x": [4]}, "p3"),
            turns.submit("a", {"x": [5]}, "p1"),
        )

    got = asyncio.run(main())
    assert got == [("p1", [2]), ("p2", [4, 6]), ("p3", [8]), ("p1", [10])]
    assert sorted(rec.calls) == [("a", 4), ("b", 1)]  # one call per key and turn
    assert rec.parts == ["p1", "p2", "p1", "p3"]  # arrival order within a key


def test_requests_of_different_columns_are_computed_alone() -> None:
    rec = Recorder()
    turns: PerTurn[list[int], Any] = PerTurn(rec.compute, rec.part)

    async def main() -> list[Any]:
        return await asyncio.gather(
            turns.submit("a", {"x": [1]}, "p1"), turns.submit("a", {"x": [2], "y": [0]}, "p2")
        )

    assert asyncio.run(main()) == [("p1", [2]), ("p2", [4])]
    assert rec.calls == [("a", 1), ("a", 1)]


def test_a_failed_compute_fails_its_call_and_a_failed_part_only_its_request() -> None:
    rec = Recorder()
    turns: PerTurn[list[int], Any] = PerTurn(rec.compute, rec.part)

    async def main() -> list[Any]:
        return await asyncio.gather(
            turns.submit("a", {"x": [1]}, "ok"),
            turns.submit("a", {"x": [2]}, "bad"),
            turns.submit("b", {"x": ["boom"]}, "x"),
            return_exceptions=True,
        )

    ok, bad, boom = asyncio.run(main())
    assert ok == ("ok", [2])
    assert isinstance(bad, RuntimeError)
    assert isinstance(boom, ValueError)


def test_later_turns_get_new_calls() -> None:
    rec = Recorder()
    turns: PerTurn[list[int], Any] = PerTurn(rec.compute, rec.part)

    async def main() -> None:
        assert await turns.submit("a", {"x": [1]}, "p") == ("p", [2])
        assert await turns.submit("a", {"x": [3]}, "p") == ("p", [6])

    asyncio.run(main())
    assert rec.calls == [("a", 1), ("a", 1)]


@pytest.fixture(scope="module")
def profile() -> TrainingProfile:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, 2000),
            "hours": np.where(rng.random(2000) < 0.5, 40, rng.integers(1, 99, 2000)),
            "job": rng.choice(["a", "b", "c", "d"], 2000),
            "y": rng.integers(0, 2, 2000),
        }
    )
    schema = {
        "age": ColumnSpec(type="int", min=0, max=120),
        "hours": ColumnSpec(type="int", min=0, max=99),
        "job": ColumnSpec(type="category", categories=["a", "b", "c", "d", "z"]),
        "y": ColumnSpec(type="int"),
    }
    return TrainingProfile.from_frame(frame, schema, "y")


def test_features_once_then_slices_equal_request_by_request(profile: TrainingProfile) -> None:
    """The server's split path (features of a whole turn, then each request's slice) keeps
    exactly the statistics and alarms of observing each request alone."""
    rng = np.random.default_rng(1)
    rows = {
        "age": [int(v) for v in rng.integers(0, 120, 300)],  # uniform probes: alarms
        "hours": [int(v) for v in rng.integers(0, 100, 300)],
        "job": [str(v) for v in rng.choice(["a", "b", "c", "d", "z"], 300)],
    }
    alone, split = ExtractionMonitor(profile), ExtractionMonitor(profile)
    alarms_alone, alarms_split = [], []
    for start in range(0, 300, 30):  # ten turns of 30 one-row requests, two principals
        feats = split.features({k: v[start : start + 30] for k, v in rows.items()})
        for i in range(30):
            who = f"p{i % 2}"
            one = {k: v[start + i : start + i + 1] for k, v in rows.items()}
            alarms_alone.append(alone.observe_columns(who, one))
            alarms_split.append(split.observe_features(who, feats.rows(i, i + 1)))
    assert alarms_alone == alarms_split
    assert any(a is not None for a in alarms_alone)  # the probes did alarm
    for who in ("p0", "p1"):
        assert alone.stats(who) == split.stats(who)


def _one_by_one(vectors: np.ndarray, codes: np.ndarray, window: int, near: float) -> tuple:
    """The detector's definition, query by query: each distinct query's nearest among the
    ``window`` before it; the window's shares of near and one-column neighbours."""
    flags = []
    for i in range(len(vectors)):
        prev = range(max(0, i - window), i)
        if not prev:
            flags.append((0.0, 0.0))
            continue
        d2 = [float(np.sum((vectors[j].astype(np.float64) - vectors[i]) ** 2)) for j in prev]
        nn = list(prev)[int(np.argmin(d2))]
        flags.append((float(min(d2) < near * near), float(np.sum(codes[nn] != codes[i]) == 1)))
    last = flags[-window:]
    return (sum(a for a, _ in last) / len(last), sum(b for _, b in last) / len(last))


@pytest.mark.parametrize("sizes", [[1] * 60, [7, 1, 30, 2, 250, 1, 40], [450, 3]])
def test_batches_count_as_one_query_at_a_time(profile: TrainingProfile, sizes: list[int]) -> None:
    """However a principal's rows are split into requests (one row each, mixed, a batch
    longer than the window), the window's statistics are the query-by-query ones."""
    rng = np.random.default_rng(2)
    total = sum(sizes)
    base = {
        "age": [int(v) for v in rng.integers(18, 90, total)],
        "hours": [40 if rng.random() < 0.5 else int(v) for v in rng.integers(1, 99, total)],
        "job": [str(v) for v in rng.choice(["a", "b", "c", "d"], total)],
    }
    for i in range(1, total, 3):  # neighbours: copy the previous row, change one column
        base["job"][i] = base["job"][i - 1]
        base["hours"][i] = base["hours"][i - 1]
    monitor = ExtractionMonitor(profile, window=200, min_queries=3)
    feats = monitor.features(base)
    start = 0
    for size in sizes:
        monitor.observe_features("p", feats.rows(start, start + size))
        start += size
    _, unique = np.unique(feats.vectors, axis=0, return_index=True)
    keep = sorted(unique)  # first occurrences, in order (repeats are not queries)
    want = _one_by_one(feats.vectors[keep], feats.codes[keep], 200, monitor.near)
    got = monitor.stats("p")
    assert got["queries"] == len(keep)
    assert got["neighbourhood"] == pytest.approx(want[0])
    assert got["one_feature"] == pytest.approx(want[1])
    assert 0 < want[1] < 1  # the stream has one-column neighbours, and others


def test_a_request_that_went_away_still_has_its_rows_counted() -> None:
    """The detector's history must see every admitted row, in order, even when its
    request was cancelled (client gone, deadline) before the turn's call ran."""
    rec = Recorder()
    turns: PerTurn[list[int], Any] = PerTurn(rec.compute, rec.part)

    async def main() -> Any:
        gone = asyncio.ensure_future(turns.submit("a", {"x": [1]}, "gone"))
        kept = asyncio.ensure_future(turns.submit("a", {"x": [2]}, "kept"))
        await asyncio.sleep(0)  # both queued in this turn
        gone.cancel()
        return await kept

    assert asyncio.run(main()) == ("kept", [4])
    assert rec.calls == [("a", 2)] and rec.parts == ["gone", "kept"]
