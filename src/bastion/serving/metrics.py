"""The server's Prometheus metrics, all in one registry per server (``GET /metrics``).

``/metrics`` needs a token with ``audit:read`` unless the request comes from loopback
(:mod:`~bastion.serving.app`): every figure here can be counted from the audit log, so a
caller who may read the log learns nothing new, and nobody else learns the alarm counts an
extraction attacker would like to calibrate against. No metric carries a principal, a
token or a value; labels are deployment names, HTTP statuses and fixed reason codes.

Server (:class:`ServerMetrics`)::

    bastion_requests_total{deployment,status}   predict requests answered
    bastion_request_seconds                     predict latency, first byte to audit durable
    bastion_auth_failures_total{route,reason}   401 (unauthenticated) and 403 (forbidden)
                                                on predict and on the admin routes
    bastion_audit_write_seconds                 one predict entry: submitted to durable
    bastion_audit_failures_total                entries the audit log refused (503 answered)
    bastion_batch_requests / bastion_batch_rows requests and rows per model call
    bastion_model_seconds                       one model call
    bastion_batches_total / bastion_rows_total  model calls made, rows predicted

Controls (:class:`ControlMetrics`)::

    bastion_rate_limited_total{reason}          429s by their code: RATE_LIMITED,
                                                DAILY_BUDGET_EXHAUSTED, EXTRACTION_THROTTLED
    bastion_screen_flagged_rows_total           rows flagged by screening (policy flag)
    bastion_screen_rejected_total               requests refused by screening (policy reject)
    bastion_extraction_alarms_total{reason,action}
    bastion_extraction_blocked_total            requests refused: principal blocked
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

__all__ = ["ControlMetrics", "ServerMetrics"]

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    """Requests, latency, auth failures, audit writes, model calls; :meth:`on_batch` is the
    batchers' callback. Call them on the event loop's thread (the server does): the metrics
    observed per request are plain numbers there, read when ``/metrics`` is scraped."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter

        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        # observed on every request, on the event loop's thread: plain numbers (no lock),
        # read into the registry by _LoopMetrics when /metrics is scraped
        self.requests = _Counter(
            "bastion_requests",
            "Predict requests by deployment and HTTP status.",
            ("deployment", "status"),
        )
        self.latency = _Histogram(
            "bastion_request_seconds",
            "Predict latency, from first byte read to audit entry durable.",
            _LATENCY,
        )
        self.auth_failures = Counter(
            "bastion_auth_failures",
            "Requests refused for their token: 401 unauthenticated, 403 forbidden.",
            ["route", "reason"],
            registry=reg,
        )
        self.audit_write = _Histogram(
            "bastion_audit_write_seconds",
            "One predict audit entry, from submitted to durable (group commit).",
            _LATENCY,
        )
        self.audit_failures = Counter(
            "bastion_audit_failures",
            "Audit entries the log could not take (the request was answered 503).",
            registry=reg,
        )
        self.batch_requests = _Histogram(
            "bastion_batch_requests", "Requests per model call (micro-batching).", _SIZES
        )
        self.batch_rows = _Histogram("bastion_batch_rows", "Rows per model call.", _SIZES)
        self.model_seconds = _Histogram("bastion_model_seconds", "One model call.", _LATENCY)
        self.rows = _Counter("bastion_rows", "Rows predicted.")
        self.batches = _Counter("bastion_batches", "Model calls made.")
        reg.register(
            _LoopMetrics(
                self.requests,
                self.latency,
                self.audit_write,
                self.batch_requests,
                self.batch_rows,
                self.model_seconds,
                self.rows,
                self.batches,
            )
        )
        self._auth: dict[tuple[str, str], Any] = {}

    def observe(self, deployment: str, status: int, seconds: float) -> None:
        """One predict request answered."""
        self.requests.inc((deployment, str(status)))
        self.latency.observe(seconds)

    def auth_failure(self, route: str, status: int) -> None:
        """A request refused for its token on ``route`` (``predict`` or ``admin``):
        ``status`` 401 counts as ``unauthenticated``, 403 as ``forbidden``."""
        reason = "unauthenticated" if status == 401 else "forbidden"
        child = self._auth.get((route, reason))
        if child is None:
            child = self._auth[(route, reason)] = self.auth_failures.labels(route, reason)
        child.inc()

    def on_batch(self, requests: int, rows: int, seconds: float) -> None:
        """One model call made (a :class:`~bastion.serving.batching.MicroBatcher` callback)."""
        self.batches.inc()
        self.rows.inc((), rows)
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)
        self.model_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, bytes]:
        """(content type, body) of the Prometheus text exposition."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry)


class _Counter:
    """A counter (by label values) updated from the event loop's thread only."""

    __slots__ = ("help", "labels", "name", "values")

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, labels
        self.values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, key: tuple[str, ...] = (), amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def family(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.help, labels=self.labels)
        for key, value in sorted(self.values.items()):
            family.add_metric(list(key), value)
        return family


class _Histogram:
    """A histogram observed from the event loop's thread only: one bisect and two
    additions per observation (prometheus_client's takes a lock per bucket and sum)."""

    __slots__ = ("bounds", "counts", "help", "name", "total")

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help = name, help_text
        self.bounds = [float(b) for b in buckets]
        self.counts = [0] * (len(buckets) + 1)  # the last one: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily

        cumulative, buckets = 0, []
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            cumulative += count  # "le" as prometheus_client writes these bounds
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        family = HistogramMetricFamily(self.name, self.help)
        family.add_metric([], buckets, self.total)
        return family


class _LoopMetrics:
    """The registry's view of the loop-thread counters and histograms (a collector)."""

    def __init__(self, *metrics: _Counter | _Histogram) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        for metric in self._metrics:
            yield metric.family()


class ControlMetrics:
    """Prometheus counters of the controls, in the server's registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter

        self.refused = Counter(
            "bastion_rate_limited",
            "Requests refused (429) by their code: RATE_LIMITED, DAILY_BUDGET_EXHAUSTED, "
            "EXTRACTION_THROTTLED.",
            ["reason"],
            registry=registry,
        )
        self.flagged = Counter(
            "bastion_screen_flagged_rows",
            "Rows flagged by input screening (allowed under the flag policy).",
            registry=registry,
        )
        self.screen_rejected = Counter(
            "bastion_screen_rejected",
            "Requests refused by input screening (reject policy).",
            registry=registry,
        )
        self.alarms = Counter(
            "bastion_extraction_alarms",
            "Extraction-monitor alarms by reason and action.",
            ["reason", "action"],
            registry=registry,
        )
        self.blocked = Counter(
            "bastion_extraction_blocked",
            "Requests refused because their principal is blocked after an extraction alarm.",
            registry=registry,
        )
