"""When the hub spawns a shard, pure.

One round reads the registry's directory and the hub's own shard records and
decides one thing: resume the spawn left in progress, spawn one new shard, or
do nothing. It spawns when fewer shards are registered than ``min_shards``,
or when no ACTIVE shard is below the soft limit; never while a spawn is under
way, and never more than one per round.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from protos import hub_pb2, registry_pb2

__all__ = ["IN_PROGRESS_STEPS", "Action", "Decision", "decide"]

#: Spawn steps that mean "started but not finished".
IN_PROGRESS_STEPS = frozenset(
    {
        hub_pb2.SPAWN_STEP_ALLOCATED,
        hub_pb2.SPAWN_STEP_IDENTITY_ISSUED,
        hub_pb2.SPAWN_STEP_STARTED,
        hub_pb2.SPAWN_STEP_HEALTHY,
    }
)


class Action(enum.Enum):
    ENOUGH = "enough"
    SPAWN = "spawn"
    RESUME = "resume"
    IN_PROGRESS = "spawn_in_progress"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    record: hub_pb2.ShardRecord | None = None
    """The unfinished spawn, for RESUME."""


def decide(
    directory: registry_pb2.ShardDirectory,
    records: Sequence[hub_pb2.ShardRecord],
    *,
    min_shards: int,
    soft_limit: int,
    spawn_running: bool = False,
) -> Decision:
    """What this round does. ``spawn_running`` is true while a spawn task runs."""
    if spawn_running:
        return Decision(Action.IN_PROGRESS, "a spawn is under way")
    unfinished = sorted(
        (r for r in records if r.step in IN_PROGRESS_STEPS), key=lambda r: r.shard_id
    )
    if unfinished:
        return Decision(Action.RESUME, "an unfinished spawn", record=unfinished[0])
    registered = len(directory.shards)
    if registered < min_shards:
        return Decision(Action.SPAWN, f"{registered} shard(s) registered, want {min_shards}")
    active = [s for s in directory.shards if s.state == registry_pb2.SHARD_STATE_ACTIVE]
    if not active:
        return Decision(Action.SPAWN, "no active shard")
    if all(s.users >= soft_limit for s in active):
        return Decision(Action.SPAWN, f"every active shard has >= {soft_limit} users")
    return Decision(Action.ENOUGH, "an active shard is below the soft limit")
