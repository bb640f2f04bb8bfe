"""Token buckets per client address. Pure: the clock is passed in.

Each worker keeps its own buckets in memory (no cross-process state: with N
workers a client may get up to N times the rate, which still bounds it). The
table holds at most ``max_clients`` buckets; the least recently seen goes
first, and a bucket forgotten that way comes back full, which errs towards
letting a client in.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TokenBuckets"]


@dataclass
class _Bucket:
    tokens: float
    at_s: float


class TokenBuckets:
    """``rate`` tokens a second up to ``burst``, per key; :meth:`take` spends one."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate > 0, burst >= 1 and max_clients >= 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Spend a token of ``key``'s bucket: 0.0 if there was one, else the seconds until
        there will be (nothing is spent then)."""
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.at_s)
            bucket = _Bucket(min(float(self.burst), bucket.tokens + elapsed * self.rate), now)
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def retry_after_s(self, wait_s: float) -> int:
        """``wait_s`` as a ``Retry-After`` value: whole seconds, at least 1."""
        return max(1, math.ceil(wait_s))

    def __len__(self) -> int:
        return len(self._buckets)
