"""Showing a run as it goes: a live progress bar (rich) on a terminal, plain lines in a log.

Both read the :class:`~canistry.loadtest._stats.Tally` and never write to
it. :class:`Bar` redraws in place from the run's own event loop (no refresh
thread), and lets other output (the first note of each failure) print above
it; :class:`Lines` prints one line per interval, which reads well in a file
or a CI log.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from canistry.loadtest._stats import Tally

__all__ = ["Bar", "Lines", "Phase", "View"]

#: How often the bar is redrawn, and the most redraws of one phase (a day's worth).
BAR_REFRESH_S = 0.25
MAX_REDRAWS = 24 * 3600 * 4


@dataclass(frozen=True)
class Phase:
    """One phase of the run as shown: its name, and how far it is out of ``total``."""

    label: str
    total: float
    done: Callable[[], float]
    unit: str
    """What ``total`` counts: ``users`` or ``s``."""


class View:
    """How progress is shown; :meth:`follow` runs until ``finished`` is set."""

    notes: TextIO | None = None
    """Where the run's other messages go while this view shows a phase."""

    async def follow(self, phase: Phase, tally: Tally, finished: asyncio.Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Leave the terminal as it was; idempotent."""


def _stats(tally: Tally, rate: float) -> str:
    return (
        f"{tally.requests:>10,} requests  {rate:9.1f} req/s  "
        f"{tally.errors:,} errors  {tally.limited:,} 429s"
    )


async def _tick(finished: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``finished``; True while the phase goes on."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), seconds)
    return not finished.is_set()


class Lines(View):
    """A progress line every ``interval_s`` on ``out``."""

    def __init__(self, out: TextIO, interval_s: float) -> None:
        self.out = out
        self.notes = out
        self.interval_s = interval_s

    async def follow(self, phase: Phase, tally: Tally, finished: asyncio.Event) -> None:
        t0 = last_t = time.monotonic()
        last_n = tally.requests
        for _ in range(MAX_REDRAWS):
            if not await _tick(finished, self.interval_s):
                return
            now, n = time.monotonic(), tally.requests
            rate = (n - last_n) / (now - last_t) if now > last_t else 0.0
            last_n, last_t = n, now
            print(f"  {phase.label} {now - t0:7.1f} s  {_stats(tally, rate)}",
                  file=self.out, flush=True)  # fmt: skip


class _ConsoleNotes:
    """A text stream that prints through a rich console, above its live bar."""

    def __init__(self, console: object) -> None:
        self._console = console

    def write(self, text: str) -> int:
        self._console.print(text, end="", markup=False, highlight=False)  # type: ignore[attr-defined]
        return len(text)

    def flush(self) -> None:
        pass


class Bar(View):
    """A live bar per phase (rich): how far, requests, rate, errors and 429s."""

    def __init__(self, out: TextIO, *, force_terminal: bool | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=out, force_terminal=force_terminal, highlight=False)
        self.progress = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[where]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            auto_refresh=False,
        )
        self.notes = _ConsoleNotes(self.console)  # type: ignore[assignment]
        self._started = False

    async def follow(self, phase: Phase, tally: Tally, finished: asyncio.Event) -> None:
        if not self._started:
            self.progress.start()
            self._started = True
        task = self.progress.add_task(phase.label, total=phase.total, where="", stats="")
        last_n, last_t = tally.requests, time.monotonic()
        rate = 0.0
        for _ in range(MAX_REDRAWS):
            going = await _tick(finished, BAR_REFRESH_S)
            now, n = time.monotonic(), tally.requests
            if now - last_t >= 1.0 or not going:
                rate = (n - last_n) / (now - last_t) if now > last_t else 0.0
                last_n, last_t = n, now
            done = min(phase.done(), phase.total)
            shown = (
                f"{done:,.0f}/{phase.total:,.0f}"
                if phase.unit == "users"
                else f"{done:.1f}/{phase.total:g}"
            )
            self.progress.update(
                task,
                completed=done,
                where=f"{shown} {phase.unit}",
                stats=f"{tally.requests:,} req {rate:,.0f}/s  {tally.errors:,} err "
                f"{tally.limited:,}x429",
            )
            self.progress.refresh()
            if not going:
                return

    def close(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False
