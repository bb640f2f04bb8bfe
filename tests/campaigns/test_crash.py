"""Crash campaign (DESIGN §6, invariants 1-4): SIGKILL any process at random moments under load.

A few signed users register, submit quizzes with idempotency keys, replay
keys and read their balances through the gateway, while a seeded RNG picks a
victim (a shard, the hub, the registry, the content service or a gateway
worker) and a moment (after a random number of finished requests) and
SIGKILLs it. ``canistry up``'s supervision loop (driven here from a thread,
as ``run_up`` drives it) restarts core services, the hub restarts its shards,
uvicorn its workers.

After each kill, once everything serves again, every request whose outcome
was unknown is retried with its key until answered; then the books must be
exact: each acknowledged write is visible in ``GET /v1/me``, each unit paid
once, each balance the sum of the acknowledged rewards, a replayed key the
same reply, the cap kept, and per shard the hub's grant equal to the
allowance left plus what was credited.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from canistry.up import Cluster
from tests.campaigns.support import FAILURES, LONG, Tally, User, pick, seeded_rng, supervised
from tests.integration.conftest import MakeCluster
from tests.integration.direct import Direct, shard_pid
from tests.polling import eventually

pytestmark = pytest.mark.slow

CORE = ("hub", "registry", "content")
TARGETS = ("shard", "shard", *CORE, "gateway-worker")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except OSError:
        return False


def gateway_workers(cluster: Cluster) -> list[int]:
    """The uvicorn worker processes under the gateway's supervisor process."""
    proc = cluster.children["gateway"].proc
    assert proc is not None
    try:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return []
    workers = []
    for pid in map(int, kids):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmdline and _alive(pid):
            workers.append(pid)
    return workers


def kill_one(
    cluster: Cluster, target: str, shard_ids: list[str], rng_choice: Callable[[list[str]], str]
) -> tuple[str, Callable[[], bool]]:
    """SIGKILL one process of ``target``; return its name and a "replaced" check."""
    if target == "shard":
        shard_id = rng_choice(shard_ids)
        pid = shard_pid(cluster, shard_id)
        os.kill(pid, signal.SIGKILL)

        def replaced() -> bool:
            try:
                new = shard_pid(cluster, shard_id)
            except (OSError, ValueError):
                return False
            return new != pid and _alive(new)

        return shard_id, replaced
    if target == "gateway-worker":
        workers = gateway_workers(cluster)
        pid = rng_choice([str(w) for w in workers])
        os.kill(int(pid), signal.SIGKILL)
        return (
            f"gateway worker {pid}",
            lambda: (
                len(gateway_workers(cluster)) == cluster.config.gateway_workers
                and int(pid) not in gateway_workers(cluster)
            ),
        )
    child = cluster.children[target]
    # Supervision backoff is test_supervision's business; here a restart should be quick.
    child.backoff_s = 0.5
    assert child.proc is not None
    pid = child.proc.pid
    os.kill(pid, signal.SIGKILL)
    return (
        target,
        lambda: (
            child.proc is not None
            and child.proc.pid != pid
            and child.exited() is None
            and child.ready_file.exists()
        ),
    )


@dataclass
class Trigger:
    """Fires after ``at`` finished requests: the random moment of the next kill."""

    at: int
    count: int = 0
    fired: asyncio.Event = field(default_factory=asyncio.Event)

    def tick(self) -> None:
        self.count += 1
        if self.count >= self.at:
            self.fired.set()


async def run_load(users: list[User], ops: int, tally: Tally, trigger: Trigger) -> None:
    async def one(user: User) -> None:
        for _ in range(ops):
            if user.registered and user.done():
                break
            await user.step(tally)
            trigger.tick()

    try:
        await asyncio.gather(*(one(u) for u in users))
    finally:
        trigger.fired.set()


