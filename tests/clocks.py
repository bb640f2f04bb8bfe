"""A fake wall clock for tests: services take ``clock`` callables returning ms."""

from __future__ import annotations


class WallClock:
    """Returns ``now_ms``; a test moves it with :meth:`advance` instead of sleeping."""

    def __init__(self, now_ms: int = 1_800_000_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)
