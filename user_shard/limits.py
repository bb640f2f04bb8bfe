"""Daily limits: at most N attempts and M tokens earned per user per UTC day.

Pure rules on :class:`~protos.shard_pb2.DailyStats`; the caller passes the
time (``now_ms``), so tests run on a fake clock. A day's stats reset when
the UTC date changes; nothing runs at midnight, the next write rolls over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from protos import shard_pb2
from runtime.errors import DailyLimitExceeded

__all__ = ["DailyLimits", "today", "utc_day"]


_DAY_MS = 86_400_000
#: The last day asked for: ``(its first ms, its text)``. Every submission asks for
#: today several times, and formatting a date costs more than the rest of a check.
_last_day: tuple[int, str] = (-_DAY_MS, "")


def utc_day(now_ms: int) -> str:
    """The UTC date of ``now_ms`` as ``YYYY-MM-DD``."""
    global _last_day
    start, text = _last_day
    if start <= now_ms < start + _DAY_MS:
        return text
    text = datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y-%m-%d")
    _last_day = (now_ms - now_ms % _DAY_MS, text)  # UTC days have no leap seconds in ms
    return text


def today(stats: shard_pb2.DailyStats, now_ms: int) -> shard_pb2.DailyStats:
    """``stats`` if they are for the day of ``now_ms``, else fresh zero stats for that day.

    Never mutates ``stats``.
    """
    day = utc_day(now_ms)
    if stats.day == day:
        return stats
    return shard_pb2.DailyStats(day=day)


@dataclass(frozen=True)
class DailyLimits:
    """The per-user daily limits, fixed at cluster init."""

    attempts: int
    tokens: int

    def attempts_left(self, stats: shard_pb2.DailyStats) -> int:
        return max(0, self.attempts - stats.attempts)

    def check_attempt(self, stats: shard_pb2.DailyStats) -> None:
        """Raise :class:`DailyLimitExceeded` if ``stats`` has no attempt left."""
        if stats.attempts >= self.attempts:
            raise DailyLimitExceeded(f"daily attempt limit of {self.attempts} reached")

    def check_earning(self, stats: shard_pb2.DailyStats, reward: int) -> None:
        """Raise :class:`DailyLimitExceeded` if earning ``reward`` would pass the token limit."""
        if stats.earned + reward > self.tokens:
            raise DailyLimitExceeded(
                f"earning {reward} would pass the daily limit of {self.tokens} tokens"
                f" ({stats.earned} earned today)"
            )
