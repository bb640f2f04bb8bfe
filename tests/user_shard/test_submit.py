"""SubmitQuiz and the user RPCs against a real shard, fake content and hub, real LMDB."""

import asyncio
import threading
from pathlib import Path

import grpc
import pytest

from protos import shard_pb2
from runtime.errors import (
    DailyLimitExceeded,
    IdempotencyKeyReused,
    InvalidArgument,
    Unavailable,
    UnknownUnit,
    UnknownUser,
)
from tests.polling import eventually
from tests.user_shard.conftest import Client, assert_books_balance, shard_config
from tests.user_shard.fakes import REWARD, RIGHT, WRONG, FakeContent, FakeHub
from user_shard import ShardService


@pytest.fixture
async def shard(tmp_path: Path, hub: FakeHub, content: FakeContent):
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        await eventually(lambda: svc.store.ledger().granted_total > 0)
        yield svc, client
        await client.close()
        assert_books_balance(svc)


async def test_users_are_created_once_and_profiles_validated(shard) -> None:
    _svc, client = shard
    first = await client.create("alice", name="Alice")
    again = await client.create("alice", name="Someone else")
    assert first.created and not again.created
    assert again.user.profile.name == "Alice" and again.attempts_left == 20
    assert (await client.status()).users == 1
    for bad in (
        shard_pb2.Profile(name="", email="a@b"),
        shard_pb2.Profile(name="x" * 101, email="a@b"),
        shard_pb2.Profile(name="Bob", email="no-at-sign"),
        shard_pb2.Profile(name="Bob", email="a@b", gender="g" * 51),
    ):
        with pytest.raises(InvalidArgument):
            await client.call(
                "CreateUser", shard_pb2.CreateUserRequest(principal="bob", profile=bad)
            )
    with pytest.raises(InvalidArgument):
        await client.call("CreateUser", shard_pb2.CreateUserRequest(principal=""))
    with pytest.raises(UnknownUser):
        await client.user("bob")


async def test_update_profile_applies_named_fields_only(shard) -> None:
    _svc, client = shard
    await client.create("alice")
    change = shard_pb2.Profile(name="Alice B", email="ignored@x", education="MSc")
    reply = await client.call(
        "UpdateProfile",
        shard_pb2.UpdateProfileRequest(
            principal="alice", profile=change, fields=["name", "education"]
        ),
    )
    assert (reply.user.profile.name, reply.user.profile.email) == ("Alice B", "a@b.c")
    assert reply.user.profile.education == "MSc"
    for fields in (["nickname"], []):
        with pytest.raises(InvalidArgument):
            await client.call(
                "UpdateProfile",
                shard_pb2.UpdateProfileRequest(principal="alice", profile=change, fields=fields),
            )
    with pytest.raises(InvalidArgument):
        await client.call(
            "UpdateProfile",
            shard_pb2.UpdateProfileRequest(
                principal="alice", profile=shard_pb2.Profile(email="bad"), fields=["email"]
            ),
        )
    with pytest.raises(UnknownUser):
        await client.call(
            "UpdateProfile",
            shard_pb2.UpdateProfileRequest(principal="nobody", profile=change, fields=["name"]),
        )


async def test_wrong_answer_uses_an_attempt_and_earns_nothing(shard) -> None:
    _svc, client = shard
    await client.create("alice")
    reply = await client.submit("alice", "u1", WRONG)
    assert not reply.passed and reply.score == 0 and reply.total == 2
    assert (reply.reward, reply.balance, reply.attempts_today, reply.attempts_left) == (0, 0, 1, 19)
    user = await client.user("alice")
    assert user.today.attempts == 1 and not user.completed_units and user.staked == 0


async def test_a_pass_earns_once(shard) -> None:
    _svc, client = shard
    await client.create("alice")
    first = await client.submit("alice", "u1", RIGHT)
    assert first.passed and first.first_completion
    assert (first.reward, first.balance, first.pending) == (REWARD, REWARD, 0)
    again = await client.submit("alice", "u1", RIGHT)
    assert again.passed and not again.first_completion
    assert (again.reward, again.balance, again.attempts_today) == (0, REWARD, 2)
    balance = await client.call("GetBalance", shard_pb2.GetBalanceRequest(principal="alice"))
    assert (balance.staked, balance.pending) == (REWARD, 0)
    status = await client.status()
    assert status.credited_total == REWARD and status.rewarded_submissions == 1


async def test_same_idempotency_key_replays_the_first_reply(shard) -> None:
    _svc, client = shard
    await client.create("alice")
    first = await client.submit("alice", "u1", RIGHT, key="k-1")
    replays = await asyncio.gather(
        *(client.submit("alice", "u1", RIGHT, key="k-1") for _ in range(5))
    )
    assert all(r == first for r in replays)
    user = await client.user("alice")
    assert user.today.attempts == 1 and user.staked == REWARD
    with pytest.raises(IdempotencyKeyReused):
        await client.submit("alice", "u1", WRONG, key="k-1")
    # the key is the user's own: another user may use the same key
    await client.create("bob")
    assert (await client.submit("bob", "u1", WRONG, key="k-1")).passed is False


