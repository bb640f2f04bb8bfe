"""The micro-bank against a fake hub: allowance, pending, retries, restarts."""

import asyncio
from pathlib import Path

from protos import shard_pb2
from tests.polling import eventually
from tests.user_shard.conftest import Client, assert_books_balance, shard_config
from tests.user_shard.fakes import REWARD, RIGHT, FakeContent, FakeHub
from user_shard import ShardService


async def test_a_new_shard_asks_the_hub_at_once(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        await eventually(lambda: svc.store.ledger().granted_total == 1_000_000)
        assert [(c.shard_id, c.seq, c.amount) for c in hub.calls] == [("s1", 1, 1_000_000)]
        status = await Client(svc.address).status()
        assert (status.allowance_remaining, status.next_seq, status.hub_calls) == (1_000_000, 2, 1)


async def test_hub_down_rewards_from_allowance_then_pending_then_settles(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    cfg = shard_config(tmp_path, hub, content.server.address, base_allowance=250)
    async with ShardService(cfg) as svc:
        client = Client(svc.address)
        await eventually(lambda: svc.store.ledger().granted_total == 250)
        for name in ("a", "b", "c"):
            await client.create(name)
        await hub.stop()
        # the allowance still pays: 250 -> 150 -> 50
        assert (await client.submit("a", "u1", RIGHT)).balance == REWARD
        assert (await client.submit("a", "u2", RIGHT)).balance == 2 * REWARD
        # spent: rewards wait as pending, in order, and the submissions still succeed
        b = await client.submit("b", "u1", RIGHT)
        assert (b.reward, b.balance, b.pending) == (REWARD, 0, REWARD)
        c = await client.submit("c", "u1", RIGHT)
        assert (c.balance, c.pending) == (0, REWARD)
        a = await client.submit("a", "u3", RIGHT)  # would fit in 50? no; and it queues behind b, c
        assert (a.balance, a.pending) == (2 * REWARD, REWARD)
        status = await client.status()
        assert (status.allowance_remaining, status.pending_total) == (50, 3 * REWARD)
        assert_books_balance(svc)
        # the refiller keeps retrying the same request while the hub is down
        await eventually(lambda: svc.refiller.unrecorded_calls >= 2)
        calls_while_down = len(hub.calls)
        await hub.start()
        await eventually(lambda: svc.store.ledger().pending_total == 0)
        for name, staked in (("a", 3 * REWARD), ("b", REWARD), ("c", REWARD)):
            user = await client.user(name)
            assert (user.staked, user.pending) == (staked, 0)
        seqs = {c.seq for c in hub.calls[calls_while_down:]}
        assert seqs == {2}, "the retried request kept its sequence number"
        # the request recorded when a's credits crossed low water carried them (batched
        # stats), and every retry resent it unchanged
        assert {(c.amount, c.staked_delta) for c in hub.calls[1:]} == {(hub.calls[-1].amount, 200)}
        ledger = svc.store.ledger()
        assert ledger.granted_total == hub.total_granted
        assert ledger.hub_calls >= 3
        await client.close()
        assert_books_balance(svc)


async def test_a_lost_grant_reply_is_retried_and_applied_once(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    hub.drop_replies = 2
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        await eventually(lambda: svc.store.ledger().granted_total > 0)
        assert [c.seq for c in hub.calls] == [1, 1, 1]
        ledger = svc.store.ledger()
        assert ledger.granted_total == hub.total_granted == 1_000_000
        assert ledger.hub_calls == 3
        assert_books_balance(svc)


async def test_an_inflight_request_is_resumed_after_a_restart(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    await hub.stop()
    cfg = shard_config(tmp_path, hub, content.server.address)
    async with ShardService(cfg) as svc:
        await eventually(lambda: svc.refiller.unrecorded_calls >= 1)
        assert svc.store.ledger().inflight_amount == 1_000_000
    await hub.start()
    async with ShardService(cfg) as svc:
        await eventually(lambda: svc.store.ledger().granted_total > 0)
        ledger = svc.store.ledger()
        assert (ledger.last_applied_seq, ledger.next_seq) == (1, 2)
        assert [c.seq for c in hub.calls] == [1]
        assert hub.total_granted == ledger.granted_total == 1_000_000


async def test_acknowledged_credits_survive_a_restart(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    cfg = shard_config(tmp_path, hub, content.server.address, base_allowance=450)
    acknowledged: dict[str, shard_pb2.SubmitQuizReply] = {}
    async with ShardService(cfg) as svc:
        client = Client(svc.address)
        await eventually(lambda: svc.store.ledger().granted_total == 450)
        await hub.stop()  # so some rewards end up pending
        names = [f"user-{i}" for i in range(8)]
        await asyncio.gather(*(client.create(n) for n in names))
        replies = await asyncio.gather(*(client.submit(n, "u1", RIGHT, key="k") for n in names))
        acknowledged = dict(zip(names, replies, strict=True))
        await client.close()
    assert sum(r.balance for r in acknowledged.values()) == 400
    assert sum(r.pending for r in acknowledged.values()) == 400
    async with ShardService(cfg) as svc:
        client = Client(svc.address)
        for name, reply in acknowledged.items():
            user = await client.user(name)
            assert (user.staked, user.pending, list(user.completed_units)) == (
                reply.balance,
                reply.pending,
                ["u1"],
            )
            # a replay after the restart returns the same reply
            assert await client.submit(name, "u1", RIGHT, key="k") == reply
        assert_books_balance(svc)
        await hub.start()
        await eventually(lambda: svc.store.ledger().pending_total == 0)
        for name in acknowledged:
            assert (await client.user(name)).staked == REWARD
        await client.close()
        assert_books_balance(svc)


async def test_a_spent_treasury_leaves_rewards_pending_never_overspent(
    tmp_path: Path, content: FakeContent
) -> None:
    hub = FakeHub(cap=150)
    await hub.start()
    try:
        async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
            client = Client(svc.address)
            await eventually(lambda: svc.store.ledger().granted_total == 150)
            await client.create("a")
            await client.submit("a", "u1", RIGHT)
            reply = await client.submit("a", "u2", RIGHT)
            assert (reply.balance, reply.pending) == (REWARD, REWARD)
            await eventually(lambda: len(hub.calls) >= 2)  # asked, granted 0
            ledger = svc.store.ledger()
            assert (ledger.granted_total, ledger.allowance_remaining, ledger.pending_total) == (
                150,
                50,
                REWARD,
            )
            await client.close()
            assert_books_balance(svc)
    finally:
        await hub.stop()


async def test_credits_are_reported_once_quiet_with_no_refill_and_exactly_once(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    """A quiet shard reports its credits in an allowance request for 0 tokens.

    Without it the hub's total staked waited for the next refill. The report
    is a request like any other: its own seq, its grant (0) applied once.
    """
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        await eventually(lambda: svc.store.ledger().granted_total == 1_000_000)
        for name in ("a", "b"):
            await client.create(name)
            await client.submit(name, "u1", RIGHT)
        assert hub.staked.get("s1", 0) == 0, "nothing reported yet: no refill was due"
        await eventually(lambda: hub.staked.get("s1", 0) == 2 * REWARD, timeout_s=15)
        report = hub.calls[-1]
        assert (report.seq, report.amount, report.staked_delta) == (2, 0, 2 * REWARD)
        await eventually(lambda: svc.store.ledger().last_applied_seq == 2)
        ledger = svc.store.ledger()
        assert (ledger.granted_total, ledger.unreported_staked) == (1_000_000, 0)
        assert [c.amount for c in hub.calls] == [1_000_000, 0], "one refill, one report"
        await client.close()
        assert_books_balance(svc)
