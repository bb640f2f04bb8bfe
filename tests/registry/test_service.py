import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from protos import hub_pb2, hub_pb2_grpc, registry_pb2, registry_pb2_grpc
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime import rpc
from runtime.errors import InvalidArgument, NoCapacity, UnknownUser
from runtime.net import free_port
from tests.polling import eventually

FULL = registry_pb2.SHARD_STATE_FULL
ACTIVE = registry_pb2.SHARD_STATE_ACTIVE


class FakeHub(hub_pb2_grpc.HubServicer):
    def __init__(self) -> None:
        self.ensure_calls = 0

    async def EnsureCapacity(self, request, context):  # type: ignore[no-untyped-def]
        self.ensure_calls += 1
        return hub_pb2.EnsureCapacityReply(action="enough")


@pytest.fixture
async def fake_hub() -> AsyncIterator[tuple[FakeHub, str]]:
    hub = FakeHub()
    binding = rpc.ServiceBinding(
        "canistry.hub.v1.Hub", lambda s: hub_pb2_grpc.add_HubServicer_to_server(hub, s)
    )
    async with rpc.Server("fake-hub", rpc.ServerConfig(), [binding]) as server:
        yield hub, server.address


def config(tmp_path: Path, **kw: object) -> RegistryConfig:
    return RegistryConfig(data_dir=tmp_path / "registry", durable=False, **kw)  # type: ignore[arg-type]


async def test_assign_is_idempotent_and_fills_newest_shard_first(tmp_path: Path) -> None:
    async with RegistryService(config(tmp_path, soft_limit=5, hard_limit=10)) as svc:
        async with rpc.make_channel(svc.address) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            await stub.RegisterShard(
                registry_pb2.RegisterShardRequest(shard_id="s1", address="127.0.0.1:1001")
            )
            first = await stub.Assign(registry_pb2.AssignRequest(principal="alice"))
            assert (first.shard_id, first.address, first.newly_assigned) == (
                "s1",
                "127.0.0.1:1001",
                True,
            )
            await stub.RegisterShard(
                registry_pb2.RegisterShardRequest(shard_id="s2", address="127.0.0.1:1002")
            )
            again = await stub.Assign(registry_pb2.AssignRequest(principal="alice"))
            assert (again.shard_id, again.newly_assigned) == ("s1", False)
            bob = await stub.Assign(registry_pb2.AssignRequest(principal="bob"))
            assert bob.shard_id == "s2"
            looked = await stub.Lookup(registry_pb2.LookupRequest(principal="alice"))
            assert looked.shard_id == "s1"
            # Re-registering keeps count and state, updates the address.
            info = await stub.RegisterShard(
                registry_pb2.RegisterShardRequest(shard_id="s1", address="127.0.0.1:2001")
            )
            assert (info.users, info.state, info.address) == (1, ACTIVE, "127.0.0.1:2001")
            assert (
                await stub.Lookup(registry_pb2.LookupRequest(principal="alice"))
            ).address == "127.0.0.1:2001"
            directory = await stub.ListShards(registry_pb2.ListShardsRequest())
            assert [(s.shard_id, s.users) for s in directory.shards] == [("s1", 1), ("s2", 1)]
            assert (directory.soft_limit, directory.hard_limit) == (5, 10)
            assert all(s.hard_limit == 10 for s in directory.shards)
            with pytest.raises(UnknownUser):
                async with rpc.rpc_errors("registry"):
                    await stub.Lookup(registry_pb2.LookupRequest(principal="carol"))
            with pytest.raises(InvalidArgument):
                async with rpc.rpc_errors("registry"):
                    await stub.Assign(registry_pb2.AssignRequest(principal=""))
            with pytest.raises(InvalidArgument):
                async with rpc.rpc_errors("registry"):
                    await stub.RegisterShard(
                        registry_pb2.RegisterShardRequest(shard_id="s3", address="nope")
                    )
    # The map survives a restart.
    async with RegistryService(config(tmp_path, soft_limit=5, hard_limit=10)) as svc:
        async with rpc.make_channel(svc.address) as ch:
            looked = await registry_pb2_grpc.RegistryStub(ch).Lookup(
                registry_pb2.LookupRequest(principal="bob")
            )
            assert looked.shard_id == "s2"


