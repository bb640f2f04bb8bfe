"""What a simulated user does next: the request mix of the load.

Each step a user browses the unit list, reads a unit (from the gateway's
cache; with ``If-None-Match`` when it holds the unit's ETag, half the time),
submits a quiz, or reads ``/v1/me`` or its balance. A submission reads the
unit first if the user has not got it yet, is mostly right (some users
guess wrong), always carries an ``Idempotency-Key``, and now and then is sent
again with the same key, as a client that lost the answer would; the replay
must get the same answer. A user refused with 429 (the daily limit) stops
submitting and goes on reading. With a ``register`` share in the mix, a
step now and then is a new user signing up; it joins the users of the run.
The shares come from ``--mix`` (:class:`~canistry.loadtest._config.MixWeights`).
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from dataclasses import dataclass, field

from canistry.client import AsyncClient, Identity, Registration, SubmissionResult, Unit
from canistry.loadtest._answers import AnswerBook
from canistry.loadtest._config import DEFAULT_MIX, MixWeights
from canistry.loadtest._driver import Driver, Failed

__all__ = ["READ_SPLIT", "Mix", "SimUser", "step_weights"]

#: How the ``read`` share splits among the reading steps.
READ_SPLIT = {"list": 15, "read": 30, "me": 15, "balance": 10}
#: The most users one run signs up during the load (the request cap bounds it too).
MAX_SIGNUPS = 100_000
#: How long a sign-up waits out 503s (a new shard starting) before it counts as failed.
SIGNUP_WAIT_S = 5.0


def step_weights(mix: MixWeights) -> dict[str, float]:
    """Weights of the step kinds: list, read, me, balance (the read share), submit, signup."""
    total = sum(READ_SPLIT.values())
    weights = {kind: mix.read * w / total for kind, w in READ_SPLIT.items()}
    weights["submit"] = float(mix.submit)
    weights["signup"] = float(mix.register)
    return {kind: w for kind, w in weights.items() if w > 0}


#: Step weights of the default mix while the user may still submit.
WEIGHTS = step_weights(DEFAULT_MIX)
RIGHT_ANSWER_P = 0.85
CONDITIONAL_P = 0.5
REPLAY_P = 0.05
SUBJECT_FILTER_P = 0.2


@dataclass
class SimUser:
    """One registered user's identity and what it has learned of its own state."""

    n: int
    identity: Identity
    completed: set[str] = field(default_factory=set)
    limited: bool = False
    """Refused with 429 today: reads only from now on."""
    units: dict[str, Unit] = field(default_factory=dict)
    """Units read, with their ETags."""
    cursor: str | None = None
    """Where the user's browsing of the unit list goes on."""


