"""When the hub spawns, promotes or warms a shard, pure.

One round reads the registry's directory and the hub's own shard records and
decides one thing. Capacity is short when fewer shards are registered than
``min_shards``, or when no ACTIVE shard is below the soft limit. Then:

1. a ready warm shard (started, healthy, unregistered) is PROMOTEd at once,
   even while another spawn runs: it only needs registering;
2. otherwise, while a spawn runs, nothing more starts (IN_PROGRESS);
3. an unfinished spawn (or a promotion cut short by a hub crash) is RESUMEd
   before anything new: finished or undone;
4. a new shard is SPAWNed cold.

With capacity to spare, an unfinished spawn is still resumed, and then the
warm pool is refilled (FILL) one shard at a time up to ``warm_pool``. Never
more than one spawn per round.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from protos import hub_pb2, registry_pb2

__all__ = [
    "IN_PROGRESS_STEPS",
    "Action",
    "Decision",
    "decide",
    "promoting",
    "shortage",
    "unfinished",
]

#: Spawn steps that mean "started but not finished".
IN_PROGRESS_STEPS = frozenset(
    {
        hub_pb2.SPAWN_STEP_ALLOCATED,
        hub_pb2.SPAWN_STEP_IDENTITY_ISSUED,
        hub_pb2.SPAWN_STEP_STARTED,
        hub_pb2.SPAWN_STEP_HEALTHY,
    }
)


def promoting(record: hub_pb2.ShardRecord) -> bool:
    """A WARM shard whose promotion was decided but not finished (the hub died halfway)."""
    return record.step == hub_pb2.SPAWN_STEP_WARM and record.decided_at_ms > 0


def unfinished(record: hub_pb2.ShardRecord) -> bool:
    """A spawn or a promotion that a round must carry on before anything new."""
    return record.step in IN_PROGRESS_STEPS or promoting(record)


class Action(enum.Enum):
    ENOUGH = "enough"
    SPAWN = "spawn"
    RESUME = "resume"
    PROMOTE = "promote"
    FILL = "fill"
    IN_PROGRESS = "spawn_in_progress"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    record: hub_pb2.ShardRecord | None = None
    """The unfinished spawn (RESUME) or the warm shard (PROMOTE)."""


def shortage(
    directory: registry_pb2.ShardDirectory, *, min_shards: int, soft_limit: int
) -> str | None:
    """Why the cluster needs another shard in service now; None if it does not."""
    registered = len(directory.shards)
    if registered < min_shards:
        return f"{registered} shard(s) registered, want {min_shards}"
    active = [s for s in directory.shards if s.state == registry_pb2.SHARD_STATE_ACTIVE]
    if not active:
        return "no active shard"
    if all(s.users >= soft_limit for s in active):
        return f"every active shard has >= {soft_limit} users"
    return None


def decide(
    directory: registry_pb2.ShardDirectory,
    records: Sequence[hub_pb2.ShardRecord],
    *,
    min_shards: int,
    soft_limit: int,
    warm_pool: int = 0,
    ready: Collection[str] = (),
    spawn_running: bool = False,
) -> Decision:
    """What this round does.

    ``ready`` names the WARM shards whose process runs now (a dead one is the
    supervisor's to restart, not one to promote); ``spawn_running`` is true
    while a spawn task runs.
    """
    need = shortage(directory, min_shards=min_shards, soft_limit=soft_limit)
    warm = sorted(
        (r for r in records if r.step == hub_pb2.SPAWN_STEP_WARM and not promoting(r)),
        key=lambda r: r.shard_id,
    )
    if need is not None:
        promotable = [r for r in warm if r.shard_id in ready]
        if promotable:
            return Decision(Action.PROMOTE, need, record=promotable[0])
    if spawn_running:
        return Decision(Action.IN_PROGRESS, "a spawn is under way")
    carry_on = sorted((r for r in records if unfinished(r)), key=lambda r: r.shard_id)
    if carry_on:
        return Decision(Action.RESUME, "an unfinished spawn", record=carry_on[0])
    if need is not None:
        return Decision(Action.SPAWN, need)
    if len(warm) < warm_pool:
        return Decision(Action.FILL, f"{len(warm)} warm shard(s), want {warm_pool}")
    return Decision(Action.ENOUGH, "an active shard is below the soft limit")
