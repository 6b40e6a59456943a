"""The server's Prometheus metrics, all in one registry per server (``GET /metrics``).

:class:`ServerMetrics` counts predict requests by deployment and status, their latency (first
byte read to audit entry durable), model calls and rows; :class:`ControlMetrics` counts what
the controls refused, flagged and alarmed on. Neither carries a principal or a value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ControlMetrics", "ServerMetrics"]


class ServerMetrics:
    """Requests, latency, model calls and rows; :meth:`on_batch` is the batchers' callback."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bastion_requests",
            "Predict requests by deployment and HTTP status.",
            ["deployment", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bastion_request_seconds",
            "Predict latency, from first byte read to audit entry durable.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.rows = Counter("bastion_rows", "Rows predicted.", registry=self.registry)
        self.batches = Counter("bastion_batches", "Model calls made.", registry=self.registry)
        self._children: dict[tuple[str, int], Any] = {}

    def observe(self, deployment: str, status: int, seconds: float) -> None:
        """One predict request answered."""
        child = self._children.get((deployment, status))
        if child is None:
            child = self._children[(deployment, status)] = self.requests.labels(
                deployment, str(status)
            )
        child.inc()
        self.latency.observe(seconds)

    def on_batch(self, requests: int, rows: int, seconds: float) -> None:
        """One model call made (a :class:`~bastion.serving.batching.MicroBatcher` callback)."""
        self.batches.inc()
        self.rows.inc(rows)

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
            "Requests refused by the rate limit or the daily budget.",
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
