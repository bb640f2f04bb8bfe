"""The most shards a hub creates is fixed at init; past it, registrations get no capacity."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import DEFAULT_MAX_SHARDS, HubSettings
from hub.service import HubService
from registry.service import RegistryService
from runtime.errors import NoCapacity
from tests.hub._support import hub_settings, shards_up
from tests.hub.fake_spawner import FakeSpawner
from tests.polling import eventually


async def test_the_hub_spawns_no_shard_past_max_shards_and_says_so_once(
    tmp_path: Path, registry: RegistryService, spawner: FakeSpawner
) -> None:
    settings = hub_settings(tmp_path, registry.address, max_shards=2)  # soft 2, hard 3
    async with HubService(settings, spawner=spawner) as hub:
        assert hub.rounds is not None
        await shards_up(hub, registry, 1)
        await eventually(hub.rounds.idle, what="the capacity loop's follow-up round")
        for p in ("a", "b"):
            await registry.registry.assign(p)
        reply = await hub.rounds.ensure()
        assert (reply.action, reply.shard_id) == ("spawned", "shard-0002")
        for p in ("c", "d", "e"):  # shard-0002 to its hard limit
            assert (await registry.registry.assign(p)).shard_id == "shard-0002"
        for _ in range(3):
            assert (await hub.rounds.ensure()).action == "at_limit"
        assert hub.rounds.limit_warnings == 1, "logged once, not every round"
        assert (await registry.registry.assign("f")).shard_id == "shard-0001"  # its last place
        with pytest.raises(NoCapacity):
            await registry.registry.assign("g")
        assert spawner.starts == ["shard-0001", "shard-0002"]

    # Fixed at init: a later start asking for more keeps 2.
    more = hub_settings(tmp_path, registry.address, max_shards=10)
    async with HubService(more, spawner=spawner) as hub:
        assert hub.policy.max_shards == 2 and hub.config_differences == ["max_shards"]
        assert hub.rounds is not None
        assert (await hub.rounds.ensure()).action == "at_limit"
    assert spawner.starts == ["shard-0001", "shard-0002"]


def test_max_shards_defaults_to_64_and_cannot_be_below_min_shards(tmp_path: Path) -> None:
    base = dict(
        data_dir=tmp_path, shards_dir=tmp_path, registry_address="r:1", content_address="c:1"
    )
    assert HubSettings(**base).max_shards == DEFAULT_MAX_SHARDS == 64  # type: ignore[arg-type]
    assert HubSettings(**base).init_config().max_shards == 64  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_shards"):
        HubSettings(**base, min_shards=3, max_shards=2)  # type: ignore[arg-type]
