"""Batched verification: the batcher alone (in memory), then a real shard over real gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from protos import shard_pb2
from runtime import logs
from runtime.errors import CanistryError, Unavailable, UnknownUnit
from tests.user_shard.conftest import Client, shard_config
from tests.user_shard.fakes import RIGHT, WRONG, FakeContent, FakeHub
from user_shard import ShardService
from user_shard.batching import Item, VerifyBatcher
from user_shard.submission import Verdict


class Grader:
    """A ``send`` that holds each batch until released, and grades "bad…" units as unknown."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.request_ids: list[str] = []
        self.gate = asyncio.Event()
        self.fail: CanistryError | None = None

    async def __call__(self, items: Sequence[Item]) -> list[Verdict | CanistryError]:
        self.batches.append([i.unit_id for i in items])
        self.request_ids += [i.request_id for i in items]
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [
            UnknownUnit(f"no unit {i.unit_id}")
            if i.unit_id.startswith("bad")
            else Verdict(True, 1, 1, len(i.unit_id))
            for i in items
        ]


async def settle() -> None:
    """Let every ready task run to its next wait (no time passes)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_idle_batcher_sends_at_once_and_later_arrivals_share_the_next_call() -> None:
    grader = Grader()
    batcher = VerifyBatcher(grader, max_batch=100)
    first = asyncio.create_task(batcher.verify("u", {}))
    await settle()
    assert grader.batches == [["u"]], "nothing in flight: the first one goes alone, now"
    rest = [asyncio.create_task(batcher.verify(f"u{i}", {})) for i in range(10)]
    await settle()
    assert len(grader.batches) == 1, "while a batch is in flight, newcomers wait"
    grader.gate.set()
    assert (await first).reward == 1
    assert [v.reward for v in await asyncio.gather(*rest)] == [len(f"u{i}") for i in range(10)]
    assert grader.batches[1] == [f"u{i}" for i in range(10)]
    assert (batcher.batches, batcher.items) == (2, 11)


async def test_a_full_batch_goes_out_without_waiting() -> None:
    grader = Grader()
    batcher = VerifyBatcher(grader, max_batch=4)
    calls = [asyncio.create_task(batcher.verify(f"u{i}", {})) for i in range(9)]
    await settle()
    assert [len(b) for b in grader.batches] == [1, 4, 4]
    grader.gate.set()
    assert len(await asyncio.gather(*calls)) == 9


async def test_each_caller_gets_its_own_answer_and_a_failed_batch_fails_all() -> None:
    grader = Grader()
    batcher = VerifyBatcher(grader)
    grader.gate.set()
    results = await asyncio.gather(
        *(batcher.verify(u, {}) for u in ("ok", "bad1", "fine")), return_exceptions=True
    )
    assert isinstance(results[1], UnknownUnit)
    assert [r.reward for r in (results[0], results[2])] == [2, 4]  # type: ignore[union-attr]

    grader.fail = Unavailable("content went down")
    results = await asyncio.gather(
        *(batcher.verify(f"u{i}", {}) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)
    assert len({id(r) for r in results}) == 5, "each caller raises its own error object"


async def test_a_caller_that_gives_up_leaves_the_rest_answered() -> None:
    grader = Grader()
    batcher = VerifyBatcher(grader)
    busy = asyncio.create_task(batcher.verify("u", {}))
    await settle()
    quitter = asyncio.create_task(batcher.verify("q", {}))
    stayer = asyncio.create_task(batcher.verify("s", {}))
    await settle()
    quitter.cancel()
    grader.gate.set()
    assert (await stayer).reward == 1 and (await busy).reward == 1
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert grader.batches == [["u"], ["s"]]


async def test_a_shard_merges_concurrent_submissions_into_batched_calls(
    tmp_path, hub: FakeHub, content: FakeContent
) -> None:
    cfg = shard_config(tmp_path, hub, content.server.address, daily_attempt_limit=100)
    async with ShardService(cfg) as svc:
        client = Client(svc.address)
        users = [f"user{i}" for i in range(40)]
        await asyncio.gather(*(client.create(u) for u in users))
        replies = await asyncio.gather(
            *(client.submit(u, f"u{i % 3}", RIGHT if i % 2 else WRONG) for i, u in enumerate(users))
        )
        assert [r.passed for r in replies] == [bool(i % 2) for i in range(40)]
        assert sum(content.batches) == 40 and len(content.batches) < 40, content.batches
        with pytest.raises(UnknownUnit):  # one item's own error, through the batch
            await client.submit("user0", "nope", RIGHT)
        await client.close()


async def test_a_failed_batch_is_503_for_each_submission_and_uses_no_attempt(
    tmp_path, hub: FakeHub, content: FakeContent
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        users = [f"user{i}" for i in range(12)]
        await asyncio.gather(*(client.create(u) for u in users))
        content.fail_batches = 100
        results = await asyncio.gather(
            *(client.submit(u, "u1", RIGHT, key=f"k-{u}") for u in users), return_exceptions=True
        )
        assert all(isinstance(r, Unavailable) for r in results), results
        for u in users:
            user = await client.user(u)
            assert (user.today.attempts, user.staked, list(user.completed_units)) == (0, 0, [])
        content.fail_batches = 0  # content is back: the same keys now run afresh
        replies = await asyncio.gather(
            *(client.submit(u, "u1", RIGHT, key=f"k-{u}") for u in users)
        )
        assert all(isinstance(r, shard_pb2.SubmitQuizReply) and r.passed for r in replies)
        await client.close()


async def test_each_item_carries_its_own_request_id() -> None:
    grader = Grader()
    batcher = VerifyBatcher(grader)
    grader.gate.set()

    async def as_request(request_id: str, unit: str) -> Verdict:
        token = logs.bind_request_id(request_id)
        try:
            return await batcher.verify(unit, {})
        finally:
            logs.reset_request_id(token)

    await asyncio.gather(*(as_request(f"req-{i}", f"u{i}") for i in range(5)))
    assert sorted(grader.request_ids) == [f"req-{i}" for i in range(5)]
    assert len(grader.batches) < 5, "they shared calls, each keeping its id"


async def test_a_busy_shard_lingers_for_company_and_an_idle_one_does_not() -> None:
    grader = Grader()
    grader.gate.set()
    batcher = VerifyBatcher(grader, max_batch=100, linger_s=0.05)
    lingering = [asyncio.create_task(batcher.verify(f"l{i}", {}, linger=True)) for i in range(3)]
    await settle()
    assert grader.batches == [], "busy: the first waits for company instead of going alone"
    await asyncio.wait_for(asyncio.gather(*lingering), timeout=10)
    assert grader.batches == [["l0", "l1", "l2"]]

    # A caller that does not linger (the shard is not busy) never waits for the timer,
    # and takes along whoever lingers.
    early = asyncio.create_task(batcher.verify("early", {}, linger=True))
    await settle()
    assert len(grader.batches) == 1
    now = asyncio.create_task(batcher.verify("now", {}))
    await settle()
    assert grader.batches[1] == ["early", "now"]
    await asyncio.gather(early, now)


async def test_a_lingering_batcher_still_sends_a_full_batch_at_once_and_fails_it_whole() -> None:
    grader = Grader()
    grader.fail = Unavailable("content is down")
    batcher = VerifyBatcher(grader, max_batch=3, linger_s=30)
    calls = [asyncio.create_task(batcher.verify(f"u{i}", {}, linger=True)) for i in range(3)]
    await settle()
    assert grader.batches == [["u0", "u1", "u2"]], "full: no linger"
    grader.gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    late = asyncio.create_task(batcher.verify("late", {}, linger=True))
    await settle()
    await batcher.close()  # the linger timer goes with it: nobody waits 30 s
    with pytest.raises(asyncio.CancelledError):
        await late
    assert len(grader.batches) == 1
