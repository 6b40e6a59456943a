"""The loop-thread metrics expose exactly what prometheus_client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bastion.serving.metrics import ServerMetrics


def _samples(text: bytes, prefix: str) -> list[str]:
    """The sample lines of one metric, without the ``_created`` timestamps (ours has none)."""
    lines = text.decode().splitlines()
    return [ln for ln in lines if ln.startswith(prefix) and "_created" not in ln]


def test_histograms_and_counters_read_as_prometheus_clients() -> None:
    """Same observations, same exposition lines: bucket bounds (an observation equal to a
    bound counts in it), cumulative counts, sum, count; counters by label."""
    ours = ServerMetrics()
    reg = CollectorRegistry()
    latency = Histogram(
        "bastion_request_seconds", "x", buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05, 0.1, 0.25, 0.5, 1, 2.5, 10), registry=reg,
    )  # fmt: skip
    requests = Counter("bastion_requests", "x", ["deployment", "status"], registry=reg)
    rows = Histogram(
        "bastion_batch_rows", "x", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
        registry=reg,
    )  # fmt: skip
    for seconds, status in [(0.0005, 200), (0.0004, 200), (0.003, 429), (11.0, 200), (1, 503)]:
        ours.observe("adult", status, seconds)
        latency.observe(seconds)
        requests.labels("adult", str(status)).inc()
    for n in (1, 3, 64, 5000):
        ours.on_batch(1, n, 0.001)
        rows.observe(n)
    mine, theirs = ours.exposition()[1], generate_latest(reg)
    for prefix in ("bastion_request_seconds_", "bastion_requests_total", "bastion_batch_rows_"):
        got, want = _samples(mine, prefix), _samples(theirs, prefix)
        assert got and sorted(got) == sorted(want), prefix
    assert "bastion_rows_total 5068.0" in mine.decode()
