"""A shard whose store nears full takes no new users, and the hub spawns another.

Real parts in process: a real shard with a small LMDB map (real gRPC, real
LMDB), the real registry with its census, and the real hub with the fake
spawner (its new shards answer health checks only).
"""

from pathlib import Path

from hub.service import HubService
from protos import registry_pb2
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime.errors import StoreFull
from runtime.net import free_port
from runtime.rpc import ServerConfig
from tests.hub._support import hub_settings
from tests.hub.fake_spawner import FakeSpawner
from tests.polling import eventually
from tests.user_shard.conftest import Client, shard_config
from tests.user_shard.fakes import FakeContent, FakeHub
from user_shard import ShardService

FULL = registry_pb2.SHARD_STATE_FULL
SMALL_MAP = 256 * 1024


async def test_a_shard_near_full_by_bytes_gets_no_new_users_and_the_hub_spawns(
    tmp_path: Path,
) -> None:
    fake_hub, content, spawner = FakeHub(), FakeContent(), FakeSpawner()
    await fake_hub.start()
    await content.start()
    hub_port = free_port()
    rcfg = RegistryConfig(
        data_dir=tmp_path / "registry",
        soft_limit=1000,
        hard_limit=1000,
        hub_address=f"127.0.0.1:{hub_port}",
        durable=False,
        watch_interval_s=0.05,
    )
    scfg = shard_config(
        tmp_path, fake_hub, content.server.address, shard_id="small", map_size=SMALL_MAP
    )
    try:
        async with ShardService(scfg) as shard, RegistryService(rcfg) as registry:
            client = Client(shard.address)
            await registry.registry.register_shard("small", shard.address)
            settings = hub_settings(
                tmp_path,
                registry.address,
                server=ServerConfig(port=hub_port),
                hard_limit=1000,
                soft_limit=1000,
            )
            async with HubService(settings, spawner=spawner) as hub:
                # The small shard is the one registered shard, below the soft limit: enough.
                assert [s.shard_id for s in registry.registry.list_shards().shards] == ["small"]
                made = 0
                for i in range(3000):  # register users through the registry until it says FULL
                    if registry.registry.list_shards().shards[0].state == FULL:
                        break
                    principal = f"user-{i:05d}"
                    placed = await registry.registry.assign(principal)
                    assert placed.shard_id == "small"
                    try:
                        await client.create(principal, name="N" * 100)
                    except StoreFull:
                        break
                    made += 1
                    await registry.watcher.census_round()
                info = await eventually(
                    lambda: [s for s in registry.registry.list_shards().shards if s.store_full],
                    10,
                    "the small shard marked full by bytes",
                )
                small = info[0]
                assert small.state == FULL
                assert small.users < 1000 and made > 10
                assert small.store_bytes_used >= 0.9 * small.store_map_size
                # The registry poked the hub, whose capacity rule spawned another shard.
                # (The small shard was registered by the test, so the hub spawned one.)
                await eventually(
                    lambda: [r.shard_id for r in hub.store.shards()] == ["shard-0001"], 10
                )
                await eventually(lambda: len(registry.registry.list_shards().shards) == 2, 10)
                assert spawner.starts == ["shard-0001"]
                newcomer = await registry.registry.assign("newcomer")
                assert newcomer.shard_id != "small"
                await client.close()
    finally:
        await spawner.close()
        await content.stop()
        await fake_hub.stop()
