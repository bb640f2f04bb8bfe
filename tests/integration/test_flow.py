"""Whole flow: registering past the soft limit makes the hub spawn shards that take the users."""

from __future__ import annotations

import pytest

from protos import hub_pb2, registry_pb2
from runtime.errors import NoCapacity
from tests.integration.conftest import MakeCluster
from tests.integration.direct import Direct, new_principal, poll


async def test_users_past_soft_limit_land_on_new_shards(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(soft_limit=4, hard_limit=5, min_shards=1)
    direct = Direct(cluster)
    principals = [new_principal() for _ in range(14)]
    placed: dict[str, str] = {}
    for p in principals:

        async def assign(p: str = p) -> str | None:
            try:
                return (await direct.register(p)).shard_id
            except NoCapacity:
                return None  # the registry poked the hub; a shard is on its way

        placed[p] = await poll(assign, timeout_s=30, what=f"a shard for {p}")

    directory = await direct.directory()
    users = {s.shard_id: s.users for s in directory.shards}
    assert len(users) >= 3, f"expected spawned shards, got {users}"
    assert max(users.values()) <= 5, f"a shard went over the hard limit: {users}"
    assert sum(users.values()) == len(principals)
    # Every shard the users landed on was made by the hub, and serves them.
    hub_shards = {
        s.shard_id for s in (await direct.hub.ListHubShards(hub_pb2.ListHubShardsRequest())).shards
    }
    assert set(placed.values()) <= hub_shards
    for p, shard_id in placed.items():
        reply = await direct.user(p)
        assert reply.user.principal == p
        assert (await direct.lookup(p)).shard_id == shard_id
    # Assign is idempotent: a registered principal keeps its shard.
    again = await direct.registry.Assign(registry_pb2.AssignRequest(principal=principals[0]))
    assert again.shard_id == placed[principals[0]] and not again.newly_assigned
    await direct.assert_accounts_balance()


pytestmark = pytest.mark.timeout(180)
