"""The registry's census of a shard: who has a profile, and how full the store is."""

from pathlib import Path

import pytest

from protos import shard_pb2
from runtime.errors import InvalidArgument
from runtime.tls import Role
from tests.user_shard.conftest import Client, shard_config
from tests.user_shard.fakes import FakeContent, FakeHub
from user_shard import ShardService
from user_shard.grpc_edge import ACCESS


def test_only_the_registry_may_take_a_census() -> None:
    assert ACCESS["Census"] == {Role.REGISTRY}


async def test_census_names_the_principals_with_a_profile(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        try:
            await client.create("alice")
            await client.create("bob")
            reply = await client.call(
                "Census", shard_pb2.CensusRequest(principals=["carol", "bob", "alice"])
            )
            assert list(reply.found) == ["bob", "alice"]
            assert reply.users == 2
            assert 0 < reply.store_bytes_used < reply.store_map_size == 1 << 32
            with pytest.raises(InvalidArgument):
                await client.call(
                    "Census", shard_pb2.CensusRequest(principals=[f"p{i}" for i in range(1001)])
                )
        finally:
            await client.close()
