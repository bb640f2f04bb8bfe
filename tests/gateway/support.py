"""A gateway process in front of a real cluster, and helpers to drive it over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from canistry.children import serve_argv
from canistry.client import AsyncClient, Identity
from canistry.up import Cluster
from gateway.config import GatewayConfig
from gateway.server import protocol_factory
from protos import introspect_pb2, introspect_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import Role
from tests.polling import eventually

T = TypeVar("T")


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_file: Path

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM (drain), then SIGKILL if it does not end in time; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_gateway(
    cluster: Cluster, data_dir: Path, *, workers: int = 1, extra: Sequence[str] = ()
) -> GatewayProcess:
    """``canistry serve gateway`` against ``cluster``, on a free port; returns once it is ready.

    ``extra`` adds flags (``--register-rate 1``, ``--header-timeout 2``...)."""
    addr = {n: c.address for n, c in cluster.children.items()}
    data_dir.mkdir(parents=True, exist_ok=True)
    ready, log_file = data_dir / "ready", data_dir / "gateway.log"
    ready.unlink(missing_ok=True)
    argv = [
        *serve_argv("gateway"), "--data-dir", str(data_dir), "--port", "0",
        "--ready-file", str(ready), "--workers", str(workers),
        "--tls-dir", str(cluster.layout.tls_dir("gateway")),
        "--registry", addr["registry"], "--content", addr["content"], "--hub", addr["hub"],
        *extra,
    ]  # fmt: skip
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"gateway did not start:\n{log_file.read_text()[-3000:]}")
        time.sleep(0.05)
    return GatewayProcess(proc, "http://" + ready.read_text().strip(), log_file)


def client(url: str, identity: Identity | None = None, **kw: Any) -> AsyncClient:
    kw.setdefault("retry_unavailable_s", 60.0)
    return AsyncClient(url, identity or Identity.generate(), **kw)


async def registered(url: str, name: str = "Ada") -> AsyncClient:
    """A client whose identity is registered (retrying while no shard has room)."""
    api = client(url)
    await api.register(name, f"{name.lower()}-{uuid.uuid4().hex[:6]}@example.org")
    return api


async def rpc_counts(cluster: Cluster, service: str) -> dict[str, int]:
    role = {"registry": Role.REGISTRY, "content": Role.CONTENT, "hub": Role.HUB}[service]
    channel = make_channel(
        cluster.children[service].address, cluster.tls("operator"), server_role=role
    )
    async with channel:
        counts = await introspect_pb2_grpc.IntrospectStub(channel).GetRpcCounts(
            introspect_pb2.GetRpcCountsRequest(), timeout=5
        )
    return dict(counts.calls)


def cluster_gateway_config(cluster: Cluster, data_dir: Path, **fields: Any) -> GatewayConfig:
    """A gateway's settings in front of ``cluster``, with its certificate; ``fields`` add."""
    addr = {n: c.address for n, c in cluster.children.items()}
    return GatewayConfig(
        registry_address=addr["registry"],
        content_address=addr["content"],
        hub_address=addr["hub"],
        data_dir=data_dir,
        tls=cluster.tls("gateway"),
        **fields,
    )


@contextlib.asynccontextmanager
async def in_process(app: Any, config: GatewayConfig) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """``app`` served by uvicorn in this process with the gateway's own protocol (limits,
    direct reads), on a free loopback port; yields its URL and the server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            lifespan="on",
            timeout_keep_alive=config.keep_alive_s,
            http=protocol_factory(config),  # type: ignore[arg-type]
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, 20, "the gateway to start")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        await task
        sock.close()
