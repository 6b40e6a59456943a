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

from typing import Any

__all__ = ["ControlMetrics", "ServerMetrics"]

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServerMetrics:
    """Requests, latency, auth failures, audit writes, model calls; :meth:`on_batch` is the
    batchers' callback. Every observe method is cheap (no lock beyond prometheus_client's)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "bastion_requests",
            "Predict requests by deployment and HTTP status.",
            ["deployment", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "bastion_request_seconds",
            "Predict latency, from first byte read to audit entry durable.",
            buckets=_LATENCY,
            registry=reg,
        )
        self.auth_failures = Counter(
            "bastion_auth_failures",
            "Requests refused for their token: 401 unauthenticated, 403 forbidden.",
            ["route", "reason"],
            registry=reg,
        )
        self.audit_write = Histogram(
            "bastion_audit_write_seconds",
            "One predict audit entry, from submitted to durable (group commit).",
            buckets=_LATENCY,
            registry=reg,
        )
        self.audit_failures = Counter(
            "bastion_audit_failures",
            "Audit entries the log could not take (the request was answered 503).",
            registry=reg,
        )
        self.batch_requests = Histogram(
            "bastion_batch_requests",
            "Requests per model call (micro-batching).",
            buckets=_SIZES,
            registry=reg,
        )
        self.batch_rows = Histogram(
            "bastion_batch_rows", "Rows per model call.", buckets=_SIZES, registry=reg
        )
        self.model_seconds = Histogram(
            "bastion_model_seconds", "One model call.", buckets=_LATENCY, registry=reg
        )
        self.rows = Counter("bastion_rows", "Rows predicted.", registry=reg)
        self.batches = Counter("bastion_batches", "Model calls made.", registry=reg)
        self._children: dict[tuple[str, int], Any] = {}
        self._auth: dict[tuple[str, str], Any] = {}

    def observe(self, deployment: str, status: int, seconds: float) -> None:
        """One predict request answered."""
        child = self._children.get((deployment, status))
        if child is None:
            child = self._children[(deployment, status)] = self.requests.labels(
                deployment, str(status)
            )
        child.inc()
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
        self.rows.inc(rows)
        self.batch_requests.observe(requests)
        self.batch_rows.observe(rows)
        self.model_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, bytes]:
        """(content type, body) of the Prometheus text exposition."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return CONTENT_TYPE_LATEST.encode(), generate_latest(self.registry)


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
