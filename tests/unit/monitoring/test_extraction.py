"""Extraction monitor unit behaviour: warm-up, alarms, statistics, bounded memory."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.monitoring.extraction import Alarm, ExtractionMonitor
from tests.unit.monitoring.test_screening import benign_rows, profile


def test_no_verdict_before_min_queries() -> None:
    mon = ExtractionMonitor(profile(), min_queries=50)
    row = benign_rows()[0]
    for i in range(49):
        assert mon.observe("p", [{**row, "age": 20 + (i % 2)}]) is None
    assert mon.stats("p")["shapiro_w"] is None


def test_a_constant_step_walk_raises_a_prada_alarm() -> None:
    mon = ExtractionMonitor(profile(), min_queries=50)
    row = benign_rows()[0]
    alarm = None
    for i in range(60):
        alarm = alarm or mon.observe("p", [{**row, "fnlwgt": 100_000 + 1000 * i}])
    assert isinstance(alarm, Alarm)
    assert (alarm.principal, alarm.reason, alarm.queries) == ("p", "prada", 50)
    assert alarm.statistic < mon.delta


def test_stats_and_batches_count_rows() -> None:
    mon = ExtractionMonitor(profile())
    assert mon.stats("nobody")["queries"] == 0
    mon.observe("p", benign_rows()[:120])
    s = mon.stats("p")
    assert s["queries"] == 120 and 0 < s["coverage"] <= 1 and 0 < s["shapiro_w"] <= 1
    assert mon.observe("p", []) is None
    mon.forget("p")
    assert mon.stats("p")["queries"] == 0


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
        ({"delta": 1.5}, "delta"),
        ({"coverage_bins": 1}, "coverage_bins"),
        ({"coverage_limit": 0}, "coverage_limit"),
        ({"max_principals": 0}, "max_principals"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        ExtractionMonitor(profile(), **kwargs)
