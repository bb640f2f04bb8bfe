"""Shard starts after a hub restart: paced, newest and busiest first, a resume not a crash."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hub.backoff import Backoff
from hub.pacing import StartPacer, start_order
from hub.registry_client import RegistryClient
from hub.store import HubStore
from hub.supervisor import Supervisor
from protos import hub_pb2
from registry.service import RegistryService
from runtime.net import free_port
from tests.hub.fake_spawner import FakeSpawner
from tests.polling import eventually

REGISTERED = hub_pb2.SPAWN_STEP_REGISTERED


def record(n: int, *, step: int = REGISTERED, port: int = 0) -> hub_pb2.ShardRecord:
    return hub_pb2.ShardRecord(
        shard_id=f"shard-{n:04d}",
        step=step,  # type: ignore[arg-type]
        port=port,
        address=f"127.0.0.1:{port}",
        created_at_ms=1000 + n,
    )


def test_the_pacer_bounds_concurrent_starts_and_their_rate() -> None:
    pacer = StartPacer(max_concurrent=2, min_interval_s=0.5)
    assert pacer.may_start(0.0)
    pacer.begin(0.0)
    assert not pacer.may_start(0.4), "the rate cap"
    assert pacer.next_at(0.4) == 0.5
    pacer.begin(0.5)
    assert not pacer.may_start(5.0), "two slots, both held until their shard is healthy"
    pacer.end()
    assert pacer.may_start(5.0) and pacer.running == 1
    assert pacer.starts == [0.0, 0.5]
    with pytest.raises(ValueError):
        StartPacer(max_concurrent=0)


def test_start_order_is_the_newest_registered_then_the_busiest_then_the_newest() -> None:
    warm = record(9, step=hub_pb2.SPAWN_STEP_WARM)
    records = [record(n) for n in range(1, 7)] + [warm]
    order = [r.shard_id for r in start_order(records, {"shard-0002": 50, "shard-0004": 80})]
    assert order == [
        "shard-0006",  # the newest registered: it takes the new users
        "shard-0004",  # then by users
        "shard-0002",
        "shard-0005",  # then the newest
        "shard-0003",
        "shard-0001",
        "shard-0009",  # a warm shard has no users: last
    ]


def test_backoff_uptime_earns_the_delay_back_only_when_asked() -> None:
    plain, credited = Backoff(), Backoff(initial_s=0.25, max_s=10.0, credit_s=5.0)
    for b in (plain, credited):
        b.alive(0.0)
        for _ in range(6):
            b.restarted(0.0)
    assert plain.delay_s == 30.0 and credited.delay_s == 10.0
    plain.alive(20.0)
    credited.alive(20.0)  # up 20 s: four halvings of 10 s
    assert plain.delay_s == 30.0, "the shard default: only a minute up resets it"
    assert credited.delay_s == 0.625


async def test_a_resume_starts_shards_a_few_at_a_time_newest_and_busiest_first_uncounted(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    store = HubStore(tmp_path / "hub", durable=False)
    await store.start()
    client = RegistryClient(registry.address)
    try:
        records = [record(n, port=free_port()) for n in range(1, 9)]
        for r in records:
            await store.put_shard(r)
        # shard-0003 holds users; shard-0008 is the newest (it takes the new ones).
        await registry.registry.register_shard("shard-0003", records[2].address)
        await registry.registry.assign("a")
        await registry.registry.assign("b")
        for r in records[3:]:
            await registry.registry.register_shard(r.shard_id, r.address)

        gate = asyncio.Event()
        now_healthy: list[str] = []
        in_flight, most = 0, 0

        async def healthy(r: hub_pb2.ShardRecord) -> None:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                await gate.wait()
            finally:
                in_flight -= 1
                now_healthy.append(r.shard_id)

        clock = [0.0]
        supervisor = Supervisor(
            store,
            spawner,
            client,
            pacer=StartPacer(max_concurrent=2, min_interval_s=0.0),
            healthy=healthy,
            clock=lambda: clock[0],
        )
        await supervisor.tick()
        await eventually(lambda: len(spawner.starts) == 2, what="two starts")
        clock[0] = 10.0
        await supervisor.tick()  # both slots are held until those two answer
        assert spawner.starts == ["shard-0008", "shard-0003"]
        gate.set()
        for _ in range(50):
            await eventually(lambda: supervisor.pacer.running == 0, what="the slots free")
            clock[0] += 1.0
            await supervisor.tick()
            if len(spawner.starts) == 8 and supervisor.pacer.running == 0:
                break
        await eventually(lambda: len(now_healthy) == 8, what="all eight healthy")
        assert most <= 2
        assert spawner.starts[:3] == ["shard-0008", "shard-0003", "shard-0007"]
        assert sorted(spawner.starts) == [r.shard_id for r in records], "each once"
        assert supervisor.resumed == 8
        # A resume is not a crash: no restart counted, no backoff waited.
        assert all(r.restarts == 0 and r.restart_delay_s == 0 for r in store.shards())

        # A shard that dies later is a crash: counted, after its backoff.
        victim = store.shard("shard-0005")
        assert victim is not None
        await spawner.crash(victim.shard_id)
        await supervisor.tick()
        clock[0] += 1.0
        await supervisor.tick()
        await eventually(lambda: supervisor.pacer.running == 0, what="the restart")
        after = store.shard("shard-0005")
        assert after is not None and after.restarts == 1 and after.restart_delay_s == 0.5
        await supervisor.close()
    finally:
        await client.close()
        await store.stop()


async def test_a_paused_supervisor_starts_nothing(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    """A stopping hub pauses first: shards stopped alongside it (compose down) stay down."""
    store = HubStore(tmp_path / "hub", durable=False)
    await store.start()
    client = RegistryClient(registry.address)
    try:
        await store.put_shard(record(1, port=free_port()))
        paused = Supervisor(store, spawner, client)
        paused.pause()
        await paused.tick()
        await asyncio.sleep(0.05)  # a start would have begun by now (as below)
        assert spawner.starts == [] and paused.ticks == 0
        await Supervisor(store, spawner, client).tick()
        await eventually(lambda: spawner.starts == ["shard-0001"], what="an unpaused start")
    finally:
        await client.close()
        await store.stop()
