"""HubService over real loopback gRPC, with a real registry and the FakeSpawner."""

import asyncio
import json
from pathlib import Path

import pytest

from hub.service import HubService
from protos import hub_pb2, hub_pb2_grpc
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime import rpc
from runtime.errors import Conflict, PermissionDenied
from runtime.net import free_port
from runtime.rpc import ServerConfig
from tests.hub._support import hold_after, hub_settings, shards_up
from tests.hub.fake_spawner import FakeSpawner
from tests.polling import eventually

REGISTERED = hub_pb2.SPAWN_STEP_REGISTERED


async def shard_ids(registry: RegistryService) -> list[str]:
    return [s.shard_id for s in registry.registry.list_shards().shards]


async def ensure(address: str) -> hub_pb2.EnsureCapacityReply:
    async with rpc.make_channel(address) as ch:
        return await hub_pb2_grpc.HubStub(ch).EnsureCapacity(
            hub_pb2.EnsureCapacityRequest(), timeout=10
        )


async def assign(registry: RegistryService, *principals: str) -> list[str]:
    return [(await registry.registry.assign(p)).shard_id for p in principals]


async def test_min_shards_are_spawned_on_start(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, min_shards=2)
    async with HubService(settings, spawner=spawner) as hub:
        await shards_up(hub, registry, 2)
        records = hub.store.shards()
        assert [(r.shard_id, r.step) for r in records] == [
            ("shard-0001", REGISTERED),
            ("shard-0002", REGISTERED),
        ]
        assert spawner.starts == ["shard-0001", "shard-0002"]
        identity = json.loads((tmp_path / "shards" / "shard-0001" / "identity.json").read_text())
        assert identity["shard_id"] == "shard-0001"
        directory = registry.registry.list_shards()
        assert {s.address for s in directory.shards} == {r.address for r in records}
        async with rpc.make_channel(hub.address) as ch:
            listed = await hub_pb2_grpc.HubStub(ch).ListHubShards(hub_pb2.ListHubShardsRequest())
        assert [r.shard_id for r in listed.shards] == ["shard-0001", "shard-0002"]
        assert (await ensure(hub.address)).action == "enough"


