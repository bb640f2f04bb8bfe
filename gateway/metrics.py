"""Prometheus metrics of the gateway.

With several workers, :func:`gateway.server.run_gateway` points
``PROMETHEUS_MULTIPROC_DIR`` at a directory in the gateway's data dir before
the workers start, and :func:`render` aggregates every worker's figures, so
a scrape that lands on any worker sees them all.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "AUTH_FAILURES",
    "CACHE",
    "CONTENT_TYPE",
    "LATENCY",
    "REQUESTS",
    "ROUTE_RETRIES",
    "SUBMISSION_BATCH",
    "UPSTREAM_ERRORS",
    "render",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "canistry_gateway_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "canistry_gateway_request_seconds",
    "Time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
AUTH_FAILURES = Counter(
    "canistry_gateway_auth_failures_total", "Signed requests refused, by reason", ["reason"]
)
CACHE = Counter("canistry_gateway_cache_total", "Cache lookups", ["cache", "result"])
UPSTREAM_ERRORS = Counter(
    "canistry_gateway_upstream_errors_total",
    "Failed gRPC calls, by peer and code",
    ["peer", "code"],
)
ROUTE_RETRIES = Counter(
    "canistry_gateway_route_retries_total",
    "Shard calls retried after a route refresh, by reason",
    ["reason"],
)

SUBMISSION_BATCH = Histogram(
    "canistry_gateway_submission_batch_size",
    "Submissions per call to a shard (merged while the shard's previous call runs)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)


def render() -> bytes:
    """The exposition text: this worker's metrics, or every worker's in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
