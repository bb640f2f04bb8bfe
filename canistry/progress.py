"""A deadline that moves while something makes progress, pure (the clock is passed in).

``canistry up`` waits for children that may legitimately take long (a hub
bringing back dozens of shards at a bounded rate). A fixed timeout either
gives up on a slow but healthy start or waits forever on a stuck one; this
gives up only after ``stall_s`` with nothing new seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

__all__ = ["Progress"]


@dataclass
class Progress:
    """Tracks one wait: :meth:`note` what is seen; :meth:`stalled` once nothing changes."""

    stall_s: float
    """Give up after this long with nothing new."""
    clock: Callable[[], float] = time.monotonic
    started_at: float = field(init=False)
    last_change_at: float = field(init=False)
    changes: int = field(init=False, default=0)
    _seen: Hashable = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.started_at = self.last_change_at = self.clock()

    def note(self, seen: Hashable) -> None:
        """What the wait sees now (a count, a file size...); a new value is progress."""
        if seen != self._seen:
            self._seen = seen
            self.changes += 1
            self.last_change_at = self.clock()

    def stalled(self) -> bool:
        return self.clock() - self.last_change_at >= self.stall_s

    def waited_s(self) -> float:
        return self.clock() - self.started_at
