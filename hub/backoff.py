"""When to restart a crashed process, pure (time is passed in).

A process seen dead is restarted after a delay that starts at ``initial_s``
and doubles with each restart up to ``max_s``. Uptime earns it back: every
``credit_s`` that the process stays up halves the delay again (never below
``initial_s``; off by default), and ``reset_after_s`` of uptime resets it
outright. So a
process that crashes in a tight loop is slowed down, and one that ran a while
between crashes is restarted promptly, not after the longest delay it ever
reached. The hub paces its shards with it, and ``canistry up`` its core
services.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Restart pacing for one process."""

    initial_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 60.0
    credit_s: float = 0.0
    """Each this many seconds of uptime halve the delay (0: only ``reset_after_s`` counts)."""
    delay_s: float = 0.5
    """The delay the next restart waits."""
    started_at: float | None = None
    retry_at: float | None = None
    _peak_s: float = 0.0

    def __post_init__(self) -> None:
        self.delay_s = self.initial_s

    def alive(self, now: float) -> None:
        """Seen running at ``now``."""
        self.retry_at = None
        if self.started_at is None:
            self.started_at = now
            return
        up = now - self.started_at
        if up >= self.reset_after_s:
            self.delay_s = self.initial_s
        elif self._peak_s and self.credit_s > 0:
            earned = self._peak_s / 2 ** int(up // self.credit_s)
            self.delay_s = max(self.initial_s, min(self.delay_s, earned))

    def dead(self, now: float) -> bool:
        """Seen dead at ``now``; True when it is time to restart it."""
        if self.retry_at is None:
            self.retry_at = now + self.delay_s
        return now >= self.retry_at

    def restarted(self, now: float) -> None:
        self.started_at = now
        self.retry_at = None
        self.delay_s = min(self.delay_s * 2, self.max_s)
        self._peak_s = self.delay_s
