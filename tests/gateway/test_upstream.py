"""Routing against real gRPC servers with scripted answers: cache hits, refresh and retry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.errors import NotRegistered
from gateway.upstream import Route, Upstream
from protos import (
    content_pb2,
    content_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    shard_pb2,
    shard_pb2_grpc,
)
from runtime import logs
from runtime.errors import PeerUnreachable, Unavailable, UnknownUser
from runtime.net import free_port
from runtime.rpc import (
    DEFAULT_DEADLINE_S,
    SHARD_HEADER,
    Context,
    Server,
    ServerConfig,
    ServiceBinding,
)
from tests.tcpproxy import Proxy
from user_shard.config import ShardConfig
from user_shard.service import ShardService

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
        self.seen: list[tuple[dict[str, str], float | None]] = []
        """Each call's metadata and the time it had left."""

    async def GetUser(
        self, request: shard_pb2.GetUserRequest, context: Context
    ) -> shard_pb2.UserReply:
        self.seen.append((dict(context.invocation_metadata() or ()), context.time_remaining()))
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


class StallOnce(content_pb2_grpc.ContentServicer):
    """GetUnit hangs on its first call (until the connection goes), then answers."""

    def __init__(self) -> None:
        self.calls = 0
        self.stalled = asyncio.Event()

    async def GetUnit(
        self, request: content_pb2.GetUnitRequest, context: Context
    ) -> content_pb2.Unit:
        self.calls += 1
        if self.calls == 1:
            self.stalled.set()
            await asyncio.Event().wait()  # until the call is cancelled
        return content_pb2.Unit(id=request.unit_id)


async def test_an_idempotent_read_is_retried_once_when_the_connection_drops(
    tmp_path: Path,
) -> None:
    content = StallOnce()
    binding = ServiceBinding(
        "canistry.content.v1.Content",
        lambda s: content_pb2_grpc.add_ContentServicer_to_server(content, s),
    )
    async with Server("content", ServerConfig(grace_s=0), [binding]) as server:
        async with Proxy(server.address) as proxy:
            cfg = GatewayConfig(
                registry_address="127.0.0.1:1",
                content_address=proxy.address,
                hub_address="127.0.0.1:1",
                data_dir=tmp_path,
                rpc_deadline_s=5.0,
            )
            upstream = Upstream(cfg)
            try:
                call = asyncio.ensure_future(upstream.get_unit("u1"))
                await asyncio.wait_for(content.stalled.wait(), 5)
                proxy.drop()  # the connection resets under the call in flight
                unit = await asyncio.wait_for(call, 5)
                assert unit.id == "u1"
                assert content.calls == 2 and proxy.connections == 2
            finally:
                await upstream.close()


async def test_a_read_from_a_peer_that_stays_down_fails_fast_within_its_deadline(
    tmp_path: Path,
) -> None:
    cfg = GatewayConfig(
        registry_address=f"127.0.0.1:{free_port()}",
        content_address=f"127.0.0.1:{free_port()}",
        hub_address=f"127.0.0.1:{free_port()}",
        data_dir=tmp_path,
        rpc_deadline_s=3.0,
    )
    upstream = Upstream(cfg)
    loop = asyncio.get_running_loop()
    try:
        for read in (upstream.get_unit("u1"), upstream.list_shards(), upstream.treasury()):
            started = loop.time()
            with pytest.raises(PeerUnreachable):
                await read
            assert loop.time() - started < 3.0
    finally:
        await upstream.close()


def _shard(tmp_path: Path, shard_id: str) -> ShardService:
    return ShardService(
        ShardConfig(
            shard_id=shard_id,
            data_dir=tmp_path / shard_id,
            hub_address="127.0.0.1:1",
            content_address="127.0.0.1:1",
            server=ServerConfig(grace_s=0),
            durable=False,
        )
    )


async def test_a_stale_route_never_acts_on_the_wrong_shard(tmp_path: Path) -> None:
    """A route to shard a that leads to shard b's address is refused by b and refreshed."""
    registry = FakeRegistry()
    profile = shard_pb2.Profile(
        name="Ada", email="ada@example.org", education="university", gender="f"
    )
    async with (
        _server("registry", registry) as reg_server,
        _shard(tmp_path, "a") as shard_a,
        _shard(tmp_path, "b") as shard_b,
    ):
        cfg = GatewayConfig(
            registry_address=reg_server.address,
            content_address="127.0.0.1:1",
            hub_address="127.0.0.1:1",
            data_dir=tmp_path / "gw",
            rpc_deadline_s=3.0,
        )
        upstream = Upstream(cfg)
        try:
            registry.routes["ada"] = Route("a", shard_a.address)
            # The cache still holds a's id at an address that b now listens on.
            upstream.routes.put("ada", Route("a", shard_b.address))
            reply, route = await upstream.on_shard(
                "ada",
                lambda stub: stub.CreateUser(
                    shard_pb2.CreateUserRequest(principal="ada", profile=profile), timeout=3
                ),
            )
            assert reply.created and route == Route("a", shard_a.address)
            assert shard_b.store.user(b"ada") is None
            assert shard_a.store.user(b"ada") is not None
            assert shard_b.server.rpc_counts["/canistry.shard.v1.UserShard/CreateUser"] == 1
            assert reg_server.rpc_counts[LOOKUP] == 1
        finally:
            await upstream.close()


async def test_shard_calls_carry_the_request_id_the_shard_and_a_deadline(world) -> None:  # type: ignore[no-untyped-def]
    """Shard channels have no interceptor (a hot path): their stubs add what it would."""
    registry, _, _, upstream = world
    shard = FakeShard({"alice"})
    server = _server("shard-c", shard)
    await server.start()
    try:
        registry.routes["alice"] = Route("c", server.address)
        token = logs.bind_request_id("trace-123")
        try:
            await upstream.on_shard("alice", _get("alice"))
            await upstream.on_shard(
                "alice", lambda stub: stub.GetUser(shard_pb2.GetUserRequest(principal="alice"))
            )
        finally:
            logs.reset_request_id(token)
        await upstream.on_shard("alice", _get("alice"))  # no request id bound: none sent
    finally:
        await server.stop()
    (given, left), (default, default_left), (bare, _) = shard.seen
    for metadata in (given, default):
        assert metadata[logs.REQUEST_ID_HEADER] == "trace-123"
        assert metadata[SHARD_HEADER] == "c"
    assert logs.REQUEST_ID_HEADER not in bare and bare[SHARD_HEADER] == "c"
    # gRPC rounds a deadline up a little on its way: compare with some slack.
    assert left is not None and 0 < left < 2.5
    assert default_left is not None and 2.5 < default_left < DEFAULT_DEADLINE_S + 1
