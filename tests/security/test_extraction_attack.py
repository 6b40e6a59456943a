"""Model extraction through the prediction API is detected; benign traffic is not.

Attacks (Tramèr et al. 2016; Papernot et al. 2017, as PRADA evaluates them): (a) random
queries drawn uniformly from the schema's ranges and categories; (b) Jacobian-style
synthetic queries, small steps around a few seed rows, the set doubling each round; (c)
perturbed real rows, a fresh row each time (the stream that went unnoticed for 3,000
queries in issue 14); (d) one feature varied at a time around a few rows. Benign traffic:
three principals replaying ``adult.test`` in order, 1,000 single-row queries each; a hot-key
mix; many principals cycling through the same small pool of rows (the load test that the
PRADA monitor blocked after ~260 queries).
"""

from __future__ import annotations

import numpy as np
import pytest

from bastion.monitoring.extraction import ExtractionMonitor
from tests.unit.monitoring.test_screening import benign_rows, frame, profile, schema, uniform_rows

BUDGET = 1_000


def _first_alarm(mon: ExtractionMonitor, principal: str, rows: list[dict]) -> tuple[int, str]:
    for row in rows:
        alarm = mon.observe(principal, [row])
        if alarm is not None:
            return alarm.queries, alarm.reason
    return 0, ""


def _jacobian_style(rng: np.random.Generator, seeds: int = 5, step: float = 0.1) -> list[dict]:
    spec = schema()
    numeric = [c for c, s in spec.items() if c != "Y" and s.type in ("int", "float")]
    start = frame("adult.data").drop(columns="Y").dropna()
    current = start.sample(seeds, random_state=int(rng.integers(1 << 31))).to_dict("records")
    out = list(current)
    while len(out) < BUDGET:
        new = []
        for x in current:
            y = dict(x)
            for c in numeric:
                v = x[c] + step * profile().numeric[c].std * rng.choice([-1, 1])
                y[c] = round(min(max(v, spec[c].min or 0), spec[c].max or 0))
            new.append(y)
        out += new
        current = current + new
    return out[:BUDGET]


def test_benign_replay_raises_no_alarm() -> None:
    mon = ExtractionMonitor(profile())
    rows = benign_rows()
    for k in range(3):
        assert _first_alarm(mon, f"analyst-{k}", rows[k * BUDGET : (k + 1) * BUDGET]) == (0, "")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_query_extraction_is_detected(seed: int) -> None:
    mon = ExtractionMonitor(profile())
    queries, reason = _first_alarm(mon, "thief", uniform_rows(BUDGET, np.random.default_rng(seed)))
    assert 0 < queries <= BUDGET  # measured: 50 (coverage)
    assert reason == "coverage"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_jacobian_style_extraction_is_detected(seed: int) -> None:
    mon = ExtractionMonitor(profile())
    queries, reason = _first_alarm(mon, "thief", _jacobian_style(np.random.default_rng(seed)))
    assert 0 < queries <= BUDGET  # measured: 50
    assert reason in ("off_profile", "synthetic", "neighbourhood")


def test_an_attacker_hiding_among_benign_principals_is_still_caught() -> None:
    mon = ExtractionMonitor(profile())
    rows = benign_rows()
    attack = uniform_rows(BUDGET, np.random.default_rng(9))
    alarms = []
    for i in range(300):
        for who, row in (("analyst", rows[i]), ("thief", attack[i])):
            alarm = mon.observe(who, [row])
            if alarm is not None:
                alarms.append(alarm.principal)
    assert alarms and set(alarms) == {"thief"}


# -- exact repeats are not extraction (issue 12, item 5) ------------------------------------


def test_two_hundred_identical_rows_in_one_batch_never_alarm() -> None:
    mon = ExtractionMonitor(profile())
    row = benign_rows()[0]
    for _ in range(3):  # the same batch test, run three times
        assert mon.observe("batch-tester", [row] * 200) is None
    stats = mon.stats("batch-tester")
    assert stats["queries"] == 1 and stats["repeats"] == 599


def test_two_hundred_identical_rows_one_by_one_never_alarm() -> None:
    mon = ExtractionMonitor(profile())
    row = benign_rows()[1]
    assert [mon.observe("batch-tester", [row]) for _ in range(200)] == [None] * 200
    assert mon.stats("batch-tester")["queries"] == 1


def test_repeats_are_counted_per_principal_and_do_not_hide_a_sweep() -> None:
    mon = ExtractionMonitor(profile())
    row = benign_rows()[2]
    assert mon.observe("a", [row]) is None
    assert mon.observe("b", [row, row]) is None
    assert (mon.stats("a")["queries"], mon.stats("b")["queries"]) == (1, 1)
    # an attacker padding a uniform sweep with repeats is still caught, as fast
    attack = uniform_rows(BUDGET, np.random.default_rng(4))
    padded = [r for probe in attack for r in (probe, row, probe)]
    queries, reason = _first_alarm(mon, "thief", padded)
    assert 0 < queries <= BUDGET and reason == "coverage"
    plain, _ = _first_alarm(ExtractionMonitor(profile()), "thief", attack)
    assert queries <= plain + 1  # the padding row is one distinct query more, nothing else


# -- issue 14: realistic extraction is caught, realistic load is not ---------------------


def _perturbed_real_rows(rng: np.random.Generator, scale: float = 0.1) -> list[dict]:
    spec, prof, rows = schema(), profile(), benign_rows()
    numeric = [c for c, s in spec.items() if c != "Y" and s.type in ("int", "float")]
    out = []
    for i in rng.integers(len(rows), size=BUDGET):
        row = dict(rows[int(i)])
        for c in numeric:
            v = row[c] + scale * prof.numeric[c].std * rng.normal()
            row[c] = round(min(max(v, spec[c].min or 0), spec[c].max or 0))
        out.append(row)
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_perturbed_real_rows_extraction_is_detected(seed: int) -> None:
    mon = ExtractionMonitor(profile())
    queries, reason = _first_alarm(mon, "thief", _perturbed_real_rows(np.random.default_rng(seed)))
    assert 0 < queries <= 100  # measured: 50
    assert reason == "synthetic"


def test_one_feature_at_a_time_probing_is_detected() -> None:
    rng = np.random.default_rng(5)
    rows = benign_rows()
    seeds = [rows[int(i)] for i in rng.integers(len(rows), size=20)]
    probes = []
    for _ in range(BUDGET):
        row = dict(seeds[int(rng.integers(20))])
        row["age"] = int(rng.integers(17, 91))  # a line search along one axis
        probes.append(row)
    queries, reason = _first_alarm(ExtractionMonitor(profile()), "thief", probes)
    assert 0 < queries <= 100 and reason in ("one_feature", "neighbourhood")


def test_many_tokens_cycling_through_one_small_pool_never_alarm() -> None:
    mon = ExtractionMonitor(profile())
    pool = benign_rows()[:300]
    for token in range(20):
        start = 37 * token
        for k in range(900):  # three passes each, one row per request, as the server calls
            row = pool[(start + k) % 300]
            assert mon.observe_columns(f"load-{token}", {c: [v] for c, v in row.items()}) is None
        assert mon.stats(f"load-{token}")["queries"] == 300


def test_a_hot_key_mix_never_alarms() -> None:
    rng = np.random.default_rng(6)
    rows = benign_rows()
    fresh = iter(rows[10:])
    stream = [
        rows[int(rng.integers(10))] if rng.uniform() < 0.8 else next(fresh) for _ in range(3_000)
    ]
    assert _first_alarm(ExtractionMonitor(profile()), "app", stream) == (0, "")
