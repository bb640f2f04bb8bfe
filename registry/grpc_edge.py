"""The registry's gRPC edge: protobuf in, :class:`Registry` call, protobuf out.

Domain errors pass through untouched; ``runtime.rpc``'s edge maps them.
"""

from __future__ import annotations

from protos import registry_pb2, registry_pb2_grpc
from registry.core import Registry
from runtime.authz import Rules
from runtime.rpc import Context
from runtime.tls import Role

__all__ = ["ACCESS", "RegistryServicer"]

#: Who may call what (``runtime.authz``): the gateway places users, only the
#: hub registers shards.
ACCESS: Rules = {
    "Assign": {Role.GATEWAY},
    "Lookup": {Role.GATEWAY, Role.OPERATOR},
    "RegisterShard": {Role.HUB},
    "ListShards": {Role.GATEWAY, Role.HUB, Role.OPERATOR},
    # Only the hub, carrying out an adopted disable_shard or enable_shard proposal.
    "SetShardState": {Role.HUB},
}


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    async def Assign(
        self, request: registry_pb2.AssignRequest, context: Context
    ) -> registry_pb2.Assignment:
        return await self._registry.assign(request.principal)

    async def Lookup(
        self, request: registry_pb2.LookupRequest, context: Context
    ) -> registry_pb2.Assignment:
        return self._registry.lookup(request.principal)

    async def RegisterShard(
        self, request: registry_pb2.RegisterShardRequest, context: Context
    ) -> registry_pb2.ShardInfo:
        return await self._registry.register_shard(request.shard_id, request.address)

    async def ListShards(
        self, request: registry_pb2.ListShardsRequest, context: Context
    ) -> registry_pb2.ShardDirectory:
        return self._registry.list_shards()

    async def SetShardState(
        self, request: registry_pb2.SetShardStateRequest, context: Context
    ) -> registry_pb2.ShardInfo:
        return await self._registry.set_shard_state(request.shard_id, disabled=request.disabled)
