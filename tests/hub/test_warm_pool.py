"""The warm pool with the FakeSpawner: fill, promote at the soft limit, refill, supervise."""

from pathlib import Path

from hub.service import HubService
from hub.store import HubStore, stored_config
from protos import hub_pb2
from registry.service import RegistryService
from tests.hub._support import hub_settings, shards_up
from tests.hub.fake_spawner import FakeSpawner
from tests.polling import eventually

REGISTERED = hub_pb2.SPAWN_STEP_REGISTERED
WARM = hub_pb2.SPAWN_STEP_WARM


def steps(hub: HubService) -> dict[str, int]:
    return {r.shard_id: r.step for r in hub.store.shards()}


def listed(registry: RegistryService) -> list[str]:
    return [s.shard_id for s in registry.registry.list_shards().shards]


async def pool_full(hub: HubService, want: dict[str, int]) -> None:
    await eventually(lambda: steps(hub) == want, what=f"shards {want}")


async def test_the_pool_fills_promotes_at_the_soft_limit_and_refills(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, warm_pool=1)
    async with HubService(settings, spawner=spawner) as hub:
        assert hub.rounds is not None
        await pool_full(hub, {"shard-0001": REGISTERED, "shard-0002": WARM})
        assert listed(registry) == ["shard-0001"], "a warm shard is not registered"
        assert spawner.running() == {"shard-0001", "shard-0002"}
        assert (await hub.rounds.ensure()).action == "enough"

        for p in ("a", "b"):  # the soft limit (2)
            assert (await registry.registry.assign(p)).shard_id == "shard-0001"
        reply = await hub.rounds.ensure()
        assert (reply.action, reply.shard_id) == ("promoted", "shard-0002")
        assert listed(registry) == ["shard-0001", "shard-0002"]
        assert (await registry.registry.assign("c")).shard_id == "shard-0002"
        promoted = hub.store.shard("shard-0002")
        assert promoted is not None and promoted.warm
        assert 0 < promoted.decided_at_ms <= promoted.registered_at_ms
        assert spawner.starts == ["shard-0001", "shard-0002"], "promoted, not started again"

        # The background loop refills the pool.
        await pool_full(
            hub, {"shard-0001": REGISTERED, "shard-0002": REGISTERED, "shard-0003": WARM}
        )
        assert listed(registry) == ["shard-0001", "shard-0002"]


async def test_a_warm_shard_is_supervised_and_kept_across_a_hub_restart(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, warm_pool=1)
    async with HubService(settings, spawner=spawner) as hub:
        await pool_full(hub, {"shard-0001": REGISTERED, "shard-0002": WARM})
        await spawner.crash("shard-0002")
        after = await eventually(
            lambda: (r := hub.store.shard("shard-0002")) is not None and r.restarts == 1 and r,
            what="the warm shard restarted",
        )
        assert after.step == WARM and after.restart_delay_s == 0.5 and after.restarted_at_ms > 0
        assert spawner.is_alive(after)
    assert listed(registry) == ["shard-0001"]
    started = list(spawner.starts)
    async with HubService(settings, spawner=spawner) as hub:
        assert hub.supervisor is not None and hub.rounds is not None
        ticks = hub.supervisor.ticks
        await eventually(lambda: hub.supervisor.ticks >= ticks + 2 and hub.rounds.rounds >= 1)
        assert steps(hub) == {"shard-0001": REGISTERED, "shard-0002": WARM}
        assert spawner.starts == started, "the running warm shard is adopted, no new one filled"
        assert hub.policy.warm_pool == 1
    stored = stored_config(tmp_path / "hub")
    assert stored is not None and stored.warm_pool == 1


async def test_a_warm_shard_that_does_not_answer_is_abandoned_and_a_cold_one_spawned(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, warm_pool=1)
    async with HubService(settings, spawner=spawner) as hub:
        assert hub.rounds is not None
        await pool_full(hub, {"shard-0001": REGISTERED, "shard-0002": WARM})
        await eventually(hub.rounds.idle, what="the capacity loop's follow-up round")
        for p in ("a", "b"):
            await registry.registry.assign(p)
        hub.rounds.spawns.promote_timeout_s = 0.3
        await spawner.set_healthy(False)
        reply = await hub.rounds.ensure()
        assert (reply.action, reply.shard_id) == ("error", "shard-0002")
        assert steps(hub)["shard-0002"] == hub_pb2.SPAWN_STEP_ABANDONED
        assert "shard-0002" not in spawner.running()
        await spawner.set_healthy(True)
        await shards_up(hub, registry, 2)
        assert listed(registry) == ["shard-0001", "shard-0003"]
        await pool_full(
            hub,
            {
                "shard-0001": REGISTERED,
                "shard-0002": hub_pb2.SPAWN_STEP_ABANDONED,
                "shard-0003": REGISTERED,
                "shard-0004": WARM,
            },
        )


async def test_a_promotion_cut_short_by_the_hub_dying_is_finished_by_the_next_hub(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, warm_pool=1)
    async with HubService(settings, spawner=spawner) as hub:
        await pool_full(hub, {"shard-0001": REGISTERED, "shard-0002": WARM})
    # As if the hub died right after recording its decision to promote shard-0002.
    store = HubStore(tmp_path / "hub", durable=False)
    await store.start()
    await store.update_shard("shard-0002", lambda r: setattr(r, "decided_at_ms", 1))
    await store.stop()
    async with HubService(settings, spawner=spawner) as hub:
        await shards_up(hub, registry, 2)
        assert listed(registry) == ["shard-0001", "shard-0002"]
        record = hub.store.shard("shard-0002")
        assert record is not None and record.decided_at_ms == 1 and record.registered_at_ms > 1
        # Then the pool is refilled; shard-0002 ran on the whole time.
        await pool_full(
            hub, {"shard-0001": REGISTERED, "shard-0002": REGISTERED, "shard-0003": WARM}
        )
        assert spawner.starts == ["shard-0001", "shard-0002", "shard-0003"]
