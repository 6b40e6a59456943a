"""Extraction detector unit behaviour: each signal on its own, the combined decision,
warm-up, statistics, bounded memory, parameters."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.errors import ConfigError
from bastion.monitoring.extraction import DEFAULT_LIMITS, REASONS, Alarm, ExtractionMonitor
from tests.unit.monitoring.test_screening import benign_rows, profile, schema, uniform_rows

NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")


def _only(reason: str) -> dict[str, float]:
    """Limits that let only ``reason`` fire (the others out of reach)."""
    return {r: (DEFAULT_LIMITS[r] if r == reason else 1e9) for r in REASONS} | {
        r: 1.0 for r in ("coverage", "neighbourhood", "one_feature") if r != reason
    }


def _feed(mon: ExtractionMonitor, rows: list[dict]) -> Alarm | None:
    for row in rows:
        alarm = mon.observe("p", [row])
        if alarm is not None:
            return alarm
    return None


def _perturbed(n: int, seed: int, scale: float = 0.1) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows, spec, prof = benign_rows(), schema(), profile()
    out = []
    for i in rng.integers(len(rows), size=n):
        row = dict(rows[int(i)])
        for c in NUMERIC:
            v = row[c] + scale * prof.numeric[c].std * rng.normal()
            row[c] = round(min(max(v, spec[c].min or 0), spec[c].max or 0))
        out.append(row)
    return out


def _one_at_a_time(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows, prof = benign_rows(), profile()
    seeds = [rows[int(i)] for i in rng.integers(len(rows), size=10)]
    out = []
    for _ in range(n):
        row = dict(seeds[int(rng.integers(10))])
        c = "age" if rng.uniform() < 0.5 else "fnlwgt"
        row[c] = round(row[c] + prof.numeric[c].std * rng.normal())
        out.append(row)
    return out


def _neighbourhood(n: int, seed: int) -> list[dict]:
    """Small steps in two columns at once around a few seeds (not one at a time)."""
    rng = np.random.default_rng(seed)
    rows, prof = benign_rows(), profile()
    seeds = [rows[int(i)] for i in rng.integers(len(rows), size=5)]
    out = []
    for _ in range(n):
        row = dict(seeds[int(rng.integers(5))])
        for c in ("age", "fnlwgt"):
            row[c] = round(row[c] + 0.1 * prof.numeric[c].std * rng.normal())
        out.append(row)
    return out


@pytest.mark.parametrize(
    ("reason", "stream"),
    [
        ("coverage", lambda: uniform_rows(300, np.random.default_rng(0))),
        ("off_profile", lambda: uniform_rows(300, np.random.default_rng(1))),
        ("synthetic", lambda: _perturbed(300, 2)),
        ("neighbourhood", lambda: _neighbourhood(300, 3)),
        ("one_feature", lambda: _one_at_a_time(300, 4)),
    ],
)
def test_each_signal_alone_catches_its_attack_and_spares_a_replay(reason: str, stream) -> None:
    alarm = _feed(ExtractionMonitor(profile(), limits=_only(reason)), stream())
    assert isinstance(alarm, Alarm) and alarm.reason == reason
    assert 50 <= alarm.queries <= 300 and alarm.statistic >= DEFAULT_LIMITS[reason]
    assert _feed(ExtractionMonitor(profile(), limits=_only(reason)), benign_rows()[:1500]) is None


def test_the_decision_names_the_first_statistic_over_its_limit() -> None:
    mon = ExtractionMonitor(profile())
    alarm = _feed(mon, uniform_rows(100, np.random.default_rng(5)))
    assert alarm is not None and alarm.reason == "coverage"  # off_profile is over too
    stats = mon.stats("p")
    assert stats["off_profile"] > DEFAULT_LIMITS["off_profile"]


def test_no_verdict_before_min_queries() -> None:
    mon = ExtractionMonitor(profile(), min_queries=50)
    rows = _one_at_a_time(49, 6)
    assert all(mon.observe("p", [r]) is None for r in rows)
    assert mon.stats("p")["one_feature"] is None


def test_stats_and_batches_count_rows() -> None:
    mon = ExtractionMonitor(profile())
    assert mon.stats("nobody") == {"queries": 0, "repeats": 0, "alarmed_at": None} | dict.fromkeys(
        REASONS
    )
    mon.observe("p", benign_rows()[:120])
    s = mon.stats("p")
    assert s["queries"] == 120 and 0 < s["coverage"] <= 1
    assert abs(s["off_profile"]) < 0.1 and s["synthetic"] < 0.1
    assert mon.observe("p", []) is None
    mon.forget("p")
    assert mon.stats("p")["queries"] == 0


def test_alarms_repeat_at_most_once_per_window() -> None:
    mon = ExtractionMonitor(profile(), window=100)
    alarms = [
        a for r in uniform_rows(400, np.random.default_rng(8)) if (a := mon.observe("p", [r]))
    ]
    assert [a.queries for a in alarms] == [50, 150, 250, 350]


def test_memory_is_bounded() -> None:
    mon = ExtractionMonitor(profile(), window=10, min_queries=5, max_principals=3)
    rows = benign_rows()
    for i in range(10):
        mon.observe(f"p{i}", rows[:25])
    assert len(mon._states) == 3
    assert all(st.vectors.shape[0] == 10 for st in mon._states.values())
    assert mon.stats("p9")["queries"] == 25


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"window": 2}, "window"),
        ({"min_queries": 500}, "min_queries"),
        ({"near": 0}, "near"),
        ({"coverage_bins": 1}, "coverage_bins"),
        ({"limits": {"prada": 0.5}}, "prada"),
        ({"limits": {"off_profile": -1}}, "off_profile"),
        ({"limits": {"coverage": 1.5}}, "coverage"),
        ({"max_principals": 0}, "max_principals"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ExtractionMonitor(profile(), **kwargs)


def test_one_rows_features_equal_the_batchs() -> None:
    """The detector's features of a single row (plain Python) equal that row's in a
    vectorised batch: vectors, codes and atoms exactly, the surprisal within rounding."""
    from tests.unit.monitoring.test_screening import _columns, _edge_rows

    mon = ExtractionMonitor(profile())
    rows = _edge_rows()
    complete = [r for r in rows if len(r) == len(rows[0])]
    batch = mon.features(_columns(complete))
    for i, row in enumerate([*complete, rows[-1]]):
        one = mon.features({k: [v] for k, v in row.items()})
        want = batch.rows(i, i + 1) if i < len(complete) else mon.features(_columns([row] * 2))
        assert one.vectors.dtype == want.vectors.dtype and one.vectors.shape[0] == 1
        np.testing.assert_array_equal(one.vectors[0], want.vectors[0])
        np.testing.assert_array_equal(one.codes[0], want.codes[0])
        np.testing.assert_array_equal(one.atoms[0], want.atoms[0])
        assert one.bits[0] == pytest.approx(want.bits[0], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("stream", [lambda: _perturbed(500, 9), lambda: uniform_rows(500, RNG())])
def test_row_by_row_and_batches_keep_the_same_window(stream) -> None:
    """Single-row requests update the window in place (running sums, cell counts); batches
    recount it. Past the window's wrap-around, both give the same statistics and the same
    coverage cells, whichever way the same rows came."""
    rows = stream() + stream()[:50]  # with exact repeats, which neither counts
    one, batched = ExtractionMonitor(profile()), ExtractionMonitor(profile())  # window 200
    for row in rows:
        one.observe("p", [row])
    for start in range(0, len(rows), 37):
        batched.observe("p", rows[start : start + 37])
    a, b = one.stats("p"), batched.stats("p")
    assert a["queries"] == b["queries"] == 500 and a["repeats"] == b["repeats"] == 50
    for reason in REASONS:
        assert a[reason] == pytest.approx(b[reason], abs=1e-9), reason
    ha, hb = one._states["p"], batched._states["p"]
    assert ha.counts == hb.counts and ha.occupied == hb.occupied > 0


def RNG() -> np.random.Generator:
    return np.random.default_rng(10)
