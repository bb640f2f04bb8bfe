"""SubmitQuizBatch on a real shard over real gRPC: each item as SubmitQuiz would handle it."""

from __future__ import annotations

import asyncio

import pytest

from protos import shard_pb2
from runtime.errors import (
    CanistryError,
    DailyLimitExceeded,
    IdempotencyKeyReused,
    InvalidArgument,
    Unavailable,
    UnknownUnit,
    UnknownUser,
    remote_error,
)
from tests.user_shard.conftest import Client, assert_books_balance, shard_config
from tests.user_shard.fakes import REWARD, RIGHT, WRONG, FakeContent, FakeHub
from user_shard import ShardService
from user_shard.core import MAX_SUBMIT_BATCH

Item = tuple[str, str, dict[str, str], str]


async def batch(
    client: Client, items: list[Item]
) -> list[shard_pb2.SubmitQuizReply | CanistryError]:
    request = shard_pb2.SubmitQuizBatchRequest(
        items=[
            shard_pb2.SubmitQuizItem(
                request=shard_pb2.SubmitQuizRequest(
                    principal=p, unit_id=u, answers=a, idempotency_key=k
                ),
                request_id=f"rid-{n}",
            )
            for n, (p, u, a, k) in enumerate(items)
        ]
    )
    reply = await client.call("SubmitQuizBatch", request)
    assert len(reply.outcomes) == len(items)
    return [
        remote_error(o.error.code, o.error.message)
        if o.WhichOneof("outcome") == "error"
        else o.reply
        for o in reply.outcomes
    ]


async def test_each_item_gets_the_reply_or_error_it_would_get_alone(
    tmp_path, hub: FakeHub, content: FakeContent
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        await asyncio.gather(*(client.create(u) for u in ("ada", "bob", "cy")))
        first = await batch(
            client,
            [
                ("ada", "u1", RIGHT, "k-ada"),
                ("bob", "nope", RIGHT, ""),  # unknown unit: that item alone fails
                ("ghost", "u1", RIGHT, ""),  # unknown user
                ("cy", "u2", RIGHT, ""),  # the same unit passed twice in one batch
                ("cy", "u2", RIGHT, ""),
                ("bob", "u1", WRONG, ""),
            ],
        )
        ada, nope, ghost, cy1, cy2, bob = first
        assert isinstance(ada, shard_pb2.SubmitQuizReply) and ada.passed
        assert ada.reward == REWARD and ada.first_completion
        assert isinstance(nope, UnknownUnit) and isinstance(ghost, UnknownUser)
        assert isinstance(bob, shard_pb2.SubmitQuizReply) and not bob.passed
        # A unit pays at most once (invariant 3), however the batch ordered the two.
        assert isinstance(cy1, shard_pb2.SubmitQuizReply)
        assert isinstance(cy2, shard_pb2.SubmitQuizReply)
        assert sorted([cy1.first_completion, cy2.first_completion]) == [False, True]
        assert cy1.reward + cy2.reward == REWARD

        # A replay in a later batch answers the first reply and changes nothing; the
        # same key with other answers is refused.
        replay, reused = await batch(
            client, [("ada", "u1", RIGHT, "k-ada"), ("ada", "u1", WRONG, "k-ada")]
        )
        assert replay == ada
        assert isinstance(reused, IdempotencyKeyReused)
        user = await client.user("ada")
        assert (user.today.attempts, user.staked + user.pending) == (1, REWARD)
        assert (await client.user("bob")).today.attempts == 1, "the unknown unit used none"
        await client.close()
        assert_books_balance(svc)


async def test_a_batch_of_one_users_submissions_keeps_the_daily_limit(
    tmp_path, hub: FakeHub, content: FakeContent
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        await client.create("ada")
        limit = svc.config.daily_attempt_limit
        outcomes = await batch(client, [("ada", f"u{i}", WRONG, "") for i in range(limit + 5)])
        ok = [o for o in outcomes if isinstance(o, shard_pb2.SubmitQuizReply)]
        assert len(ok) == limit
        assert all(isinstance(o, DailyLimitExceeded) for o in outcomes if o not in ok)
        assert sorted(r.attempts_today for r in ok) == list(range(1, limit + 1))
        assert (await client.user("ada")).today.attempts == limit
        await client.close()


async def test_a_batch_is_graded_in_one_content_call_and_its_failure_uses_no_attempt(
    tmp_path, hub: FakeHub, content: FakeContent
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        users = [f"user{i}" for i in range(12)]
        await asyncio.gather(*(client.create(u) for u in users))
        content.fail_batches = 1
        outcomes = await batch(client, [(u, "u1", RIGHT, f"k-{u}") for u in users])
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
        assert content.batches == [12], "the batch's items shared one grading call"
        for u in users:
            user = await client.user(u)
            assert (user.today.attempts, user.staked, list(user.completed_units)) == (0, 0, [])
        # Content is back: the same keys run afresh.
        outcomes = await batch(client, [(u, "u1", RIGHT, f"k-{u}") for u in users])
        assert all(isinstance(o, shard_pb2.SubmitQuizReply) and o.passed for o in outcomes)
        await client.close()
        assert_books_balance(svc)


async def test_an_oversized_batch_is_refused_whole(
    tmp_path, hub: FakeHub, content: FakeContent
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        await client.create("ada")
        with pytest.raises(InvalidArgument, match="at most"):
            await batch(client, [("ada", "u1", WRONG, "")] * (MAX_SUBMIT_BATCH + 1))
        assert (await client.user("ada")).today.attempts == 0
        assert await batch(client, []) == []
        await client.close()
