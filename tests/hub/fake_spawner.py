"""An in-memory :class:`~hub.spawner.Spawner` for fast tests.

Each "shard" is an in-process gRPC server on the record's port that answers
only health checks, so the hub's real health wait, registration and
supervision run unchanged. With ``tls`` a fake serves mutual TLS with the
certificate the hub issued it, as a real shard does. Tests can make new
shards unhealthy, crash one, and mark ports as taken.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from hub.spawner import shard_tls_dir
from protos import hub_pb2
from runtime.errors import Unavailable
from runtime.net import port_is_free
from runtime.tls import TLSConfig

__all__ = ["FakeSpawner"]


@dataclass
class _Fake:
    pid: int
    server: grpc.aio.Server
    health: health.aio.HealthServicer


class FakeSpawner:
    """Shards as in-process health-only servers; survives a hub restart if reused."""

    name = "fake"

    def __init__(self, *, healthy: bool = True, tls: bool = False) -> None:
        self.healthy = healthy
        self.tls = tls
        self.starts: list[str] = []
        """Shard id of every start, in order."""
        self.stops: list[str] = []
        self.taken_ports: set[int] = set()
        """Ports :meth:`port_available` reports as taken."""
        self._running: dict[str, _Fake] = {}
        self._pids = itertools.count(100_000)

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        if record.shard_id in self._running:
            raise RuntimeError(f"{record.shard_id} is already running")
        server = grpc.aio.server()
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        where = f"127.0.0.1:{record.port}"
        if self.tls:
            m = TLSConfig.from_dir(shard_tls_dir(record.data_dir)).read()
            creds = grpc.ssl_server_credentials(
                [(m.key, m.cert)], root_certificates=m.ca_cert, require_client_auth=True
            )
            port = server.add_secure_port(where, creds)
        else:
            port = server.add_insecure_port(where)
        if port == 0:
            raise Unavailable(f"port {record.port} is taken")
        await server.start()
        await servicer.set("", self._status(self.healthy))
        fake = _Fake(next(self._pids), server, servicer)
        self._running[record.shard_id] = fake
        self.starts.append(record.shard_id)
        return fake.pid

    def is_alive(self, record: hub_pb2.ShardRecord) -> bool:
        fake = self._running.get(record.shard_id)
        return fake is not None and fake.pid == record.pid

    def adopt(self, record: hub_pb2.ShardRecord) -> int | None:
        fake = self._running.get(record.shard_id)
        return None if fake is None else fake.pid

    async def stop(self, record: hub_pb2.ShardRecord) -> None:
        if await self._halt(record.shard_id):
            self.stops.append(record.shard_id)

    def port_available(self, port: int) -> bool:
        return port not in self.taken_ports and port_is_free(port)

    # -- test controls -------------------------------------------------------

    def running(self) -> set[str]:
        return set(self._running)

    def pid_of(self, shard_id: str) -> int | None:
        fake = self._running.get(shard_id)
        return None if fake is None else fake.pid

    async def set_healthy(self, healthy: bool) -> None:
        """Make every running and future shard report ``healthy``."""
        self.healthy = healthy
        for fake in self._running.values():
            await fake.health.set("", self._status(healthy))

    async def crash(self, shard_id: str) -> None:
        """Make a shard die as if killed."""
        await self._halt(shard_id)

    async def close(self) -> None:
        """Stop every fake shard (test teardown; the hub never calls this)."""
        for shard_id in list(self._running):
            await self._halt(shard_id)

    async def _halt(self, shard_id: str) -> bool:
        fake = self._running.pop(shard_id, None)
        if fake is None:
            return False
        await fake.server.stop(0)
        return True

    @staticmethod
    def _status(healthy: bool) -> int:
        return int(
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
