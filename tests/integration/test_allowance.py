"""Allowance: no hub call per quiz, idempotent retries, the cap, and a hub that is down."""

from __future__ import annotations

import os
import signal

from tests.integration.conftest import MakeCluster
from tests.integration.direct import SAMPLE, Direct, new_principal, poll, right_answers

REQUEST_ALLOWANCE = "/canistry.hub.v1.Hub/RequestAllowance"


async def _earn(direct: Direct, users: int, units_each: int) -> int:
    """Register ``users`` users who each pass ``units_each`` distinct units; return tokens."""
    earned = 0
    for _ in range(users):
        p = new_principal()
        await direct.register(p)
        for unit in SAMPLE[:units_each]:
            earned += (await direct.submit(p, unit["id"], right_answers(unit))).reward
    return earned


async def test_rewards_need_no_hub_call_per_quiz(make_cluster: MakeCluster) -> None:
    direct = Direct(make_cluster())
    await _earn(direct, users=1, units_each=1)  # the shard has its first allowance by now
    before = (await direct.hub_rpc_counts()).get(REQUEST_ALLOWANCE, 0)
    rewarded = 0
    for _ in range(4):
        p = new_principal()
        await direct.register(p)
        for unit in SAMPLE[:10]:
            rewarded += (await direct.submit(p, unit["id"], right_answers(unit))).reward > 0
    after = (await direct.hub_rpc_counts()).get(REQUEST_ALLOWANCE, 0)
    assert rewarded == 40
    assert after == before, f"{after - before} hub calls for {rewarded} rewarded quizzes"
    await direct.assert_accounts_balance()


async def test_a_retried_allowance_request_gets_the_same_grant(make_cluster: MakeCluster) -> None:
    # Freeze the hub so the shard's request times out and is retried with the
    # same seq; when the hub wakes it sees the request more than once.
    cluster = make_cluster(base_allowance=100)
    direct = Direct(cluster)
    await _earn(direct, users=1, units_each=1)
    shard_id = next(iter(await direct.shard_statuses()))
    hub_pid = cluster.children["hub"].proc.pid  # type: ignore[union-attr]
    calls_before = (await direct.shard_statuses())[shard_id].hub_calls
    os.kill(hub_pid, signal.SIGSTOP)
    try:
        await _earn(direct, users=1, units_each=6)  # drains the allowance below low water

        async def retried() -> bool:
            return (await direct.shard_statuses())[shard_id].hub_calls >= calls_before + 2

        await poll(retried, timeout_s=30, what="the shard to retry its allowance request")
    finally:
        os.kill(hub_pid, signal.SIGCONT)
    await direct.assert_accounts_balance(timeout_s=30)
    status = (await direct.shard_statuses())[shard_id]
    treasury = await direct.treasury()
    grant = next(s for s in treasury.shards if s.shard_id == shard_id)
    # More calls than sequence numbers, yet exactly one grant per seq.
    assert status.hub_calls > grant.last_seq
    assert grant.granted == status.granted_total


async def test_grants_stop_at_the_cap(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(cap=400, base_allowance=150)
    direct = Direct(cluster)
    earned = await _earn(direct, users=2, units_each=10)
    assert earned > 400, "the test must earn more than the cap"

    async def capped() -> bool:
        t = await direct.treasury()
        return t.total_granted == t.cap

    await poll(capped, what="the treasury to reach its cap")
    await direct.assert_accounts_balance()
    statuses = await direct.shard_statuses()
    credited = sum(s.credited_total for s in statuses.values())
    pending = sum(s.pending_total for s in statuses.values())
    assert credited <= 400 and credited + pending == earned
    assert (await direct.treasury()).total_granted == 400


async def test_shards_reward_while_the_hub_is_down_then_settle_pending(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(base_allowance=200)
    direct = Direct(cluster)
    await _earn(direct, users=1, units_each=1)
    await direct.assert_accounts_balance()
    cluster.children["hub"].stop()
    p = new_principal()
    await direct.register(p)
    replies = [await direct.submit(p, u["id"], right_answers(u)) for u in SAMPLE[:10]]
    assert all(r.passed for r in replies)
    assert replies[0].balance > 0, "the first rewards come from the shard's allowance"
    assert replies[-1].pending > 0, "once the allowance is spent, rewards wait as pending"
    earned = sum(r.reward for r in replies)

    cluster.children["hub"].start()
    cluster.children["hub"].wait_ready()

    async def settled() -> bool:
        user = (await direct.user(p)).user
        return user.pending == 0 and user.staked == earned

    await poll(settled, timeout_s=30, what="pending rewards to be credited")
    await direct.assert_accounts_balance()


async def test_the_hub_total_staked_follows_credits_with_no_refill(
    make_cluster: MakeCluster,
) -> None:
    """``GetTreasury().total_staked`` (what ``/v1/cluster`` and ``canistry status`` show)
    catches up with what the shards credited, without waiting for an allowance refill."""
    cluster = make_cluster(min_shards=2)
    direct = Direct(cluster)
    earned = await _earn(direct, users=4, units_each=3)
    assert earned > 0
    granted_before = (await direct.treasury()).total_granted

    async def fresh() -> bool:
        credited = sum(s.credited_total for s in (await direct.shard_statuses()).values())
        return credited == earned and (await direct.treasury()).total_staked == credited

    await poll(fresh, timeout_s=30, what="the hub's total staked to equal the shards' credits")
    treasury = await direct.treasury()
    assert treasury.total_granted == granted_before, "no refill was needed for it"
    assert sum(s.staked for s in treasury.shards) == earned
    await direct.assert_accounts_balance()
