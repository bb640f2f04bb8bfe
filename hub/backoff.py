"""When to restart a crashed shard, pure (time is passed in).

A shard seen dead is restarted after a delay that starts at 0.5 s and doubles
with each restart up to 30 s; once a shard has stayed up for 60 s the delay
is back to 0.5 s.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Restart pacing for one shard."""

    initial_s: float = 0.5
    max_s: float = 30.0
    reset_after_s: float = 60.0
    delay_s: float = 0.5
    started_at: float | None = None
    retry_at: float | None = None

    def alive(self, now: float) -> None:
        """Seen running at ``now``."""
        self.retry_at = None
        if self.started_at is None:
            self.started_at = now
        elif now - self.started_at >= self.reset_after_s:
            self.delay_s = self.initial_s

    def dead(self, now: float) -> bool:
        """Seen dead at ``now``; True when it is time to restart it."""
        if self.retry_at is None:
            self.retry_at = now + self.delay_s
        return now >= self.retry_at

    def restarted(self, now: float) -> None:
        self.started_at = now
        self.retry_at = None
        self.delay_s = min(self.delay_s * 2, self.max_s)