async def serving(cluster: Cluster, direct: Direct, users: list[User]) -> None:
    """Wait until every part answers again: gateway, hub, every shard, every user's reads."""

    async def ready() -> bool:
        r = await users[0].api.http.get("/readyz")
        return r.status_code == 200

    async def reads() -> bool:
        for user in users:
            if user.registered:
                await user.api.me()
        return True

    await eventually(ready, timeout_s=60, what="gateway readiness", ignore=(Exception,))
    await eventually(direct.treasury, timeout_s=60, what="the hub", ignore=(Exception,))
    await eventually(direct.shard_statuses, timeout_s=60, what="every shard", ignore=(Exception,))
    # The gateway's own channels may still be backing off from the dead process.
    await eventually(reads, timeout_s=60, what="every user's reads", ignore=FAILURES)


async def check_books(direct: Direct, users: list[User]) -> None:
    """Invariants 1-4 over the whole cluster, once every unknown outcome is resolved."""
    for user in users:
        await user.resolve()
    for user in users:
        await user.check()
    await direct.assert_accounts_balance(timeout_s=60)

    # Every token the shards credited or hold as pending is in our users' balances, and no
    # other exists. Pending may settle while we read, so compare once nothing moved.
    async def same() -> tuple[int, int] | None:
        before = await direct.shard_statuses()
        held = [(await u.api.balance()) for u in users]
        after = await direct.shard_statuses()
        if before != after:
            return None
        credited = sum(s.credited_total for s in after.values())
        waiting = sum(s.pending_total for s in after.values())
        assert (sum(b.staked for b in held), sum(b.pending for b in held)) == (
            credited,
            waiting,
        ), f"users hold {held}; shards credited {credited}, hold {waiting} pending"
        return credited, waiting

    await eventually(same, timeout_s=30, what="a still moment to compare the books")


@pytest.mark.timeout(pick(300, 4 * 3600))
async def test_sigkill_of_any_process_under_load_loses_no_acknowledged_write(
    make_cluster: MakeCluster,
) -> None:
    rng = seeded_rng("crash campaign")
    kills, ops, concurrent = pick(10, 100), pick(6, 10), pick(3, 4)
    cluster = make_cluster(
        min_shards=2,
        gateway_workers=2,
        cap=pick(2_500, 40_000),  # reached during the campaign: the cap must hold under kills
        base_allowance=150,  # small grants: many allowance calls cross the kills
        daily_attempt_limit=100_000,
        daily_token_limit=1_000_000,
    )
    direct = Direct(cluster)
    shard_ids = [s.shard_id for s in (await direct.directory()).shards]
    tally = Tally()
    users: list[User] = []
    retired: list[User] = []
    killed: collections.Counter[str] = collections.Counter()
    worst: dict[str, float] = {}
    try:
        async with supervised(cluster):
            for n in range(kills):
                for user in [u for u in users if u.done()]:
                    users.remove(user)
                    retired.append(user)
                while len(users) < concurrent:
                    users.append(User(cluster.gateway_url, rng))
                target = rng.choice(TARGETS)
                trigger = Trigger(at=rng.randint(0, concurrent * ops))
                load = asyncio.create_task(run_load(users, ops, tally, trigger))
                await trigger.fired.wait()
                name, replaced = kill_one(cluster, target, shard_ids, rng.choice)
                killed_at = time.monotonic()
                killed[target] += 1
                await load
                await eventually(replaced, timeout_s=60, what=f"kill {n + 1}: {name} replaced")
                await serving(cluster, direct, users)
                outage = time.monotonic() - killed_at
                worst[target] = max(worst.get(target, 0.0), outage)
                await check_books(direct, [*users, *retired])
        await check_books(direct, [*users, *retired])
        t = await direct.treasury()
        print(f"crash campaign: treasury granted {t.total_granted} of cap {t.cap}")
        assert t.total_granted <= t.cap
    finally:
        for user in [*users, *retired]:
            await user.aclose()
        everyone = [*users, *retired]
        print(
            f"crash campaign{' (long)' if LONG else ''}: {sum(killed.values())} kills "
            f"{dict(killed)}; {len(everyone)} users; {tally.ok} requests answered 2xx; "
            f"failures while processes were down: {dict(tally.statuses)}; longest time from "
            f"kill to serving everyone again: { {k: round(v, 1) for k, v in worst.items()} }s"
        )
    assert sum(killed.values()) == kills
    assert not tally.server_errors, tally.server_errors[:10]