async def test_ensure_capacity_spawns_at_the_soft_limit(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    async with HubService(hub_settings(tmp_path, registry.address), spawner=spawner) as hub:
        await shards_up(hub, registry, 1)
        # Else the capacity loop's follow-up round may spawn shard-0002 before the call.
        assert hub.rounds is not None
        await eventually(hub.rounds.idle, what="the capacity loop's follow-up round")
        assert await assign(registry, "a") == ["shard-0001"]
        assert (await ensure(hub.address)).action == "enough"
        assert await assign(registry, "b") == ["shard-0001"]  # reaches the soft limit (2)
        reply = await ensure(hub.address)
        assert (reply.action, reply.shard_id) == ("spawned", "shard-0002")
        assert await assign(registry, "c") == ["shard-0002"]  # newest shard first
        assert (await ensure(hub.address)).action == "enough"


async def test_registry_poke_at_the_soft_limit_spawns_a_shard(
    tmp_path: Path, spawner: FakeSpawner
) -> None:
    hub_port = free_port()
    rcfg = RegistryConfig(
        data_dir=tmp_path / "registry",
        soft_limit=2,
        hard_limit=3,
        hub_address=f"127.0.0.1:{hub_port}",
        durable=False,
    )
    async with RegistryService(rcfg) as registry:
        settings = hub_settings(tmp_path, registry.address, server=ServerConfig(port=hub_port))
        async with HubService(settings, spawner=spawner) as hub:
            await shards_up(hub, registry, 1)
            await assign(registry, "a", "b")
            await shards_up(hub, registry, 2)
            assert await assign(registry, "c") == ["shard-0002"]


async def test_concurrent_ensure_capacity_spawns_once(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    async with HubService(hub_settings(tmp_path, registry.address), spawner=spawner) as hub:
        await shards_up(hub, registry, 1)
        await assign(registry, "a", "b")
        await spawner.set_healthy(False)  # hold the spawn at STARTED while the calls pile up
        calls = asyncio.gather(*(ensure(hub.address) for _ in range(12)))
        await eventually(
            lambda: any(r.step == hub_pb2.SPAWN_STEP_STARTED for r in hub.store.shards())
        )
        await spawner.set_healthy(True)
        replies = await calls
        actions = sorted(r.action for r in replies)
        # The registry's own poke may have started the spawn before any of these
        # calls: what must hold is that one spawn happened, not who started it.
        assert actions.count("spawned") <= 1, actions
        assert set(actions) <= {"spawned", "spawn_in_progress", "enough"}
        assert spawner.starts == ["shard-0001", "shard-0002"]
        assert await shard_ids(registry) == ["shard-0001", "shard-0002"]


async def test_a_spawn_cut_by_a_hub_stop_is_resumed_not_repeated(
    tmp_path: Path, registry: RegistryService
) -> None:
    spawner = FakeSpawner(healthy=False)
    settings = hub_settings(tmp_path, registry.address, shard_start_timeout_s=30.0)
    try:
        first = HubService(settings, spawner=spawner)
        await first.start()
        await eventually(
            lambda: [r.step for r in first.store.shards()] == [hub_pb2.SPAWN_STEP_STARTED]
        )
        await first.stop()  # mid-spawn: the record stays at STARTED, the "process" runs on
        assert await shard_ids(registry) == []
        await spawner.set_healthy(True)
        async with HubService(settings, spawner=spawner) as second:
            await shards_up(second, registry, 1)
            [record] = second.store.shards()
            assert (record.shard_id, record.step) == ("shard-0001", REGISTERED)
            assert spawner.starts == ["shard-0001"], "adopted, not started twice"
            assert record.pid == spawner.pid_of("shard-0001")
    finally:
        await spawner.close()


async def test_a_new_hub_restarts_a_spawn_whose_process_is_gone(
    tmp_path: Path, registry: RegistryService
) -> None:
    spawner = FakeSpawner(healthy=False)
    settings = hub_settings(tmp_path, registry.address, shard_start_timeout_s=30.0)
    try:
        async with HubService(settings, spawner=spawner) as first:
            await eventually(
                lambda: [r.step for r in first.store.shards()] == [hub_pb2.SPAWN_STEP_STARTED]
            )
        await spawner.crash("shard-0001")
        await spawner.set_healthy(True)
        async with HubService(settings, spawner=spawner) as hub:
            await shards_up(hub, registry, 1)
            assert spawner.starts == ["shard-0001", "shard-0001"]
    finally:
        await spawner.close()


async def test_an_unhealthy_shard_is_abandoned_and_stopped(
    tmp_path: Path, registry: RegistryService
) -> None:
    spawner = FakeSpawner(healthy=False)
    settings = hub_settings(tmp_path, registry.address, shard_start_timeout_s=0.3)
    try:
        async with HubService(settings, spawner=spawner) as hub:
            await eventually(
                lambda: [r.step for r in hub.store.shards()] == [hub_pb2.SPAWN_STEP_ABANDONED]
            )
            assert spawner.stops == ["shard-0001"] and spawner.running() == set()
            reply = await ensure(hub.address)  # a later round tries a new shard
            assert (reply.action, reply.shard_id) == ("error", "")
            assert "shard-0002 abandoned" in reply.detail
            # Abandoned shards get no allowance.
            with pytest.raises(PermissionDenied):
                async with rpc.make_channel(hub.address) as ch, rpc.rpc_errors("hub"):
                    await hub_pb2_grpc.HubStub(ch).RequestAllowance(
                        hub_pb2.AllowanceRequest(shard_id="shard-0001", seq=1, amount=5)
                    )
    finally:
        await spawner.close()


async def test_a_crashed_shard_is_restarted_on_a_new_port_if_its_port_is_taken(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    async with HubService(hub_settings(tmp_path, registry.address), spawner=spawner) as hub:
        await shards_up(hub, registry, 1)
        [before] = hub.store.shards()
        spawner.taken_ports.add(before.port)
        await spawner.crash("shard-0001")
        after = await eventually(
            lambda: next((r for r in hub.store.shards() if r.restarts == 1), None),
            what="restart recorded",
        )
        assert after.port != before.port and after.data_dir == before.data_dir
        assert spawner.is_alive(after)
        await eventually(
            lambda: registry.registry.list_shards().shards[0].address == after.address,
            what="registry learns the new address",
        )
        await rpc.wait_healthy(after.address, timeout_s=5)


async def test_init_config_is_kept_across_restarts(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    async with HubService(hub_settings(tmp_path, registry.address, cap=1000), spawner=spawner):
        pass
    changed = hub_settings(tmp_path, registry.address, cap=5000, max_grant=7, soft_limit=1)
    async with HubService(changed, spawner=spawner) as hub:
        assert hub.config_differences == ["cap", "soft_limit", "max_grant"]
        async with rpc.make_channel(hub.address) as ch:
            config = await hub_pb2_grpc.HubStub(ch).GetHubConfig(hub_pb2.GetHubConfigRequest())
            treasury = await hub_pb2_grpc.HubStub(ch).GetTreasury(hub_pb2.GetTreasuryRequest())
        assert (config.cap, config.soft_limit, config.max_grant) == (1000, 2, 50_000_000)
        assert config.registry_address == registry.address
        assert config.spawner == "fake" and config.shard_start_timeout_s == 5.0
        assert treasury.cap == 1000


async def test_the_cap_holds_across_many_allowance_calls(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, cap=1000, max_grant=70, min_shards=2)
    async with HubService(settings, spawner=spawner) as hub:
        await shards_up(hub, registry, 2)
        async with rpc.make_channel(hub.address) as ch:
            stub = hub_pb2_grpc.HubStub(ch)

            async def ask(shard: str, seq: int) -> hub_pb2.AllowanceGrant:
                return await stub.RequestAllowance(
                    hub_pb2.AllowanceRequest(shard_id=shard, seq=seq, amount=100, staked_delta=1)
                )

            shards = ("shard-0001", "shard-0002")

            async def shard_life(shard: str) -> list[int]:
                # One request in flight per shard, as shards do, each raced by its own retry.
                granted = []
                for seq in range(1, 21):
                    a, b = await asyncio.gather(ask(shard, seq), ask(shard, seq))
                    assert a.granted == b.granted
                    granted.append(a.granted)
                return granted

            grants = [g for gs in await asyncio.gather(*map(shard_life, shards)) for g in gs]
            assert sum(grants) == 1000
            assert max(grants) == 70
            treasury = await stub.GetTreasury(hub_pb2.GetTreasuryRequest())
            assert (treasury.cap, treasury.total_granted, treasury.total_staked) == (1000, 1000, 40)
            assert treasury.allowance_calls == 80
            assert sum(s.granted for s in treasury.shards) == 1000
            assert {s.shard_id: s.last_seq for s in treasury.shards} == dict.fromkeys(shards, 20)
            with pytest.raises(Conflict):
                async with rpc.rpc_errors("hub"):
                    await ask("shard-0001", 0)
            with pytest.raises(PermissionDenied):
                async with rpc.rpc_errors("hub"):
                    await ask("shard-9999", 1)
        # The totals survive a restart.
    async with HubService(settings, spawner=spawner) as hub:
        assert hub.store.treasury(1000).total_granted == 1000


async def test_a_hub_started_before_its_registry_still_brings_up_min_shards(
    tmp_path: Path, spawner: FakeSpawner
) -> None:
    port = free_port()
    async with HubService(hub_settings(tmp_path, f"127.0.0.1:{port}"), spawner=spawner) as hub:
        assert hub.rounds is not None
        await eventually(lambda: hub.rounds.rounds >= 1, what="a first round (it fails)")
        rcfg = RegistryConfig(
            data_dir=tmp_path / "registry", server=ServerConfig(port=port), durable=False
        )
        async with RegistryService(rcfg) as registry:
            await shards_up(hub, registry, 1)


async def test_an_after_step_hook_holds_a_spawn_right_after_the_step_it_names(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address)
    for step in ("ALLOCATED", "STARTED"):
        held: list[hub_pb2.ShardRecord] = []
        hook = hold_after(step, held)
        async with HubService(settings, spawner=spawner, after_step=hook) as hub:
            want = [hub_pb2.SpawnStep.Value(f"SPAWN_STEP_{step}")]
            await eventually(lambda h=hub, w=want: [r.step for r in h.store.shards()] == w)
            assert hub.rounds is not None and hub.rounds.spawn_running()
            assert hub.rounds.rounds >= 1 and (await ensure(hub.address)).action == (
                "spawn_in_progress"
            )
            assert [r.step for r in hub.store.shards()] == want, "held there"
            assert [r.step for r in held] == want, "the hook saw the committed record"
    async with HubService(hub_settings(tmp_path, registry.address), spawner=spawner) as hub:
        await shards_up(hub, registry, 1)
        assert spawner.starts == ["shard-0001"]