class Mix:
    """Steps of simulated users, sent through :class:`Driver`."""

    def __init__(
        self,
        driver: Driver,
        book: AnswerBook,
        catalogue: list[str],
        subjects: list[str],
        rng: random.Random,
        mix: MixWeights = DEFAULT_MIX,
        run_id: str = "",
    ) -> None:
        self.driver = driver
        self.tally = driver.tally
        self.book = book
        self.catalogue = catalogue
        self.subjects = subjects
        self.rng = rng
        self.weights = step_weights(mix)
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.joined: list[SimUser] = []
        """Users who signed up during the load, not yet handed to the workers."""
        self.signups = 0
        self.signed_up = 0
        self._numbers = itertools.count(1_000_000_000)

    async def register(
        self, api: AsyncClient, user: SimUser, until: float, op: str = "register"
    ) -> None:
        """Register ``user`` (waiting out 503s until ``until``); raises Failed or Stopped."""
        api.identity = user.identity
        name = f"Load {self.run_id} {user.n}"
        email = f"load-{self.run_id}-{user.n}@example.org"

        async def send() -> Registration:
            return await api.register(name, email, "loadtest", "unspecified")

        await self.driver.call(op, send, status_of=lambda r: 201 if r.created else 200, until=until)

    async def signup(self, api: AsyncClient) -> None:
        """A new user registers during the load and joins the run's users (see ``joined``)."""
        if self.signups >= MAX_SIGNUPS:
            return
        self.signups += 1
        user = SimUser(next(self._numbers), Identity.generate())
        await self.register(api, user, time.monotonic() + SIGNUP_WAIT_S, op="signup")
        self.signed_up += 1
        self.joined.append(user)

    async def step(self, api: AsyncClient, user: SimUser) -> None:
        """One thing ``user`` does; raises Failed (counted) or Stopped."""
        api.identity = user.identity
        weights = dict(self.weights)
        if "submit" in weights and (user.limited or not self._open_units(user)):
            weights["read"] = weights.get("read", 0.0) + weights.pop("submit")
        if not self.catalogue:
            weights.pop("read", None)
            weights.pop("submit", None)
        if self.signups >= MAX_SIGNUPS:
            weights.pop("signup", None)
        if not weights:
            weights = {"me": 1.0}
        kind = self.rng.choices(list(weights), list(weights.values()))[0]
        if kind == "signup":
            await self.signup(api)
        elif kind == "list":
            await self.browse(api, user)
        elif kind == "read":
            await self.read(api, user, self.pick_unit(user))
        elif kind == "submit":
            await self.submit(api, user)
        elif kind == "me":
            me = await self.driver.call("me", api.me)
            user.completed.update(me.completed_units)
            user.limited = user.limited or me.today.attempts_left == 0
        else:
            await self.driver.call("balance", api.balance)

    def _open_units(self, user: SimUser) -> list[str]:
        return [u for u in self.catalogue if u not in user.completed]

    def pick_unit(self, user: SimUser) -> str:
        """Mostly a unit the user has yet to pass, as someone studying would."""
        open_units = self._open_units(user)
        if open_units and self.rng.random() < 0.6:
            return self.rng.choice(open_units)
        return self.rng.choice(self.catalogue)

    async def browse(self, api: AsyncClient, user: SimUser) -> None:
        limit = self.rng.choice((10, 20, 50))
        if self.subjects and self.rng.random() < SUBJECT_FILTER_P:
            subject = self.rng.choice(self.subjects)
            await self.driver.call("list_units", lambda: api.units(subject=subject, limit=limit))
            return
        cursor = user.cursor
        page = await self.driver.call("list_units", lambda: api.units(cursor=cursor, limit=limit))
        user.cursor = page.next_cursor

    async def read(self, api: AsyncClient, user: SimUser, unit_id: str) -> Unit:
        held = user.units.get(unit_id)
        if held is not None and held.etag is not None and self.rng.random() < CONDITIONAL_P:
            etag = held.etag
            changed = await self.driver.call(
                "read_unit_cond",
                lambda: api.unit_if_changed(unit_id, etag),
                status_of=lambda u: 304 if u is None else 200,
            )
            if changed is None:
                return held
            fresh = changed
        else:
            fresh = await self.driver.call("read_unit", lambda: api.unit(unit_id))
        user.units[unit_id] = fresh
        return fresh

    async def submit(self, api: AsyncClient, user: SimUser) -> None:
        unit_id = self.rng.choice(self._open_units(user))
        unit = user.units.get(unit_id) or await self.read(api, user, unit_id)
        right = self.rng.random() < RIGHT_ANSWER_P
        answers = self.book.answers(unit, right=right)
        key = uuid.uuid4().hex
        counts = self.tally.submissions

        async def send() -> SubmissionResult:
            return await api.submit(unit_id, answers.choices, idempotency_key=key)

        try:
            result = await self.driver.call("submit", send)
        except Failed as exc:
            if exc.status == 429:
                counts.limited += 1
                user.limited = True
            raise
        counts.answered += 1
        counts.passed += result.passed
        counts.failed += not result.passed
        counts.rewarded += result.reward > 0
        counts.guessed += not answers.known
        counts.wrong_on_purpose += answers.known and not right
        self.tally.tokens_earned += result.reward
        if result.passed:
            user.completed.add(unit_id)
        if result.attempts_left == 0:
            user.limited = True
        if self.rng.random() < REPLAY_P:
            again = await self.driver.call("submit_replay", send)
            counts.replays += 1
            if again != result:
                counts.replays_differing += 1
                self.tally.problems["replay answered differently"] += 1