async def test_concurrent_assigns_never_pass_the_hard_limit(
    tmp_path: Path, fake_hub: tuple[FakeHub, str]
) -> None:
    hub, hub_address = fake_hub
    cfg = config(tmp_path, soft_limit=3, hard_limit=5, hub_address=hub_address)
    async with RegistryService(cfg) as svc:
        async with rpc.make_channel(svc.address) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            for sid in ("s1", "s2"):
                await stub.RegisterShard(
                    registry_pb2.RegisterShardRequest(shard_id=sid, address="127.0.0.1:9")
                )

            async def assign(i: int) -> registry_pb2.Assignment | Exception:
                try:
                    async with rpc.rpc_errors("registry"):
                        return await stub.Assign(registry_pb2.AssignRequest(principal=f"p{i}"))
                except NoCapacity as exc:
                    return exc

            results = await asyncio.gather(*(assign(i) for i in range(30)))
            ok = [r for r in results if isinstance(r, registry_pb2.Assignment)]
            refused = [r for r in results if isinstance(r, NoCapacity)]
            assert len(ok) == 10 and len(refused) == 20
            directory = await stub.ListShards(registry_pb2.ListShardsRequest())
            assert [(s.shard_id, s.users, s.state) for s in directory.shards] == [
                ("s1", 5, FULL),
                ("s2", 5, FULL),
            ]
            # A retry of an assigned principal still gets its shard.
            again = await stub.Assign(registry_pb2.AssignRequest(principal=ok[0].principal))
            assert again.shard_id == ok[0].shard_id and not again.newly_assigned
        await eventually(lambda: hub.ensure_calls >= 1)


async def test_no_capacity_is_resource_exhausted_and_pokes_the_hub(
    tmp_path: Path, fake_hub: tuple[FakeHub, str]
) -> None:
    hub, hub_address = fake_hub
    async with RegistryService(config(tmp_path, hub_address=hub_address)) as svc:
        async with rpc.make_channel(svc.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await registry_pb2_grpc.RegistryStub(ch).Assign(
                    registry_pb2.AssignRequest(principal="a")
                )
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await eventually(lambda: hub.ensure_calls == 1)


async def test_soft_limit_pokes_the_hub_once(tmp_path: Path, fake_hub: tuple[FakeHub, str]) -> None:
    hub, hub_address = fake_hub
    cfg = config(tmp_path, soft_limit=2, hard_limit=100, hub_address=hub_address)
    async with RegistryService(cfg) as svc:
        async with rpc.make_channel(svc.address) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            await stub.RegisterShard(
                registry_pb2.RegisterShardRequest(shard_id="s1", address="127.0.0.1:9")
            )
            await stub.Assign(registry_pb2.AssignRequest(principal="a"))
            assert svc.poker.pokes == 0
            await stub.Assign(registry_pb2.AssignRequest(principal="b"))
            await eventually(lambda: hub.ensure_calls == 1)
            await stub.Assign(registry_pb2.AssignRequest(principal="c"))
            assert svc.poker.pokes == 1


async def test_a_down_hub_does_not_hold_up_assign(tmp_path: Path) -> None:
    cfg = config(tmp_path, hub_address=f"127.0.0.1:{free_port()}")
    async with RegistryService(cfg) as svc:
        async with rpc.make_channel(svc.address) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            for _ in range(3):
                with pytest.raises(NoCapacity):
                    async with rpc.rpc_errors("registry"):
                        await stub.Assign(registry_pb2.AssignRequest(principal="a"), timeout=2)
        await eventually(lambda: svc.poker.calls >= 1)
    await svc.stop()  # idempotent
