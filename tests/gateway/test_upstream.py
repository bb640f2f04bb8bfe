"""Routing against real gRPC servers with scripted answers: cache hits, refresh and retry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.errors import NotRegistered
from gateway.upstream import Route, Upstream
from protos import registry_pb2, registry_pb2_grpc, shard_pb2, shard_pb2_grpc
from runtime.errors import Unavailable, UnknownUser
from runtime.net import free_port
from runtime.rpc import Context, Server, ServerConfig, ServiceBinding

LOOKUP = "/canistry.registry.v1.Registry/Lookup"


class FakeRegistry(registry_pb2_grpc.RegistryServicer):
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}

    async def Lookup(
        self, request: registry_pb2.LookupRequest, context: Context
    ) -> registry_pb2.Assignment:
        route = self.routes.get(request.principal)
        if route is None:
            raise UnknownUser("no shard")
        return registry_pb2.Assignment(
            principal=request.principal, shard_id=route.shard_id, address=route.address
        )


class FakeShard(shard_pb2_grpc.UserShardServicer):
    def __init__(self, users: set[str]) -> None:
        self.users = users

    async def GetUser(
        self, request: shard_pb2.GetUserRequest, context: Context
    ) -> shard_pb2.UserReply:
        if request.principal not in self.users:
            raise UnknownUser("not mine")
        return shard_pb2.UserReply(user=shard_pb2.UserRecord(principal=request.principal))


def _server(name: str, servicer: object, port: int = 0) -> Server:
    if isinstance(servicer, FakeRegistry):
        add = registry_pb2_grpc.add_RegistryServicer_to_server
        full = "canistry.registry.v1.Registry"
    else:
        add = shard_pb2_grpc.add_UserShardServicer_to_server  # type: ignore[assignment]
        full = "canistry.shard.v1.UserShard"
    binding = ServiceBinding(full, lambda s: add(servicer, s))  # type: ignore[arg-type]
    return Server(name, ServerConfig(port=port, grace_s=0), [binding])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeRegistry, Server, Server, Upstream]]:
    registry = FakeRegistry()
    reg_server = _server("registry", registry)
    shard_b = _server("shard-b", FakeShard({"moved", "alice"}))
    await reg_server.start()
    await shard_b.start()
    cfg = GatewayConfig(
        registry_address=reg_server.address,
        content_address="127.0.0.1:1",
        hub_address="127.0.0.1:1",
        data_dir=tmp_path,
        rpc_deadline_s=2.0,
    )
    upstream = Upstream(cfg)
    try:
        yield registry, reg_server, shard_b, upstream
    finally:
        await upstream.close()
        await shard_b.stop()
        await reg_server.stop()


def _get(principal: str):  # type: ignore[no-untyped-def]
    return lambda stub: stub.GetUser(shard_pb2.GetUserRequest(principal=principal), timeout=2)


async def test_a_cached_route_costs_no_registry_call(world) -> None:  # type: ignore[no-untyped-def]
    registry, reg_server, shard_b, upstream = world
    registry.routes["alice"] = Route("b", shard_b.address)
    for _ in range(5):
        reply, route = await upstream.on_shard("alice", _get("alice"))
        assert reply.user.principal == "alice" and route.shard_id == "b"
    assert reg_server.rpc_counts[LOOKUP] == 1


async def test_not_mine_refreshes_the_route_once_and_retries(world) -> None:  # type: ignore[no-untyped-def]
    registry, reg_server, shard_b, upstream = world
    shard_a = _server("shard-a", FakeShard(set()))
    await shard_a.start()
    try:
        registry.routes["moved"] = Route("a", shard_a.address)
        await upstream.lookup("moved")  # cached: a
        registry.routes["moved"] = Route("b", shard_b.address)
        reply, route = await upstream.on_shard("moved", _get("moved"))
        assert route.shard_id == "b" and reply.user.principal == "moved"
        assert reg_server.rpc_counts[LOOKUP] == 2
        assert shard_a.rpc_counts["/canistry.shard.v1.UserShard/GetUser"] == 1
    finally:
        await shard_a.stop()


async def test_an_unreachable_shard_refreshes_the_route(world) -> None:  # type: ignore[no-untyped-def]
    registry, _, shard_b, upstream = world
    registry.routes["alice"] = Route("gone", f"127.0.0.1:{free_port()}")
    await upstream.lookup("alice")
    registry.routes["alice"] = Route("b", shard_b.address)
    _, route = await upstream.on_shard("alice", _get("alice"))
    assert route.shard_id == "b"
    # A call that must not run twice is not retried on an unreachable shard.
    registry.routes["alice"] = Route("gone", f"127.0.0.1:{free_port()}")
    upstream.routes.clear()
    with pytest.raises(Unavailable):
        await upstream.on_shard("alice", _get("alice"), retry_unreachable=False)


async def test_unknown_everywhere_is_not_registered(world) -> None:  # type: ignore[no-untyped-def]
    registry, reg_server, shard_b, upstream = world
    with pytest.raises(NotRegistered):
        await upstream.on_shard("nobody", _get("nobody"))
    registry.routes["ghost"] = Route("b", shard_b.address)  # assigned, never created
    with pytest.raises(NotRegistered):
        await upstream.on_shard("ghost", _get("ghost"))
    assert reg_server.rpc_counts[LOOKUP] == 2  # a fresh route is not refreshed again
