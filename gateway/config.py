"""Configuration of the HTTP gateway (all of its worker processes share one)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from runtime.tls import TLSConfig

__all__ = ["GatewayConfig", "default_workers"]

#: What a browser sends as ``Origin``: no path, no trailing slash.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\[\]:-]+")


def default_workers() -> int:
    """What ``canistry up`` should use: two workers where there are two cores or more."""
    return max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class GatewayConfig:
    """What :func:`gateway.app.create_app` and :func:`gateway.server.run_gateway` need."""

    registry_address: str
    """The registry, ``host:port``."""
    content_address: str
    """The content service, ``host:port``."""
    hub_address: str
    """The hub, ``host:port`` (read by ``GET /v1/cluster`` only)."""
    data_dir: Path
    """The gateway's own directory: the LMDB of nonces and idempotent replies, shared by workers."""
    tls: TLSConfig | None = None
    """The gateway's cluster certificate (role ``gateway``): every gRPC channel is mutual
    TLS. None dials plain text, which cluster services refuse (in-process tests only)."""
    host: str = "127.0.0.1"
    """Interface to bind; ``0.0.0.0`` inside containers."""
    port: int = 8080
    """TCP port; 0 lets the OS pick one (the ready file names it)."""
    workers: int = field(default_factory=default_workers)
    """Worker processes sharing the listening socket; they share nonces and replies."""
    clock_skew_s: float = 300.0
    """How far a signed request's ``ts`` may be from our clock; nonces are kept this long."""
    route_cache_ttl_s: float = 300.0
    """How long a principal's shard is trusted without asking the registry."""
    route_cache_size: int = 200_000
    """Principals whose shard each worker remembers (least recently used go first)."""
    content_cache_ttl_s: float = 10.0
    """How long a worker serves a unit or a unit page without asking the content service."""
    content_cache_size: int = 10_000
    """Unit bodies and pages each worker keeps."""
    content_max_age_s: int = 30
    """``Cache-Control: max-age`` for content; clients revalidate with ``If-None-Match`` after."""
    cluster_cache_ttl_s: float = 2.0
    """How long ``GET /v1/cluster`` reuses the registry's and hub's figures."""
    rpc_deadline_s: float = 3.0
    """Deadline of every gRPC call except submissions."""
    submit_deadline_s: float = 8.0
    """Deadline of ``SubmitQuiz`` (it includes the shard's own call to the content service)."""
    retry_after_s: int = 2
    """``Retry-After`` on 503s: no capacity yet, or a dependency down."""
    idempotency_ttl_s: float = 24 * 3600.0
    """How long an ``Idempotency-Key`` reply is replayed (at least 24 h by docs/design.md §7)."""
    idempotency_claim_s: float = 30.0
    """How long a request holding a key blocks a duplicate before a crash is assumed."""
    max_body_bytes: int = 64 * 1024
    """Largest request body accepted (413 beyond)."""
    grace_s: float = 5.0
    """How long in-flight requests may finish once a stop starts."""
    worker_healthcheck_s: float = 30.0
    """How long a worker may take to answer its supervisor's health ping before it is
    killed and replaced. uvicorn's 5 s killed workers that a busy host (a cluster
    restarting many shards) merely starved of CPU."""
    sweep_interval_s: float = 30.0
    """How often expired nonces and replies are deleted."""
    store_map_bytes: int = 1 << 32
    """Largest the gateway's LMDB may grow. Near it, new nonces and replies are refused
    with 503 + ``Retry-After`` (room is kept for the sweeper's deletes) until expiry frees
    space."""
    idempotency_quota: int = 1000
    """Replies (and claims) one principal may keep stored at once; 429 beyond, until the
    sweeper expires old ones. With the register rate limit, this bounds the store."""
    register_rate: float = 5.0
    """``POST /v1/users`` per second refilled to each client address's token bucket (kept
    in memory per worker, so with N workers a client gets up to N times this)."""
    register_burst: int = 20
    """The bucket's size: registrations a client address may send at once."""
    rate_limit_clients: int = 100_000
    """Client addresses whose buckets each worker remembers (least recently used go first)."""
    max_header_bytes: int = 32 * 1024
    """The longest request line and headers accepted; longer gets 431 and a close."""
    header_timeout_s: float = 10.0
    """A request's line and headers must arrive within this of its first byte (or of the
    connection opening); else the connection is closed."""
    body_timeout_s: float = 20.0
    """A request's body must arrive within this of its headers; else 408 and close."""
    keep_alive_s: int = 5
    """How long an idle keep-alive connection stays open between requests."""
    max_connections: int = 1000
    """Open connections each worker accepts; more are answered 503 and closed."""
    max_concurrency: int = 500
    """Requests in progress in each worker (uvicorn ``limit_concurrency``); 503 beyond."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins (``scheme://host[:port]``) whose pages may call the API; repeat the
    flag for more. None: a browser lets no other origin's page read a reply."""
    app_dir: Path | None = None
    """Static files served at ``/app/`` (the sample web app); none: no ``/app/``."""

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, Path):
            raise TypeError("data_dir must be a pathlib.Path")
        for name in ("registry_address", "content_address", "hub_address"):
            value = getattr(self, name)
            if not isinstance(value, str) or ":" not in value:
                raise ValueError(f"{name} must be host:port, got {value!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        positive = (
            "clock_skew_s", "route_cache_ttl_s", "content_cache_ttl_s", "cluster_cache_ttl_s",
            "rpc_deadline_s", "submit_deadline_s", "idempotency_ttl_s", "idempotency_claim_s",
            "worker_healthcheck_s",
            "sweep_interval_s", "register_rate", "header_timeout_s", "body_timeout_s",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.idempotency_ttl_s < 24 * 3600:
            raise ValueError("idempotency_ttl_s must be at least 24 hours (docs/design.md §7)")
        sizes = (
            "route_cache_size", "content_cache_size", "max_body_bytes", "idempotency_quota",
            "register_burst", "rate_limit_clients", "keep_alive_s", "max_connections",
            "max_header_bytes",
            "max_concurrency",
        )  # fmt: skip
        for name in sizes:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.store_map_bytes < 1 << 18:
            raise ValueError("store_map_bytes must be at least 256 KiB")
        if not isinstance(self.cors_origins, tuple):
            raise TypeError("cors_origins must be a tuple of origins")
        for origin in self.cors_origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(f"a CORS origin is scheme://host[:port], got {origin!r}")
        if self.app_dir is not None and not self.app_dir.is_dir():
            raise ValueError(f"app_dir is not a directory: {self.app_dir}")
        if self.content_max_age_s < 0 or self.retry_after_s < 1 or self.grace_s < 0:
            raise ValueError("content_max_age_s >= 0, retry_after_s >= 1 and grace_s >= 0")
