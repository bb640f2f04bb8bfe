"""Supervision under SIGKILL, on real clusters of real processes.

A shard that dies is restarted on its data, with a backoff that grows; a
restarted hub re-adopts the shards that kept running instead of starting
them twice; a hub killed in the middle of a spawn finishes that spawn when
it comes back, with the one shard process it had started.
"""

from __future__ import annotations

import time

from runtime.errors import CanistryError
from tests.integration.conftest import MakeCluster
from tests.integration.direct import (
    SAMPLE,
    Direct,
    new_principal,
    poll,
    right_answers,
    shard_pid,
    sigkill,
)
from tests.integration.hubview import (
    hub_events,
    hub_log_size,
    hub_records,
    kill_hub,
    record_of,
    restart_hub,
    shard_processes,
    step_name,
)


async def served(direct: Direct, principals: list[str]) -> bool:
    """Whether every one of ``principals`` can be read from its shard now."""
    try:
        for p in principals:
            await direct.user(p)
    except CanistryError:
        return False
    return True


async def test_a_shard_killed_again_and_again_comes_back_on_its_data_with_growing_backoff(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    direct = Direct(cluster)
    users = [new_principal() for _ in range(3)]
    for p in users:
        await direct.register(p)
    unit = SAMPLE[0]
    reward = (await direct.submit(users[0], unit["id"], right_answers(unit))).reward
    shard_id = (await direct.lookup(users[0])).shard_id

    gaps: list[float] = []
    for kill in range(1, 4):
        before = await record_of(direct, shard_id)
        assert before is not None and before.restarts == kill - 1
        sigkill(before.pid)
        killed_at = time.monotonic()

        async def restarted(pid: int = before.pid, n: int = kill) -> bool:
            r = await record_of(direct, shard_id)
            return (
                r is not None
                and r.restarts == n
                and r.pid != pid
                and bool(shard_processes(cluster, shard_id))
            )

        await poll(restarted, timeout_s=30, what=f"restart number {kill}")
        gaps.append(time.monotonic() - killed_at)

    record = await record_of(direct, shard_id)
    assert record is not None and step_name(record) == "REGISTERED"
    # The hub waited 0.5 s, then 1 s, then 2 s before each restart...
    assert record.restarts == 3 and record.restart_delay_s == 2.0
    waited = [e["waited_s"] for e in hub_events(cluster, "shard_restarted")]
    assert waited == [0.5, 1.0, 2.0]
    # ...and it shows from outside: the third restart took longer than the delay it waited.
    assert gaps[2] >= 2.0 and gaps[2] > gaps[0], gaps

    await poll(lambda: served(direct, users), timeout_s=30, what="the shard serving again")
    assert shard_processes(cluster, shard_id) == [record.pid] == [shard_pid(cluster, shard_id)]
    first = (await direct.user(users[0])).user
    assert unit["id"] in first.completed_units and first.staked + first.pending == reward
    await direct.assert_accounts_balance()


async def test_a_restarted_hub_re_adopts_the_running_shards_instead_of_starting_them_again(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(min_shards=2)
    direct = Direct(cluster)
    user = new_principal()
    await direct.register(user)
    before = await hub_records(direct)
    assert sorted(before) == ["shard-0001", "shard-0002"]
    pids = {i: shard_pid(cluster, i) for i in before}
    assert pids == {i: r.pid for i, r in before.items()}

    kill_hub(cluster)
    # The shards outlive their hub and go on serving their users.
    assert await served(direct, [user])
    assert {i: shard_processes(cluster, i) for i in before} == {i: [pid] for i, pid in pids.items()}

    offset = hub_log_size(cluster)
    await restart_hub(cluster)

    def supervised() -> dict[str, int]:
        seen = {
            e["shard_id"]: e["pid"] for e in hub_events(cluster, "shard_supervised", since=offset)
        }
        return seen if len(seen) == 2 else {}

    seen = await poll(_sync(supervised), timeout_s=30, what="the new hub watching both shards")
    assert seen == pids, "the new hub found the running processes"
    assert not hub_events(cluster, "shard_dead", since=offset)
    assert not hub_events(cluster, "shard_process_started", since=offset)
    after = await hub_records(direct)
    assert {i: (r.pid, r.restarts) for i, r in after.items()} == {
        i: (p, 0) for i, p in pids.items()
    }
    assert {i: shard_processes(cluster, i) for i in after} == {i: [pid] for i, pid in pids.items()}
    assert (await direct.directory()).shards[0].shard_id == "shard-0001"
    assert await served(direct, [user])
    unit = SAMPLE[1]
    assert (await direct.submit(user, unit["id"], right_answers(unit))).passed


async def test_a_hub_killed_in_the_middle_of_a_spawn_finishes_it_when_it_restarts(
    make_cluster: MakeCluster,
) -> None:
    """The hub is SIGKILLed while held after each step of one spawn in turn, and carries on.

    A test hook injected into the hub process (``held_hub.py``) holds every
    spawn once a given step is committed, so each kill lands exactly there;
    the next hub runs without it, or with a later step.
    """
    cluster = make_cluster(soft_limit=2, hard_limit=1000)
    direct = Direct(cluster)

    async def restart_held_after(step: str | None) -> int:
        offset = hub_log_size(cluster)
        await restart_hub(cluster, pause_after=step)
        return offset

    async def held(step: str, since: int) -> bool:
        paused = hub_events(cluster, "spawn_paused", since=since)
        return step_name(await record_of(direct, "shard-0002")) == step and any(
            e["shard_id"] == "shard-0002" and e["step"] == f"SPAWN_STEP_{step}" for e in paused
        )

    kill_hub(cluster)
    since = await restart_held_after("ALLOCATED")
    first = [new_principal() for _ in range(2)]
    for p in first:  # shard-0001 reaches the soft limit: the registry pokes the hub
        await direct.register(p)
    await poll(lambda: held("ALLOCATED", since), what="the spawn held after ALLOCATED")
    assert shard_processes(cluster, "shard-0002") == []

    kill_hub(cluster)
    since = await restart_held_after("STARTED")
    await poll(lambda: held("STARTED", since), what="the spawn resumed and held after STARTED")
    started = await record_of(direct, "shard-0002")
    assert started is not None and started.pid > 0
    assert shard_processes(cluster, "shard-0002") == [started.pid]

    kill_hub(cluster)
    since = await restart_held_after("HEALTHY")
    await poll(lambda: held("HEALTHY", since), what="the spawn resumed and held after HEALTHY")
    healthy = await record_of(direct, "shard-0002")
    assert healthy is not None and healthy.pid == started.pid, "adopted, not started again"
    assert shard_processes(cluster, "shard-0002") == [started.pid]
    assert [s.shard_id for s in (await direct.directory()).shards] == ["shard-0001"]

    kill_hub(cluster)
    await restart_held_after(None)

    async def finished() -> bool:
        return step_name(await record_of(direct, "shard-0002")) == "REGISTERED"

    await poll(finished, what="the spawn finished")
    done = await record_of(direct, "shard-0002")
    assert done is not None and (done.pid, done.restarts) == (started.pid, 0)
    assert shard_processes(cluster, "shard-0002") == [started.pid], "one process, never two"
    assert [s.shard_id for s in (await direct.directory()).shards] == ["shard-0001", "shard-0002"]
    assert sorted(await hub_records(direct)) == ["shard-0001", "shard-0002"], "one spawn"
    newcomer = new_principal()
    assert (await direct.register(newcomer)).shard_id == "shard-0002"
    assert await served(direct, [*first, newcomer])
    await direct.assert_accounts_balance()


def _sync(fn):  # type: ignore[no-untyped-def]
    async def call():  # type: ignore[no-untyped-def]
        return fn()

    return call
