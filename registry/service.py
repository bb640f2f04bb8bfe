"""The registry service's lifecycle: store, hub poker, shard watcher and gRPC server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc

from protos import registry_pb2, registry_pb2_grpc
from registry.config import RegistryConfig
from registry.core import Registry, wall_clock_ms
from registry.grpc_edge import ACCESS, RegistryServicer
from registry.poker import HubPoker
from registry.store import RegistryStore
from registry.watcher import ShardWatcher
from runtime import rpc
from runtime.lifecycle import Lifecycle
from runtime.metrics import Figure

__all__ = ["RegistryService"]

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name


class RegistryService(Lifecycle):
    """``async with RegistryService(cfg) as svc:`` serves at ``svc.address``.

    ``stop()`` is idempotent: it drains the server, then stops the watcher,
    the poker, the writer and the store, in that order. ``clock`` returns
    wall time in ms; tests pass a fake one.
    """

    def __init__(self, config: RegistryConfig, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        self.store = RegistryStore(config.data_dir, durable=config.durable)
        self.poker = HubPoker(config.hub_address, tls=config.server.tls)
        self.registry = Registry(config, self.store, self.poker, clock=clock)
        self.watcher = ShardWatcher(config, self.store, self.poker, clock=clock)
        servicer = RegistryServicer(self.registry)

        def add(server: grpc.aio.Server) -> None:
            registry_pb2_grpc.add_RegistryServicer_to_server(servicer, server)

        binding = rpc.ServiceBinding(SERVICE_NAME, add, access=ACCESS)
        self._server = rpc.Server("registry", config.server, [binding])
        self._started = False
        self._stopped = False

    @property
    def address(self) -> str:
        return self._server.address

    def figures(self) -> Iterator[Figure]:
        """What ``/metrics`` reports besides RPCs (read at each scrape)."""
        shards = self.store.shards()
        yield "registry_shards", "Shards in the directory", len(shards)
        yield (
            "registry_open_shards",
            "Shards taking new users",
            sum(s.state == registry_pb2.SHARD_STATE_ACTIVE for s in shards),
        )
        yield "registry_users", "Principals assigned a shard", sum(s.users for s in shards)
        yield (
            "registry_pending",
            "Assignments not yet confirmed by their shard",
            sum(s.pending for s in shards),
        )

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self.store.start()
        try:
            await self.poker.start()
            await self.watcher.start()
            await self._server.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._server.stop()
        await self.watcher.stop()
        await self.poker.stop()
        await self.store.stop()
