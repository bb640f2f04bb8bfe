"""Model campaign: the micro-bank and the allowance protocol against a simple model.

Hypothesis drives the real pieces (the shard's :class:`ShardStore` with its
ledger rules and the hub's :class:`HubStore` with the treasury rule, each on
a real LMDB in a temporary directory) through random sequences of:
submissions (alone, racing with distinct keys, racing with one key, replays,
reused keys), allowance rounds whose grant reaches the shard or whose reply
is lost, retries of the same seq, and restarts of the hub or of a shard
(the store closed and reopened from disk).

After every step: the cap holds; per shard, the hub's grant equals the
shard's granted total plus the grant the hub recorded for the request still
in flight (lost reply), and the shard's granted total equals its allowance
left plus what it credited; users hold exactly what the shard credited or
holds as pending; each user earned each unit at most once; and the staked
totals reach the hub exactly once. Draining (refill until nothing is in
flight) settles every pending reward unless the treasury is spent.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hub import treasury
from hub.store import HubStore
from protos import hub_pb2, shard_pb2
from runtime.errors import IdempotencyKeyReused
from tests.campaigns.support import pick
from user_shard import microbank
from user_shard.limits import DailyLimits
from user_shard.store import ShardStore
from user_shard.submission import Verdict
from user_shard.validate import request_fingerprint

pytestmark = pytest.mark.slow

CAP = 700
MAX_GRANT = 10_000
UNITS = {"u1": 40, "u2": 30, "u3": 100, "u4": 0, "u5": 60}
SHARDS = ("shard-0001", "shard-0002")
USERS = ("alice", "bob", "carol")
KEYS = ("", "k1", "k2", "k3", "k4")
LIMITS = DailyLimits(attempts=10_000, tokens=1_000_000)
POLICY = microbank.RefillPolicy(base_allowance=50, low_water_fraction=0.25, refill_target_s=60.0)
NOW_MS = 1_790_000_000_000


def answers(passed: bool) -> dict[str, str]:
    return {"q1": "a" if passed else "b"}


def verdict(unit: str, passed: bool) -> Verdict:
    return Verdict(passed=passed, score=int(passed), total=1, reward=UNITS[unit])


class BankMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="bank-model-"))
        self.loop = asyncio.new_event_loop()
        self.hub = self.run(self.open_hub())
        self.shards = {s: self.run(self.open_shard(s)) for s in SHARDS}
        # The model.
        self.completed: dict[tuple[str, str], set[str]] = {}
        self.earned: dict[tuple[str, str], int] = {}
        self.keyed: dict[tuple[str, str, str], tuple[bytes, shard_pb2.SubmitQuizReply]] = {}
        self.hub_answer: dict[tuple[str, int], int] = {}
        """What the hub granted per (shard, seq), whether or not the reply arrived."""
        for s in SHARDS:
            for u in USERS:
                self.completed[s, u] = set()
                self.earned[s, u] = 0
                self.run(self.shards[s].create_user(u.encode(), shard_pb2.Profile(), NOW_MS))

    # -- plumbing --------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def open_hub(self) -> HubStore:
        store = HubStore(self.dir / "hub", durable=False)
        await store.start()
        for s in SHARDS:
            if store.shard(s) is None:
                step = hub_pb2.SPAWN_STEP_REGISTERED
                await store.put_shard(hub_pb2.ShardRecord(shard_id=s, step=step))
        return store

    async def open_shard(self, shard_id: str) -> ShardStore:
        store = ShardStore(self.dir / shard_id, durable=False)
        await store.start()
        return store

    def teardown(self) -> None:
        for store in [self.hub, *self.shards.values()]:
            self.run(store.stop())
        self.loop.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- submissions -----------------------------------------------------------

    def expect(self, shard: str, user: str, unit: str, passed: bool, key: str) -> Any:
        """The model's answer: a reply to compare, IdempotencyKeyReused, or None (fresh)."""
        fp = request_fingerprint(unit, answers(passed))
        if key and (shard, user, key) in self.keyed:
            stored_fp, reply = self.keyed[shard, user, key]
            return reply if stored_fp == fp else IdempotencyKeyReused
        return None

    def account(self, shard: str, user: str, unit: str, passed: bool, key: str, reply: Any) -> None:
        """Fold a fresh reply into the model, checking it."""
        first = passed and unit not in self.completed[shard, user]
        assert reply.first_completion == first, (unit, passed, reply)
        assert reply.reward == (UNITS[unit] if first else 0)
        if first:
            self.completed[shard, user].add(unit)
            self.earned[shard, user] += UNITS[unit]
        assert reply.balance + reply.pending == self.earned[shard, user]
        if key:
            self.keyed[shard, user, key] = (request_fingerprint(unit, answers(passed)), reply)

    async def submit_one(
        self, shard: str, user: str, unit: str, passed: bool, key: str
    ) -> shard_pb2.SubmitQuizReply:
        fp = request_fingerprint(unit, answers(passed))
        outcome = await self.shards[shard].record_submission(
            user.encode(), unit, verdict(unit, passed), LIMITS, NOW_MS, key, fp
        )
        return outcome.reply

    @rule(
        shard=st.sampled_from(SHARDS),
        user=st.sampled_from(USERS),
        unit=st.sampled_from(sorted(UNITS)),
        passed=st.booleans(),
        key=st.sampled_from(KEYS),
    )
    def submit(self, shard: str, user: str, unit: str, passed: bool, key: str) -> None:
        want = self.expect(shard, user, unit, passed, key)
        if want is IdempotencyKeyReused:
            with pytest.raises(IdempotencyKeyReused):
                self.run(self.submit_one(shard, user, unit, passed, key))
            return
        reply = self.run(self.submit_one(shard, user, unit, passed, key))
        if want is not None:
            assert reply == want, "a replayed key must give the first reply"
        else:
            self.account(shard, user, unit, passed, key, reply)

    @rule(
        shard=st.sampled_from(SHARDS),
        user=st.sampled_from(USERS),
        unit=st.sampled_from(sorted(UNITS)),
        n=st.integers(2, 6),
        same_key=st.booleans(),
    )
    def racing_passes(self, shard: str, user: str, unit: str, n: int, same_key: bool) -> None:
        """``n`` passes of one unit at once: with distinct keys, or all with one key."""
        base = f"race-{len(self.keyed)}"
        keys = [base] * n if same_key else [f"{base}-{i}" for i in range(n)]

        async def race() -> list[shard_pb2.SubmitQuizReply]:
            return list(
                await asyncio.gather(*(self.submit_one(shard, user, unit, True, k) for k in keys))
            )

        first = unit not in self.completed[shard, user]
        replies = self.run(race())
        if same_key:
            assert all(r == replies[0] for r in replies), "one key, one reply"
            self.account(shard, user, unit, True, base, replies[0])
        else:
            firsts = [r for r in replies if r.first_completion]
            assert len(firsts) == int(first), f"{len(firsts)} of {n} racing passes paid"
            # Fold the one that completed first (if any) then the rest, which earned nothing.
            for key, reply in sorted(
                zip(keys, replies, strict=True), key=lambda kr: not kr[1].first_completion
            ):
                self.account(shard, user, unit, True, key, reply)

    # -- allowance -------------------------------------------------------------

    def inflight(self, shard: str) -> microbank.AllowanceRequest | None:
        return microbank.inflight(self.shards[shard].ledger())

    @rule(shard=st.sampled_from(SHARDS), rate=st.sampled_from([0.0, 1.0, 50.0]))
    def begin_refill(self, shard: str, rate: float) -> None:
        before = self.inflight(shard)
        request = self.run(self.shards[shard].begin_allowance_request(POLICY, rate))
        if before is not None:
            assert request == before, "a request in flight is resent unchanged"

    def ask_hub(self, shard: str, request: microbank.AllowanceRequest) -> int:
        ask = treasury.Ask(shard, request.seq, request.amount, request.staked_delta)
        outcome = self.run(
            self.hub.request_allowance(ask, cap=CAP, max_grant=MAX_GRANT, now_ms=NOW_MS)
        )
        granted = int(outcome.grant.granted)
        seen = self.hub_answer.get((shard, request.seq))
        if seen is None:
            assert outcome.new
            self.hub_answer[shard, request.seq] = granted
        else:
            assert not outcome.new and granted == seen, "a retried seq gets the same grant"
        return granted

    @precondition(lambda self: any(self.inflight(s) for s in SHARDS))
    @rule(data=st.data(), lost=st.booleans(), retries=st.integers(0, 2))
    def hub_answers(self, data: st.DataObject, lost: bool, retries: int) -> None:
        """The hub decides the request in flight; its reply reaches the shard unless ``lost``."""
        shard = data.draw(st.sampled_from([s for s in SHARDS if self.inflight(s)]))
        request = self.inflight(shard)
        assert request is not None
        granted = self.ask_hub(shard, request)
        for _ in range(retries):
            assert self.ask_hub(shard, request) == granted
        if not lost:
            self.run(self.shards[shard].apply_grant(request.seq, granted, 1 + retries))
            # The same answer arriving twice changes nothing.
            before = self.shards[shard].ledger()
            self.run(self.shards[shard].apply_grant(request.seq, granted, 0))
            assert self.shards[shard].ledger() == before

    @rule(shard=st.sampled_from(SHARDS))
    def drain(self, shard: str) -> None:
        """Refill rounds until nothing is due: pending settles unless the treasury is spent."""
        for _ in range(10):
            request = self.run(self.shards[shard].begin_allowance_request(POLICY, 0.0))
            if request is None:
                break
            granted = self.ask_hub(shard, request)
            self.run(self.shards[shard].apply_grant(request.seq, granted, 1))
            if granted == 0:
                break
        ledger = self.shards[shard].ledger()
        spent = self.hub.treasury(CAP).total_granted == CAP
        assert ledger.pending_total == 0 or spent, (ledger, self.hub.treasury(CAP))

    # -- restarts --------------------------------------------------------------

    @rule()
    def restart_hub(self) -> None:
        self.run(self.hub.stop())
        self.hub = self.run(self.open_hub())

    @rule(shard=st.sampled_from(SHARDS))
    def restart_shard(self, shard: str) -> None:
        before = self.shards[shard].ledger()
        self.run(self.shards[shard].stop())
        self.shards[shard] = self.run(self.open_shard(shard))
        assert self.shards[shard].ledger() == before

    # -- invariants ------------------------------------------------------------

    @invariant()
    def cap_holds(self) -> None:
        t = self.hub.treasury(CAP)
        assert t.total_granted <= CAP
        assert t.total_granted == sum(s.granted for s in t.shards)

    @invariant()
    def grants_are_allowance_plus_credited(self) -> None:
        accounts = {a.shard_id: a for a in self.hub.treasury(CAP).shards}
        for s in SHARDS:
            ledger = self.shards[s].ledger()
            assert microbank.is_balanced(ledger), ledger
            request = microbank.inflight(ledger)
            at_hub = self.hub_answer.get((s, request.seq)) if request else None
            hub_granted = accounts[s].granted if s in accounts else 0
            assert hub_granted == ledger.granted_total + (at_hub or 0), (s, ledger, at_hub)
            # Staked totals reach the hub once: reported, in flight, or still to report.
            unsent = request.staked_delta if request and at_hub is None else 0
            hub_staked = accounts[s].staked if s in accounts else 0
            assert hub_staked + unsent + ledger.unreported_staked == ledger.credited_total

    @invariant()
    def users_hold_exactly_what_was_paid(self) -> None:
        for s in SHARDS:
            ledger = self.shards[s].ledger()
            staked = pending = 0
            for u in USERS:
                user = self.shards[s].user(u.encode())
                assert user is not None
                assert len(user.completed_units) == len(set(user.completed_units))
                assert set(user.completed_units) == self.completed[s, u]
                assert user.staked + user.pending == self.earned[s, u], "each unit paid once"
                staked += user.staked
                pending += user.pending
            assert (staked, pending) == (ledger.credited_total, ledger.pending_total)


TestBankModel = BankMachine.TestCase
TestBankModel.settings = settings(
    max_examples=pick(40, 1000),
    stateful_step_count=pick(30, 80),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
