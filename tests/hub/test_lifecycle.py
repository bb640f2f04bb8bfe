"""The hub's lifecycle, clock and figures, over real loopback gRPC with the fake spawner."""

import asyncio
from pathlib import Path

import pytest

from hub.service import HubService
from protos import hub_pb2, hub_pb2_grpc
from registry.service import RegistryService
from runtime import rpc
from tests.hub._support import hub_settings, shards_up
from tests.hub.fake_spawner import FakeSpawner
from tests.polling import eventually

STEP = hub_pb2.SpawnStep

#: A fixed wall time (ms) the hub is given instead of the real clock.
NOW_MS = 1_700_000_000_000


async def test_stop_drains_a_call_under_way_before_it_cancels_the_spawn_it_waits_for(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    """An EnsureCapacity call waiting on a spawn gets its answer while the hub drains.

    Cancelling the background work first (as the hub once did) would cut the
    spawn under the call, which then answered "the hub is stopping".
    """
    release = asyncio.Event()

    async def hold_started(record: hub_pb2.ShardRecord) -> None:
        if record.shard_id == "shard-0002" and record.step == STEP.SPAWN_STEP_STARTED:
            await release.wait()

    hub = HubService(
        hub_settings(tmp_path, registry.address), spawner=spawner, after_step=hold_started
    )
    await hub.start()
    try:
        await shards_up(hub, registry, 1)
        # Else the capacity loop's follow-up round may start shard-0002 itself, and the
        # call below finds it "spawn_in_progress".
        assert hub.rounds is not None
        await eventually(hub.rounds.idle, what="the capacity loop's follow-up round")
        await registry.registry.assign("a")
        await registry.registry.assign("b")  # shard-0001 reaches the soft limit (2)
        async with rpc.make_channel(hub.address) as ch:
            call = asyncio.ensure_future(
                hub_pb2_grpc.HubStub(ch).EnsureCapacity(hub_pb2.EnsureCapacityRequest(), timeout=20)
            )
            await eventually(
                lambda: [r.step for r in hub.store.shards()][1:] == [STEP.SPAWN_STEP_STARTED],
                what="the spawn held at STARTED",
            )
            stopping = asyncio.ensure_future(hub.stop())
            await asyncio.sleep(0)  # let stop() begin: the server drains first
            assert not stopping.done()
            release.set()
            reply = await call
            await stopping
    finally:
        await hub.stop()
    assert (reply.action, reply.shard_id) == ("spawned", "shard-0002")


async def test_a_start_that_fails_partway_closes_what_it_opened(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address)
    async with HubService(settings, spawner=spawner) as first:  # stores spawner "fake"
        await shards_up(first, registry, 1)
    # No spawner injected: this hub only makes process shards, and the stored config
    # names "fake". It fails after opening its store, and must close it again.
    broken = HubService(settings)
    with pytest.raises(ValueError, match="spawner 'fake'"):
        await broken.start()
    with pytest.raises(Exception, match="closed"):
        broken.store.shards()
    await broken.stop()  # idempotent after a failed start
    # LMDB refuses to open one environment twice in a process: a leaked store would fail here.
    async with HubService(settings, spawner=spawner) as again:
        await shards_up(again, registry, 1)
        assert spawner.starts == ["shard-0001"]


async def test_the_injected_clock_stamps_grants_spawns_and_restarts(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address)
    async with HubService(settings, spawner=spawner, clock=lambda: NOW_MS) as hub:
        await shards_up(hub, registry, 1)
        [record] = hub.store.shards()
        assert (record.created_at_ms, record.decided_at_ms, record.registered_at_ms) == (
            NOW_MS,
            NOW_MS,
            NOW_MS,
        )
        await spawner.crash("shard-0001")
        await eventually(
            lambda: hub.store.shards()[0].restarts == 1, what="the supervisor restarting it"
        )
        assert hub.store.shards()[0].restarted_at_ms == NOW_MS
        outcome = await hub.hub.request_allowance(  # type: ignore[union-attr]
            hub_pb2.AllowanceRequest(shard_id="shard-0001", seq=1, amount=10)
        )
        assert outcome.granted == 10
        grant = hub.store.grant("shard-0001", 1)
        assert grant is not None and grant.at_ms == NOW_MS


async def test_figures_report_the_treasury_and_the_shards_by_step(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, cap=1000, warm_pool=1)
    async with HubService(settings, spawner=spawner) as hub:
        await shards_up(hub, registry, 1)
        await eventually(
            lambda: (
                [r.step for r in hub.store.shards()]
                == [STEP.SPAWN_STEP_REGISTERED, STEP.SPAWN_STEP_WARM]
            ),
            what="one shard in service and one warm",
        )
        assert hub.hub is not None
        await hub.hub.request_allowance(
            hub_pb2.AllowanceRequest(shard_id="shard-0001", seq=1, amount=300, staked_delta=7)
        )
        await spawner.crash("shard-0001")
        await eventually(lambda: hub.store.shards()[0].restarts == 1)
        figures = {name: value for name, _help, value in hub.figures()}
    assert figures == {
        "hub_treasury_cap_tokens": 1000,
        "hub_treasury_granted_tokens": 300,
        "hub_treasury_staked_tokens": 7,
        "hub_allowance_calls": 1,
        "hub_shards_registered": 1,
        "hub_shards_warm": 1,
        "hub_shards_in_progress": 0,
        "hub_spawns_done": 2,
        "hub_spawns_abandoned": 0,
        "hub_shard_restarts": 1,
    }
