"""The hub's one clock: wall time in milliseconds, injected where time is stamped.

:class:`~hub.service.HubService` takes a ``clock`` and hands it down to the
treasury (grant times), the spawns and capacity rounds (decision and
registration times) and the supervisor (restart times); tests pass a fake.
Pacing and backoff run on ``time.monotonic`` instead: they measure intervals.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "wall_clock_ms"]

#: Wall time in ms since the epoch.
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000
