"""Pending assignments against a real shard (in process, real gRPC and LMDB).

The registry counts a user when it assigns a shard, before the profile
exists; its census confirms the profile or, past the timeout and on the
shard's word that there is none, releases the assignment.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protos import registry_pb2
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime.errors import NoCapacity
from tests.clocks import WallClock
from tests.user_shard.conftest import Client, shard_config
from tests.user_shard.fakes import FakeContent, FakeHub
from user_shard import ShardService

TIMEOUT_S = 600.0
FULL = registry_pb2.SHARD_STATE_FULL
ACTIVE = registry_pb2.SHARD_STATE_ACTIVE


@pytest.fixture
async def shard(tmp_path: Path) -> AsyncIterator[tuple[ShardService, Client]]:
    hub, content = FakeHub(), FakeContent()
    await hub.start()
    await content.start()
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        yield svc, client
        await client.close()
    await content.stop()
    await hub.stop()


def registry_config(tmp_path: Path, **kw: object) -> RegistryConfig:
    values: dict[str, object] = dict(
        data_dir=tmp_path / "registry",
        soft_limit=2,
        hard_limit=2,
        durable=False,
        pending_timeout_s=TIMEOUT_S,
        watch_interval_s=3600.0,  # rounds run when the test says
    )
    values.update(kw)
    return RegistryConfig(**values)  # type: ignore[arg-type]


def directory(svc: RegistryService) -> registry_pb2.ShardInfo:
    (info,) = svc.registry.list_shards().shards
    return info


async def test_a_ghost_is_released_and_a_real_user_confirmed(tmp_path: Path, shard) -> None:
    svc, client = shard
    clock = WallClock()
    async with RegistryService(registry_config(tmp_path), clock=clock) as reg:
        await reg.registry.register_shard("s1", svc.address)
        await reg.registry.assign("alice")
        await client.create("alice")
        await reg.registry.assign("ghost")  # its registration never reaches the shard
        info = directory(reg)
        assert (info.users, info.pending, info.state) == (2, 2, FULL)
        with pytest.raises(NoCapacity):
            await reg.registry.assign("carol")

        await reg.watcher.census_round()  # alice confirmed, the ghost is still young
        info = directory(reg)
        assert (info.users, info.pending) == (2, 1)
        assert reg.store.lookup("ghost") is not None

        clock.advance(TIMEOUT_S + 0.001)
        await reg.watcher.census_round()
        info = directory(reg)
        assert (info.users, info.pending, info.state) == (1, 0, ACTIVE)
        assert info.users == (await client.status()).users
        assert reg.store.lookup("ghost") is None
        assert reg.store.lookup("alice") is not None  # a confirmed user is never released
        # The capacity is free again.
        assert (await reg.registry.assign("carol")).newly_assigned

        # Even much later, a confirmed user keeps its shard.
        clock.advance(TIMEOUT_S + 0.001)
        await reg.watcher.census_round()
        assert reg.store.lookup("alice") is not None


async def test_a_principal_that_comes_back_renews_its_lease(tmp_path: Path, shard) -> None:
    svc, _client = shard
    clock = WallClock()
    async with RegistryService(registry_config(tmp_path), clock=clock) as reg:
        await reg.registry.register_shard("s1", svc.address)
        first = await reg.registry.assign("bob")
        clock.advance(TIMEOUT_S + 0.001)
        again = await reg.registry.assign("bob")  # the client retries its registration
        assert (first.newly_assigned, again.newly_assigned, again.shard_id) == (True, False, "s1")
        await reg.watcher.census_round()
        assert reg.store.lookup("bob") is not None
        assert directory(reg).users == 1


async def test_a_lease_renewed_during_the_census_is_not_released(tmp_path: Path, shard) -> None:
    svc, client = shard
    clock = WallClock()
    async with RegistryService(registry_config(tmp_path), clock=clock) as reg:
        await reg.registry.register_shard("s1", svc.address)
        await reg.registry.assign("dave")
        (judged,) = reg.store.pending_on("s1", 10)
        clock.advance(TIMEOUT_S + 0.001)
        # Between the census and the release, dave assigns again and creates.
        await reg.registry.assign("dave")
        await client.create("dave")
        result = await reg.store.settle(
            "s1", confirmed=[], expired=[("dave", judged[1].assigned_at_ms)], hard_limit=2
        )
        assert result is not None and result[1] == []
        assert reg.store.lookup("dave") is not None
        await reg.watcher.census_round()
        assert (directory(reg).users, directory(reg).pending) == (1, 0)


async def test_nothing_is_released_while_the_shard_cannot_answer(tmp_path: Path) -> None:
    clock = WallClock()
    async with RegistryService(registry_config(tmp_path), clock=clock) as reg:
        await reg.registry.register_shard("s1", "127.0.0.1:1")  # nobody listens
        await reg.registry.assign("erin")
        clock.advance(TIMEOUT_S + 0.001)
        await reg.watcher.census_round()
        assert reg.store.lookup("erin") is not None
        assert (directory(reg).users, directory(reg).pending) == (1, 1)


async def test_a_census_reaching_another_shard_at_a_stale_address_releases_nothing(
    tmp_path: Path, shard
) -> None:
    """Shard "s0" held alice; its address now belongs to shard "s1", which has no alice.

    The census names the shard it means, so s1 refuses it, and alice keeps s0.
    """
    svc, _client = shard  # this one is "s1"
    clock = WallClock()
    async with RegistryService(registry_config(tmp_path), clock=clock) as reg:
        await reg.registry.register_shard("s0", svc.address)  # stale: s1 listens there now
        await reg.registry.assign("alice")  # her profile is on s0, wherever it is now
        clock.advance(TIMEOUT_S + 0.001)
        await reg.watcher.census_round()
        info = directory(reg)
        assert (info.shard_id, info.users, info.pending) == ("s0", 1, 1), "nothing released"
        assert reg.registry.lookup("alice").shard_id == "s0"