async def test_bad_submissions_are_rejected_before_anything_happens(shard) -> None:
    svc, client = shard
    await client.create("alice")
    recorded = svc.counters.submissions
    for principal, unit, answers, key in (
        ("", "u1", RIGHT, ""),
        ("alice", "", RIGHT, ""),
        ("alice", "u1", {}, ""),
        ("alice", "u1", {f"q{i}": "a" for i in range(201)}, ""),
        ("alice", "u1", RIGHT, "k" * 201),
    ):
        with pytest.raises(InvalidArgument):
            await client.submit(principal, unit, answers, key)
    with pytest.raises(UnknownUser):
        await client.submit("nobody", "u1", RIGHT)
    with pytest.raises(UnknownUnit):
        await client.submit("alice", "nope", RIGHT)
    assert svc.counters.submissions == recorded
    assert (await client.user("alice")).today.attempts == 0


async def test_concurrent_submissions_respect_the_attempt_limit(shard, content) -> None:
    _svc, client = shard
    await client.create("alice")
    results = await asyncio.gather(
        *(client.submit("alice", f"u{i}", WRONG) for i in range(50)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, shard_pb2.SubmitQuizReply)]
    limited = [r for r in results if isinstance(r, DailyLimitExceeded)]
    assert (len(ok), len(limited)) == (20, 30)
    assert sorted(r.attempts_today for r in ok) == list(range(1, 21))
    user = await client.user("alice")
    assert user.today.attempts == 20
    # past the limit the shard fails fast, without asking the content service
    before = content.calls
    with pytest.raises(DailyLimitExceeded):
        await client.submit("alice", "u99", RIGHT)
    assert content.calls == before


async def test_concurrent_passes_respect_the_token_limit(tmp_path, hub, content) -> None:
    cfg = shard_config(tmp_path, hub, content.server.address, daily_attempt_limit=100)
    async with ShardService(cfg) as svc:
        client = Client(svc.address)
        await client.create("alice")
        results = await asyncio.gather(
            *(client.submit("alice", f"u{i}", RIGHT) for i in range(50)), return_exceptions=True
        )
        ok = [r for r in results if isinstance(r, shard_pb2.SubmitQuizReply)]
        assert len(ok) == 10, results
        assert all(isinstance(r, DailyLimitExceeded) for r in results if r not in ok)
        user = await client.user("alice")
        # the refused passes recorded nothing, not even the attempt
        assert (user.today.earned, user.today.attempts, len(user.completed_units)) == (1000, 10, 10)
        assert user.staked + user.pending == 1000
        await client.close()
        assert_books_balance(svc)


async def test_content_down_is_unavailable_and_changes_nothing(shard, content) -> None:
    svc, client = shard
    await client.create("alice")
    await client.submit("alice", "u1", WRONG)
    await content.stop()
    with pytest.raises(Unavailable):
        await client.submit("alice", "u2", RIGHT, key="k")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.stub.SubmitQuiz(
            shard_pb2.SubmitQuizRequest(principal="alice", unit_id="u2", answers=RIGHT)
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    user = await client.user("alice")
    assert (user.today.attempts, user.staked, len(user.completed_units)) == (1, 0, 0)
    assert svc.store.stored_reply(b"alice", "k") is None


async def test_a_new_utc_day_resets_the_daily_stats(tmp_path, hub, content) -> None:
    now = [1_709_337_000_000]  # 2024-03-01, 23:50 UTC
    cfg = shard_config(tmp_path, hub, content.server.address, daily_attempt_limit=2)
    async with ShardService(cfg, clock=lambda: now[0]) as svc:
        client = Client(svc.address)
        await client.create("alice")
        await client.submit("alice", "u1", WRONG)
        await client.submit("alice", "u1", RIGHT)
        with pytest.raises(DailyLimitExceeded):
            await client.submit("alice", "u2", RIGHT)
        now[0] += 15 * 60_000  # 00:05 the next day
        reply = await client.call("GetUser", shard_pb2.GetUserRequest(principal="alice"))
        assert (reply.user.today.day, reply.user.today.attempts, reply.attempts_left) == (
            "2024-03-02",
            0,
            2,
        )
        reply = await client.submit("alice", "u2", RIGHT)
        assert (reply.attempts_today, reply.balance) == (1, 2 * REWARD)
        await client.close()


async def test_group_commit_batches_concurrent_writes(shard) -> None:
    svc, client = shard
    await asyncio.gather(*(client.create(f"user-{i}") for i in range(40)))
    jobs_before, batches_before = svc.counters.commit_jobs, svc.counters.commit_batches
    # Hold the writer in a commit so the submissions queue up behind it, as they
    # do under real load; whether they overlap by chance depends on the machine.
    gate = threading.Event()
    holding = asyncio.create_task(svc.store.committer.submit(lambda txn: gate.wait(10)))
    submits = asyncio.gather(*(client.submit(f"user-{i}", "u1", RIGHT) for i in range(40)))

    async def queued() -> bool:
        return svc.store.committer.pending() >= 40

    await eventually(queued)
    gate.set()
    await holding
    await submits
    counters = svc.counters
    assert counters.commit_jobs - jobs_before >= 40
    assert counters.commit_batches - batches_before < counters.commit_jobs - jobs_before
    assert counters.submissions == 40 and counters.rewarded == 40


async def test_per_request_commit_mode_works(tmp_path, hub, content) -> None:
    cfg = shard_config(tmp_path, hub, content.server.address, group_commit=False)
    async with ShardService(cfg) as svc:
        client = Client(svc.address)
        await asyncio.gather(*(client.create(f"user-{i}") for i in range(10)))
        counters = svc.counters
        assert counters.commit_batches == counters.commit_jobs
        await client.close()
