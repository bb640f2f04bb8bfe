"""Keeping the directory true to the shards, pure: pending assignments and full stores.

An assignment counts in its shard's ``users`` from the moment it is made
(so concurrent assigns never pass the hard limit) but stays *pending* until
the shard confirms the profile exists. The registry's watcher asks each
shard (``Census``) about its pending principals:

- found: the assignment is confirmed; ``pending`` drops, ``users`` stays;
- not found, and the lease (``assigned_at_ms``, renewed by every ``Assign``
  of that principal) is older than the pending timeout: the assignment is
  released, so a registration abandoned half way (the shard died, the
  client gave up) leaves no ghost using up capacity. The release happens
  only if the lease is still the one the census was judged on, so a
  principal who came back meanwhile keeps its shard, and a principal whose
  profile exists never loses its shard (it is found, never released).

The census also reports how full the shard's store is; a shard whose store
reaches ``full_fraction`` of its map is FULL: it takes no new users, and the
hub's capacity rule (no ACTIVE shard below the soft limit) spawns another.
A shard is FULL while it is at the hard limit or its store is near full, and
ACTIVE again once releases take it below the limit (a store does not shrink,
so a shard full by bytes stays FULL).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from protos import registry_pb2

__all__ = [
    "Judgement",
    "judge",
    "observe_store",
    "set_disabled",
    "settle",
    "state_of",
    "store_nearly_full",
]

ACTIVE = registry_pb2.SHARD_STATE_ACTIVE
FULL = registry_pb2.SHARD_STATE_FULL
DISABLED = registry_pb2.SHARD_STATE_DISABLED


def store_nearly_full(used: int, size: int, full_fraction: float) -> bool:
    """Whether a store with ``used`` of ``size`` bytes should take no new users."""
    return size > 0 and used >= full_fraction * size


def state_of(shard: registry_pb2.ShardInfo, hard_limit: int) -> registry_pb2.ShardState.ValueType:
    """DISABLED by an adopted proposal; else FULL at the hard limit or with a store
    near full; else ACTIVE."""
    if shard.disabled:
        return DISABLED
    return FULL if shard.users >= hard_limit or shard.store_full else ACTIVE


def observe_store(
    shard: registry_pb2.ShardInfo,
    *,
    used: int,
    size: int,
    full_fraction: float,
    hard_limit: int,
) -> tuple[registry_pb2.ShardInfo, bool]:
    """``shard`` with its store as reported; True if that just made it FULL."""
    updated = registry_pb2.ShardInfo()
    updated.CopyFrom(shard)
    updated.store_bytes_used = used
    updated.store_map_size = size
    updated.store_full = shard.store_full or store_nearly_full(used, size, full_fraction)
    updated.state = state_of(updated, hard_limit)
    return updated, updated.state == FULL and shard.state != FULL


def set_disabled(
    shard: registry_pb2.ShardInfo, *, disabled: bool, hard_limit: int
) -> registry_pb2.ShardInfo:
    """``shard`` disabled (no new users, whatever its room) or enabled again."""
    updated = registry_pb2.ShardInfo()
    updated.CopyFrom(shard)
    updated.disabled = disabled
    updated.state = state_of(updated, hard_limit)
    return updated


@dataclass(frozen=True)
class Judgement:
    confirmed: list[str]
    """Principals whose profile the shard has: their assignment stands."""
    expired: list[tuple[str, int]]
    """(principal, lease judged on): no profile and the lease is past the timeout."""


def judge(
    pending: Sequence[tuple[str, registry_pb2.PendingAssignment]],
    found: Collection[str],
    *,
    now_ms: int,
    timeout_ms: int,
) -> Judgement:
    """Split one shard's pending assignments by its census answer ``found``."""
    confirmed = [p for p, _ in pending if p in found]
    expired = [
        (p, a.assigned_at_ms)
        for p, a in pending
        if p not in found and now_ms - a.assigned_at_ms >= timeout_ms
    ]
    return Judgement(confirmed, expired)


def settle(
    shard: registry_pb2.ShardInfo, *, confirmed: int, released: int, hard_limit: int
) -> registry_pb2.ShardInfo:
    """``shard`` after ``confirmed`` pending assignments stood and ``released`` were dropped."""
    updated = registry_pb2.ShardInfo()
    updated.CopyFrom(shard)
    updated.pending = max(0, shard.pending - confirmed - released)
    updated.users = max(0, shard.users - released)
    updated.state = state_of(updated, hard_limit)
    return updated
