"""Prometheus metrics of every gRPC service, and the HTTP endpoint that serves them.

Each service process keeps its metrics in the default registry:

- ``canistry_rpc_requests_total{service, method, code}`` and
  ``canistry_rpc_seconds{service, method}``: every RPC the server edge
  (``runtime.rpc``) handles, by outcome, and its latency;
- ``canistry_commit_batch_jobs{store}``: how many writes each group commit
  carried (``runtime.store``);
- the service's own figures, read when scraped (:func:`register_figures`):
  a shard's users, balances, allowance and pending rewards, the hub's
  treasury and spawns, the content service's verifications.

:class:`MetricsServer` serves ``/metrics`` over plain HTTP on its own port (0
picks a free one below the ephemeral port range, so that it never takes a
port the cluster handed to a service that has not bound it yet) and records
``host:port`` in ``metrics.addr`` in the service's data directory, where
``canistry status --metrics`` finds it. The gateway serves its own
``/metrics`` on its HTTP port instead.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from runtime.files import write_atomically
from runtime.lifecycle import Lifecycle

__all__ = [
    "ADDRESS_FILE",
    "COMMIT_BATCH",
    "RPC_REQUESTS",
    "RPC_SECONDS",
    "Figure",
    "MetricsServer",
    "observe_rpc",
    "register_figures",
]

#: The file in a service's data directory naming where its metrics are served.
ADDRESS_FILE = "metrics.addr"

RPC_REQUESTS = Counter(
    "canistry_rpc_requests",
    "RPCs handled, by service, method and outcome (OK or the error code)",
    ["service", "method", "code"],
)
RPC_SECONDS = Histogram(
    "canistry_rpc_seconds",
    "Time from a request's arrival to its answer, by service and method",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMIT_BATCH = Histogram(
    "canistry_commit_batch_jobs",
    "Writes carried by one group commit (one transaction, one fsync)",
    ["store"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)

#: One figure a service reports: (name, help, value).
Figure = tuple[str, str, float]


def observe_rpc(service: str, method: str, code: str, seconds: float) -> None:
    """Count one RPC; ``method`` is the full gRPC path (``/pkg.Service/Method``)."""
    short = method.rsplit(".", 1)[-1]  # "UserShard/SubmitQuiz"
    RPC_REQUESTS.labels(service, short, code).inc()
    RPC_SECONDS.labels(service, short).observe(seconds)


class _Figures(Collector):
    def __init__(self, read: Callable[[], Iterator[Figure]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, help_, value in self._read():
            yield GaugeMetricFamily(f"canistry_{name}", help_, value=value)


def register_figures(read: Callable[[], Iterator[Figure]]) -> Callable[[], None]:
    """Report ``read()``'s figures as gauges at every scrape; returns the undo.

    ``read`` runs on the metrics server's thread: it must only read (an LMDB
    read transaction, or plain attributes).
    """
    collector = _Figures(read)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)


#: Where a metrics server with no port of its own binds: below Linux's ephemeral range
#: (32768-60999), from which the cluster picks the ports its services are handed
#: before they start. A port taken from there could be one a shard is about to bind.
_METRICS_PORTS = range(20_000, 30_000)


def _bind_outside_ephemeral(host: str) -> tuple[WSGIServer, threading.Thread]:
    """``start_http_server`` on a free port of :data:`_METRICS_PORTS` (tried at random)."""
    ports = random.sample(_METRICS_PORTS, 64)
    for port in ports:
        try:
            return start_http_server(port, host)
        except OSError:  # taken: try another
            continue
    raise OSError(f"no free metrics port in {ports[0]}..; pass --metrics-port")


class MetricsServer(Lifecycle):
    """``/metrics`` over HTTP on ``host:port``; ``address`` is valid after ``start()``."""

    def __init__(
        self, host: str, port: int, *, data_dir: Path | None = None, name: str = ADDRESS_FILE
    ) -> None:
        self.host = host
        self.port = port
        self.data_dir = data_dir
        self.file_name = name
        """The file in ``data_dir`` that names the address (one per replica)."""
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        if self._httpd is None:
            raise RuntimeError("metrics server not started")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{host}:{self._httpd.server_port}"

    async def start(self) -> None:
        if self.port:
            self._httpd, self._thread = start_http_server(self.port, self.host)
        else:
            self._httpd, self._thread = _bind_outside_ephemeral(self.host)
        if self.data_dir is not None:
            write_atomically(self.data_dir / self.file_name, self.address + "\n")

    async def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self.data_dir is not None:
            (self.data_dir / self.file_name).unlink(missing_ok=True)
