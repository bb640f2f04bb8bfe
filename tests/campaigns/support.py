"""What the fault campaigns share: the short/long switch, the seed, a supervisor thread, users.

A campaign runs in a short form by default (CI) and in a long form with
``CANISTRY_LONG=1``. Randomness comes from one seeded RNG whose seed is
printed (replay one with ``CANISTRY_SEED=<seed>``).

:class:`User` drives one signed user through the gateway and keeps the book
of what the cluster acknowledged to it: every idempotency key with its first
2xx reply, and the keys whose outcome is still unknown (the request failed,
so it may or may not have been applied). :meth:`User.resolve` retries the
unknown ones with the same key until they are answered, after which the
book is exact and :meth:`User.check` compares it with ``GET /v1/me``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from canistry.client import ApiError, AsyncClient, Identity, Me, SubmissionResult
from canistry.up import Cluster
from tests.integration.direct import SAMPLE, right_answers, wrong_answers

LONG = os.environ.get("CANISTRY_LONG") == "1"
REWARD = {u["id"]: int(u["reward"]) for u in SAMPLE}
UNITS = {u["id"]: u for u in SAMPLE}


def pick(short: Any, long: Any) -> Any:
    """``long`` under ``CANISTRY_LONG=1``, else ``short``."""
    return long if LONG else short


def seeded_rng(campaign: str) -> random.Random:
    """The campaign's RNG; its seed is printed so that a failure can be replayed."""
    seed = int(os.environ.get("CANISTRY_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"{campaign}: seed {seed} (replay with CANISTRY_SEED={seed})")
    return random.Random(seed)


@contextlib.asynccontextmanager
async def supervised(cluster: Cluster, period_s: float = 0.1) -> AsyncIterator[None]:
    """Run ``canistry up``'s supervision loop for ``cluster`` as ``run_up`` does, in a task.

    Not in a thread: children die with the thread that started them
    (PR_SET_PDEATHSIG follows the thread), so restarted services would be
    SIGTERMed when a supervising thread ended. The event loop's thread lives on.
    """

    async def loop() -> None:
        while True:
            cluster.supervise_once()
            await asyncio.sleep(period_s)  # a tick of the supervision loop, not a wait

    task = asyncio.create_task(loop(), name="up-supervisor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Tally:
    """What the load saw, for the report and for the "never a 500" check."""

    ok: int = 0
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)

    def failed(self, what: str, exc: BaseException) -> None:
        if isinstance(exc, ApiError):
            self.statuses[f"{exc.status} {exc.code}"] += 1
            if exc.status >= 500 and exc.status != 503:
                self.server_errors.append(f"{what}: {exc}")
            elif exc.status == 503 and exc.retry_after is None:
                self.server_errors.append(f"{what}: 503 without Retry-After: {exc}")
        else:
            self.statuses[type(exc).__name__] += 1


#: What a request can fail with while processes die: the outcome is then unknown.
FAILURES = (ApiError, httpx.HTTPError)


@dataclass
class Sub:
    """One keyed submission: what was sent, and the first 2xx reply to it (None: unknown)."""

    unit_id: str
    answers: dict[str, str]
    reply: SubmissionResult | None = None


class User:
    """One signed user through the gateway, and the book of what was acknowledged to it."""

    def __init__(self, url: str, rng: random.Random, *, timeout_s: float = 5.0) -> None:
        self.identity = Identity.generate()
        self.api = AsyncClient(url, self.identity, timeout_s=timeout_s, retry_unavailable_s=0)
        self.rng = rng
        self.reg_key = f"reg-{uuid.uuid4().hex}"
        self.registered = False
        self.subs: dict[str, Sub] = {}
        self.mismatches: list[str] = []
        self.day: str | None = None

    @property
    def principal(self) -> str:
        return self.identity.principal

    async def aclose(self) -> None:
        await self.api.aclose()

    async def register(self) -> None:
        await self.api.register("Camp", "camp@example.org", idempotency_key=self.reg_key)
        self.registered = True

    def open_units(self) -> list[str]:
        """Units this user has not yet passed as far as the book knows, nor has in the air."""
        taken = {s.unit_id for s in self.subs.values() if s.reply is None or s.reply.passed}
        return [u for u in REWARD if u not in taken]

    def done(self) -> bool:
        return not self.open_units()

    async def submit(self, key: str, sub: Sub) -> SubmissionResult:
        self.subs.setdefault(key, sub)
        reply = await self.api.submit(sub.unit_id, sub.answers, idempotency_key=key)
        if sub.reply is None:
            sub.reply = reply
        elif reply != sub.reply:
            self.mismatches.append(f"{key}: first {sub.reply}, replay {reply}")
        return reply

    async def step(self, tally: Tally) -> None:
        """One random operation; failures are tallied, never raised."""
        roll = self.rng.random()
        try:
            if not self.registered:
                await self.register()
            elif roll < 0.5 and self.open_units():
                unit = UNITS[self.rng.choice(self.open_units())]
                await self.submit(uuid.uuid4().hex, Sub(unit["id"], right_answers(unit)))
            elif roll < 0.62:
                unit = UNITS[self.rng.choice(list(UNITS))]
                await self.submit(uuid.uuid4().hex, Sub(unit["id"], wrong_answers(unit)))
            elif roll < 0.75 and self.subs:
                key = self.rng.choice(list(self.subs))
                await self.submit(key, self.subs[key])
            elif roll < 0.9:
                await self.api.me()
            else:
                await self.api.balance()
            tally.ok += 1
        except FAILURES as exc:
            tally.failed(f"{self.principal} step", exc)

    async def resolve(self, budget_s: float = 60.0) -> None:
        """Retry every request whose outcome is unknown, with its key, until it is answered.

        Retries 503s and 409 "in flight" (a claim left by a killed gateway
        worker) within ``budget_s`` per request; anything else raises.
        """
        self.api.retry_unavailable_s = budget_s
        try:
            if not self.registered:
                await self.register()
            for key, sub in list(self.subs.items()):
                if sub.reply is None:
                    await self.submit(key, sub)
        finally:
            self.api.retry_unavailable_s = 0

    async def check(self) -> Me:
        """The book against ``GET /v1/me`` (after :meth:`resolve`); returns what the user sees.

        Every acknowledged pass is a completed unit, each unit paid once, and
        the balance is exactly the sum of the acknowledged rewards.
        """
        me = await self.api.me()
        assert not self.mismatches, f"a replay changed the reply: {self.mismatches}"
        replies = [s.reply for s in self.subs.values()]
        assert all(r is not None for r in replies), "check() before resolve()"
        firsts = [s.unit_id for s in self.subs.values() if s.reply and s.reply.first_completion]
        assert len(firsts) == len(set(firsts)), f"a unit was paid twice: {sorted(firsts)}"
        assert set(me.completed_units) == set(firsts), (
            f"{self.principal}: completed {sorted(me.completed_units)}, acknowledged {firsts}"
        )
        for s in self.subs.values():
            assert s.reply is not None
            want = REWARD[s.unit_id] if s.reply.first_completion else 0
            assert s.reply.reward == want, f"{s.unit_id}: reward {s.reply.reward}, want {want}"
        earned = sum(REWARD[u] for u in firsts)
        got = me.balance.staked + me.balance.pending
        assert got == earned, f"{self.principal}: balance {me.balance}, acknowledged {earned}"
        if self.day in (None, me.today.day):  # a UTC midnight in between resets the count
            self.day = me.today.day
            assert me.today.attempts == len(self.subs), (
                f"{self.principal}: {me.today.attempts} attempts, {len(self.subs)} acknowledged"
            )
        balance = await self.api.balance()  # pending may settle in between, the sum may not move
        assert balance.staked + balance.pending == earned, (balance, earned)
        return me
