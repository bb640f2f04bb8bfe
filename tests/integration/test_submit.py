"""Submitting quizzes through real shard and content processes."""

from __future__ import annotations

import asyncio
import uuid

from canistry.up import Cluster
from runtime.errors import DailyLimitExceeded
from tests.integration.conftest import MakeCluster
from tests.integration.direct import SAMPLE, Direct, new_principal, right_answers, wrong_answers


async def test_wrong_answers_use_an_attempt_and_earn_nothing(shared_cluster: Cluster) -> None:
    direct, p = Direct(shared_cluster), new_principal()
    await direct.register(p)
    unit = SAMPLE[0]
    reply = await direct.submit(p, unit["id"], wrong_answers(unit))
    assert not reply.passed and reply.reward == 0 and reply.balance == 0
    assert reply.attempts_today == 1 and reply.attempts_left == 19
    user = (await direct.user(p)).user
    assert user.today.attempts == 1 and user.staked == 0 and list(user.completed_units) == []


async def test_a_pass_earns_once_and_a_repeat_earns_nothing(shared_cluster: Cluster) -> None:
    direct, p = Direct(shared_cluster), new_principal()
    await direct.register(p)
    unit = SAMPLE[1]
    first = await direct.submit(p, unit["id"], right_answers(unit))
    assert first.passed and first.first_completion and first.reward == unit["reward"]
    assert first.balance == unit["reward"]
    again = await direct.submit(p, unit["id"], right_answers(unit))
    assert again.passed and not again.first_completion and again.reward == 0
    assert again.balance == unit["reward"] and again.attempts_today == 2
    user = (await direct.user(p)).user
    assert user.staked == unit["reward"] and list(user.completed_units) == [unit["id"]]
    await direct.assert_accounts_balance()


async def test_same_idempotency_key_returns_the_same_answer(shared_cluster: Cluster) -> None:
    direct, p = Direct(shared_cluster), new_principal()
    await direct.register(p)
    unit, key = SAMPLE[2], uuid.uuid4().hex
    replies = await asyncio.gather(
        *(direct.submit(p, unit["id"], right_answers(unit), key=key) for _ in range(5))
    )
    assert all(r == replies[0] for r in replies), replies
    assert replies[0].reward == unit["reward"]
    later = await direct.submit(p, unit["id"], right_answers(unit), key=key)
    assert later == replies[0]
    user = (await direct.user(p)).user
    assert user.today.attempts == 1 and user.staked == unit["reward"]


async def _gather_limits(direct: Direct, p: str, units: list[dict], passes: bool):  # type: ignore[no-untyped-def]
    answers = right_answers if passes else wrong_answers
    results = await asyncio.gather(
        *(direct.submit(p, u["id"], answers(u), key=f"k{i}") for i, u in enumerate(units)),
        return_exceptions=True,
    )
    ok = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, DailyLimitExceeded)]
    other = [r for r in results if isinstance(r, BaseException) and r not in refused]
    assert not other, other
    return ok, refused


async def test_daily_attempt_limit_holds_under_50_concurrent_submissions(
    shared_cluster: Cluster,
) -> None:
    direct, p = Direct(shared_cluster), new_principal()
    await direct.register(p)
    units = [SAMPLE[i % len(SAMPLE)] for i in range(50)]
    ok, refused = await _gather_limits(direct, p, units, passes=False)
    assert len(ok) == 20 and len(refused) == 30
    assert sorted(r.attempts_today for r in ok) == list(range(1, 21))
    user = (await direct.user(p)).user
    assert user.today.attempts == 20


async def test_daily_token_limit_holds_under_50_concurrent_submissions(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(daily_attempt_limit=100, daily_token_limit=250)
    direct, p = Direct(cluster), new_principal()
    await direct.register(p)
    units = [SAMPLE[i % len(SAMPLE)] for i in range(50)]
    ok, refused = await _gather_limits(direct, p, units, passes=True)
    earned = sum(r.reward for r in ok)
    assert refused, "some passes must be refused by the token limit"
    assert earned <= 250
    # A refused pass records nothing: attempts are exactly the accepted ones.
    user = (await direct.user(p)).user
    assert user.today.attempts == len(ok)
    assert user.today.earned == earned == user.staked + user.pending
    assert len(user.completed_units) == len({r for r in user.completed_units})
    await direct.assert_accounts_balance()
