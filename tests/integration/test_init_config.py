"""The hub's config is fixed at init: `canistry up` on existing data keeps it and says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from canistry.layout import ClusterLayout
from protos import hub_pb2, hub_pb2_grpc, registry_pb2, registry_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import Role, TLSConfig
from tests.integration.upcli import start_up, stop_up

pytestmark = pytest.mark.timeout(180)


async def read_config(data_dir: Path) -> tuple[hub_pb2.HubConfig, registry_pb2.ShardDirectory]:
    layout = ClusterLayout(data_dir)
    tls = TLSConfig.from_dir(layout.tls_dir("operator"))
    hub = layout.hub_address()
    assert hub is not None
    async with make_channel(hub, tls, server_role=Role.HUB) as ch:
        config = await hub_pb2_grpc.HubStub(ch).GetHubConfig(hub_pb2.GetHubConfigRequest())
    async with make_channel(config.registry_address, tls, server_role=Role.REGISTRY) as ch:
        directory = await registry_pb2_grpc.RegistryStub(ch).ListShards(
            registry_pb2.ListShardsRequest()
        )
    return config, directory


def test_up_on_existing_data_keeps_the_stored_config_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, lines = start_up(data_dir, "--scale-interval", "1")
    try:
        assert not any("keeping the stored config" in line for line in lines)
    finally:
        stop_up(proc)

    asked = ("--scale-interval", "1", "--soft-limit", "5", "--hard-limit", "50", "--warm-pool", "1")
    proc, lines = start_up(data_dir, *asked)
    try:
        [note] = [line for line in lines if "keeping the stored config" in line]
        assert "soft_limit 90000 (asked 5)" in note
        assert "hard_limit 100000 (asked 50)" in note
        assert "warm_pool 0 (asked 1)" in note
        assert "scale_interval_s" not in note, "only what differs"
        config, directory = asyncio.run(read_config(data_dir))
        assert (config.soft_limit, config.hard_limit, config.warm_pool) == (90_000, 100_000, 0)
        # Every service runs with the stored limits, not only the hub.
        assert (directory.soft_limit, directory.hard_limit) == (90_000, 100_000)
        assert [s.shard_id for s in directory.shards] == ["shard-0001"]
    finally:
        stop_up(proc)
