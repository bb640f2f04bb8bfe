"""Run the gateway: one uvicorn worker, or several sharing one listening socket.

:func:`run_gateway` blocks until SIGTERM/SIGINT and drains in-flight
requests (``grace_s``); a second SIGINT exits at once. With ``workers > 1``
the parent binds the socket, starts the workers (uvicorn's supervisor
restarts one that dies; a worker exits if the supervisor dies, see
:mod:`runtime.parent_watch`), and points Prometheus at a shared directory so that
``/metrics`` on any worker shows them all. Workers share nonces and
idempotent replies through the gateway's LMDB.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.http_protocol import ProtocolFactory
from gateway.metrics import MULTIPROC_ENV
from runtime import logs
from runtime.files import write_atomically
from runtime.parent_watch import die_with_parent

__all__ = ["protocol_factory", "run_gateway", "uvicorn_config"]


@dataclass(frozen=True)
class _AppFactory:
    """Builds the app inside each worker process (picklable, unlike the app)."""

    config: GatewayConfig
    address: str
    ready_file: Path | None
    log_level: str
    configure_logs: bool
    parent_pid: int | None = None
    """The supervisor of spawned workers: a worker exits when it dies."""

    def __call__(self) -> FastAPI:
        if self.configure_logs:  # a spawned worker starts with no logging set up
            logs.configure("gateway", level=self.log_level)
        if self.parent_pid is not None:
            die_with_parent(self.parent_pid)
        return create_app(self.config, on_ready=self._ready)

    def _ready(self) -> None:
        if self.ready_file is not None:
            write_atomically(self.ready_file, self.address + "\n")


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises a caught signal after its drain, so the process would
        # die of it; a signalled stop is a clean stop here: exit code 0.
        self._captured_signals.clear()


def run_gateway(
    config: GatewayConfig, *, ready_file: Path | None = None, log_level: str = "info"
) -> int:
    """Serve until signalled; returns the exit code.

    ``ready_file`` gets ``host:port`` once a worker has started (after the
    socket is bound), like every other Canistry service's ``--ready-file``.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if config.workers > 1:
        metrics_dir = config.data_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
    uv = uvicorn_config(config, log_level=log_level)
    sock = _bind(config.host, config.port)
    host = "127.0.0.1" if config.host in ("0.0.0.0", "") else config.host
    address = f"{host}:{sock.getsockname()[1]}"
    multi = config.workers > 1
    uv.app = _AppFactory(
        config,
        address,
        ready_file,
        log_level,
        configure_logs=multi,
        parent_pid=os.getpid() if multi else None,
    )
    try:
        if config.workers > 1:
            Multiprocess(uv, sockets=[sock]).run()
        else:
            _Server(uv).run(sockets=[sock])
    finally:
        sock.close()
    return 0


def uvicorn_config(config: GatewayConfig, *, log_level: str = "info") -> uvicorn.Config:
    """uvicorn's settings for ``config`` (the app is set once the socket is bound)."""
    return uvicorn.Config(
        app="",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers,
        lifespan="on",
        loop="asyncio",
        log_config=None,
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(config.grace_s) or None,
        timeout_worker_healthcheck=int(config.worker_healthcheck_s),
        timeout_keep_alive=config.keep_alive_s,
        # Deadlines for headers and bodies, the connection cap and problem documents
        # for malformed requests (concurrency is capped by gateway.edge.Edge).
        http=cast(Any, protocol_factory(config)),
    )


def protocol_factory(config: GatewayConfig) -> ProtocolFactory:
    """The per-connection protocol of uvicorn, with ``config``'s limits."""
    return ProtocolFactory(
        max_header_bytes=config.max_header_bytes,
        header_timeout_s=config.header_timeout_s,
        body_timeout_s=config.body_timeout_s,
        max_connections=config.max_connections,
        retry_after_s=config.retry_after_s,
    )


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, made with an explicit TCP protocol.

    asyncio turns Nagle off (TCP_NODELAY) only on sockets whose ``proto`` is
    IPPROTO_TCP; uvicorn's own ``bind_socket`` leaves it 0, and every
    response then waits ~40 ms for a delayed ACK between its header and body
    writes.
    """
    family, kind, proto, _, where = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(where)
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
