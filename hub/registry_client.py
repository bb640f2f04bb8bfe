"""The hub's calls to the registry, with deadlines and domain errors."""

from __future__ import annotations

from protos import registry_pb2, registry_pb2_grpc
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role, TLSConfig

__all__ = ["RegistryClient"]


class RegistryClient:
    """One long-lived channel to the registry. ``close()`` is idempotent.

    ``tls`` is the hub's own certificate (None: plain text, tests only).
    """

    def __init__(
        self, address: str, *, tls: TLSConfig | None = None, timeout_s: float = 5.0
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = make_channel(address, tls, server_role=Role.REGISTRY)
        self._stub = registry_pb2_grpc.RegistryStub(self._channel)
        self._closed = False

    async def list_shards(self) -> registry_pb2.ShardDirectory:
        """The shard directory. Raises ``Unavailable`` if the registry is down."""
        async with rpc_errors("registry"):
            directory: registry_pb2.ShardDirectory = await self._stub.ListShards(
                registry_pb2.ListShardsRequest(), timeout=self.timeout_s
            )
        return directory

    async def register(self, shard_id: str, address: str) -> registry_pb2.ShardInfo:
        """Register a shard or update its address (idempotent)."""
        async with rpc_errors("registry"):
            info: registry_pb2.ShardInfo = await self._stub.RegisterShard(
                registry_pb2.RegisterShardRequest(shard_id=shard_id, address=address),
                timeout=self.timeout_s,
            )
        return info

    async def set_shard_state(self, shard_id: str, *, disabled: bool) -> registry_pb2.ShardInfo:
        """Disable a shard (no new users) or enable it again (idempotent)."""
        async with rpc_errors("registry"):
            info: registry_pb2.ShardInfo = await self._stub.SetShardState(
                registry_pb2.SetShardStateRequest(shard_id=shard_id, disabled=disabled),
                timeout=self.timeout_s,
            )
        return info

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._channel.close()
