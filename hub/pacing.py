"""How fast the supervisor starts shard processes, and in which order, pure.

After a restart of a grown cluster every shard is down at once. Starting them
all in the same second starves the host (and the gateway on it), so starts
go through a :class:`StartPacer`: at most ``max_concurrent`` at a time (a
start holds its slot until the shard answers healthy or its start timeout
passes) and never two within ``min_interval_s``. :func:`start_order` says who
goes first: the newest registered shard (the one taking new users), then the
busiest, then the newest; warm shards (no users) last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from protos import hub_pb2

__all__ = ["StartPacer", "start_order"]


@dataclass
class StartPacer:
    """Slots for shard starts; time is passed in."""

    max_concurrent: int = 4
    min_interval_s: float = 0.25
    running: int = 0
    last_start_at: float | None = None
    starts: list[float] = field(default_factory=list)
    """When each start began (the figures the tests and the log report)."""

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.min_interval_s < 0:
            raise ValueError("max_concurrent must be >= 1 and min_interval_s >= 0")

    def may_start(self, now: float) -> bool:
        if self.running >= self.max_concurrent:
            return False
        return self.last_start_at is None or now - self.last_start_at >= self.min_interval_s

    def next_at(self, now: float) -> float:
        """The earliest time a start may begin, given only the rate cap."""
        if self.last_start_at is None:
            return now
        return max(now, self.last_start_at + self.min_interval_s)

    def begin(self, now: float) -> None:
        """A start takes a slot at ``now`` (call only when :meth:`may_start`)."""
        self.running += 1
        self.last_start_at = now
        self.starts.append(now)
        del self.starts[:-1000]  # bounded: the recent past is what a check needs

    def end(self) -> None:
        """The start that held a slot is over (healthy, or given up on)."""
        self.running = max(0, self.running - 1)


def start_order(
    records: Iterable[hub_pb2.ShardRecord], users: Mapping[str, int]
) -> list[hub_pb2.ShardRecord]:
    """``records`` in the order to start them; ``users`` is the registry's count per shard."""
    newest_first = sorted(records, key=lambda r: (r.created_at_ms, r.shard_id), reverse=True)
    registered = [r.shard_id for r in newest_first if r.step == hub_pb2.SPAWN_STEP_REGISTERED]
    newest = registered[0] if registered else None

    def key(r: hub_pb2.ShardRecord) -> tuple[int, int, int]:
        return (
            0 if r.shard_id == newest else 1,
            0 if r.step == hub_pb2.SPAWN_STEP_REGISTERED else 1,
            -users.get(r.shard_id, 0),
        )

    return sorted(newest_first, key=key)  # stable: among equals, the newest first
