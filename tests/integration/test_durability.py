"""Durability: what a shard acknowledged survives SIGKILL."""

from __future__ import annotations

import asyncio

from canistry.up import Cluster
from runtime.errors import CanistryError
from tests.integration.direct import (
    SAMPLE,
    Direct,
    new_principal,
    poll,
    right_answers,
    shard_pid,
    sigkill,
)


async def test_acknowledged_completions_survive_sigkill(shared_cluster: Cluster) -> None:
    direct = Direct(shared_cluster)
    principals = [new_principal() for _ in range(5)]
    for p in principals:
        await direct.register(p)
    shard_id = (await direct.lookup(principals[0])).shard_id
    users = [p for p in principals if (await direct.lookup(p)).shard_id == shard_id]

    async def submit(p: str, unit: dict) -> tuple[str, str, int] | None:  # type: ignore[type-arg]
        try:
            r = await direct.submit(p, unit["id"], right_answers(unit))
        except CanistryError:
            return None  # not acknowledged: allowed to be lost
        return p, unit["id"], r.reward

    pid = shard_pid(shared_cluster, shard_id)
    tasks = [asyncio.create_task(submit(p, u)) for p in users for u in SAMPLE[:8]]
    # Kill as soon as the first acknowledgements are in, while others are in flight.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    sigkill(pid)
    acked = [r for r in await asyncio.gather(*tasks) if r is not None]
    assert acked, "some submissions were acknowledged before the kill"

    async def restarted() -> bool:  # the hub supervises its shards and restarts this one
        try:
            return shard_pid(shared_cluster, shard_id) != pid and bool(await direct.user(users[0]))
        except (CanistryError, FileNotFoundError, ValueError):
            return False

    await poll(restarted, timeout_s=30, what="the hub to restart the killed shard")
    for p in users:
        user = (await direct.user(p)).user
        mine = [(u, reward) for q, u, reward in acked if q == p]
        assert {u for u, _ in mine} <= set(user.completed_units)
        assert user.staked + user.pending >= sum(reward for _, reward in mine)
    await direct.assert_accounts_balance()
