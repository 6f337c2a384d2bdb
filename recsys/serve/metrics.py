"""Prometheus metrics of the service: request counts and latency histograms per route and per step.

Built on ``prometheus_client`` with one registry per application (several apps in one process,
as tests make, do not share counters).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

#: Histogram buckets in seconds: sub-millisecond index lookups up to minute-long generations.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0, 300.0)


class ServeMetrics:
    """Counters and histograms of one application.

    Metrics
    -------
    ``recsys_requests_total{route, method, status}`` : requests answered.
    ``recsys_request_seconds{route}`` : wall time per request (histogram).
    ``recsys_step_seconds{step}`` : time per step: ``encode``, ``search``, ``metadata``, ``rank``,
    ``generate`` (histogram).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_requests", "Requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("recsys_request_seconds", "Request wall time in seconds", ["route"],
                                 buckets=BUCKETS, registry=self.registry)
        self.steps = Histogram("recsys_step_seconds", "Time per serving step in seconds", ["step"],
                               buckets=BUCKETS, registry=self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request and its wall time."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_step(self, step: str, seconds: float) -> None:
        """Record one step's time."""
        self.steps.labels(step).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
