"""Hub-down campaign (DESIGN §6, invariant 6): the hub frozen for a while under load.

The hub is SIGSTOPped (so nothing restarts it: it is there, but answers
nothing) for 10 s (60 s in the long form) while signed users keep
registering and submitting through the gateway. Shards with little
allowance run it down and then keep rewarding as ``pending``. The share of
submissions served is printed; every one must be served. Once the hub
wakes, every pending reward is credited, the books are exact and, per
shard, the hub's grant equals the allowance left plus what was credited.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import pytest

from tests.campaigns.support import FAILURES, LONG, UNITS, Sub, Tally, User, pick, seeded_rng
from tests.integration.conftest import MakeCluster
from tests.integration.direct import Direct, right_answers, wrong_answers
from tests.polling import eventually

pytestmark = pytest.mark.slow


@pytest.mark.timeout(pick(240, 900))
async def test_with_the_hub_frozen_shards_serve_and_pending_settles_after(
    make_cluster: MakeCluster,
) -> None:
    rng = seeded_rng("hub-down campaign")
    down_s, concurrent, max_ops = pick(10.0, 60.0), pick(3, 6), pick(2_000, 20_000)
    cluster = make_cluster(
        min_shards=2, base_allowance=150, daily_attempt_limit=100_000, daily_token_limit=1_000_000
    )
    direct = Direct(cluster)
    hub = cluster.children["hub"]
    assert hub.proc is not None
    users: list[User] = []
    tally = Tally()
    tried = served = pending_seen = 0

    async def keep_submitting(deadline: float) -> None:
        nonlocal tried, served, pending_seen
        user = User(cluster.gateway_url, rng, timeout_s=10)
        users.append(user)
        await user.register()
        while time.monotonic() < deadline and tried < max_ops:
            if user.done():
                user = User(cluster.gateway_url, rng, timeout_s=10)
                users.append(user)
                await user.register()
            unit = UNITS[rng.choice(user.open_units())]
            answers = right_answers(unit) if rng.random() < 0.8 else wrong_answers(unit)
            tried += 1
            try:
                reply = await user.submit(uuid.uuid4().hex, Sub(unit["id"], answers))
            except FAILURES as exc:
                tally.failed("submit", exc)
                continue
            served += 1
            pending_seen = max(pending_seen, reply.pending)

    os.kill(hub.proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        await asyncio.gather(*(keep_submitting(stopped_at + down_s) for _ in range(concurrent)))
    finally:
        os.kill(hub.proc.pid, signal.SIGCONT)
    share = served / tried if tried else 0.0
    print(
        f"hub-down campaign{' (long)' if LONG else ''}: hub frozen {down_s:.0f}s; "
        f"{served}/{tried} submissions served ({share:.1%}) by {len(users)} users; "
        f"largest pending seen {pending_seen}; failures {dict(tally.statuses)}"
    )
    try:
        assert tried > 0 and served == tried, f"invariant 6: {tally.statuses}"
        assert pending_seen > 0, "the allowance should have run out while the hub was down"

        async def settled() -> bool:
            balances = [await u.api.balance() for u in users]
            return all(b.pending == 0 for b in balances)

        await eventually(settled, timeout_s=60, what="pending rewards to be credited")
        for user in users:
            await user.resolve()
            await user.check()
        await direct.assert_accounts_balance(timeout_s=30)
    finally:
        for user in users:
            await user.aclose()
