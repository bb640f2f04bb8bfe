"""Votes at the shard: recorded once with the staked balance as power, reported in batches,
kept for later when the hub is down (a real store, a fake hub call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import lmdb
import pytest

from protos import hub_pb2, shard_pb2
from runtime.errors import AlreadyVoted, NotEnoughStake, Unavailable
from runtime.store import get_msg, put_msg
from user_shard.store import ShardStore
from user_shard.voting import VoteReporter

PROFILE = shard_pb2.Profile(name="Ada", email="ada@example.org")


class Hub:
    """Counts votes like the hub; ``gate`` holds a call until set; ``down`` fails it."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, str]]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        """Set when a call reaches the hub."""
        self.down = False

    async def send(self, votes: Sequence[hub_pb2.Vote]) -> list[hub_pb2.VoteOutcome]:
        self.entered.set()
        await self.gate.wait()
        if self.down:
            raise Unavailable("hub down")
        self.batches.append([(v.proposal_id, v.principal) for v in votes])
        return [
            hub_pb2.VoteOutcome(proposal_id=v.proposal_id, principal=v.principal,
                                status="counted", yes=v.voting_power if v.yes else 0)
            for v in votes
        ]  # fmt: skip


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ShardStore]:
    s = ShardStore(tmp_path / "shard", durable=False)
    await s.start()
    yield s
    await s.stop()


async def _user(store: ShardStore, name: str, staked: int) -> bytes:
    principal = name.encode()
    await store.create_user(principal, PROFILE, 0)

    def stake(txn: lmdb.Transaction) -> None:
        db = store.store.db("users")
        user = get_msg(txn, db, principal, shard_pb2.UserRecord)
        assert user is not None
        user.staked = staked
        put_msg(txn, db, principal, user)

    await store.committer.submit(stake)
    return principal


async def test_a_vote_is_recorded_once_with_the_stake_as_power(store: ShardStore) -> None:
    ada = await _user(store, "ada", 70)
    broke = await _user(store, "broke", 0)
    vote = await store.record_vote(ada, 1, yes=True, now_ms=5)
    assert (vote.voting_power, vote.yes, vote.reported) == (70, True, False)
    with pytest.raises(AlreadyVoted):
        await store.record_vote(ada, 1, yes=False, now_ms=6)
    with pytest.raises(NotEnoughStake):
        await store.record_vote(broke, 1, yes=True, now_ms=7)
    assert [(p, who) for p, who, _ in store.unreported_votes(10)] == [(1, b"ada")]


async def test_votes_cast_while_a_report_is_in_flight_leave_together(store: ShardStore) -> None:
    hub = Hub()
    reporter = VoteReporter(store, hub.send)
    users = [await _user(store, f"u{i}", 10 + i) for i in range(4)]
    hub.gate.clear()
    await store.record_vote(users[0], 1, yes=True, now_ms=0)
    first = asyncio.create_task(reporter.report(1, users[0]))
    await hub.entered.wait()  # the first call is out, held at the hub
    rest = []
    for u in users[1:]:
        await store.record_vote(u, 1, yes=False, now_ms=0)
        rest.append(asyncio.create_task(reporter.report(1, u)))
    hub.gate.set()
    outcomes = await asyncio.gather(first, *rest)
    assert [o.status for o in outcomes] == ["counted"] * 4
    assert [len(b) for b in hub.batches] == [1, 3]
    assert store.unreported_votes(10) == []
    assert store.vote(1, users[1]).reported  # type: ignore[union-attr]
    await reporter.close()


async def test_a_vote_the_hub_cannot_take_now_is_reported_later(store: ShardStore) -> None:
    hub = Hub()
    reporter = VoteReporter(store, hub.send)
    ada = await _user(store, "ada", 70)
    await store.record_vote(ada, 3, yes=True, now_ms=0)
    hub.down = True
    with pytest.raises(Unavailable, match="vote recorded"):
        await reporter.report(3, ada)
    assert len(store.unreported_votes(10)) == 1  # still recorded, not lost
    hub.down = False
    sent = await reporter.send_unreported()  # what the background loop does
    assert sent[(3, b"ada")].status == "counted" and store.unreported_votes(10) == []
    await reporter.close()
