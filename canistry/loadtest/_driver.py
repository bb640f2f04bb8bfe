"""Sending one request of the run: timed, counted, backed off on 503, stopped in time.

:class:`RunControl` says when the run is over (its duration, its request
cap, or a signal) and lets a worker wait in a way that ends with the run.
:meth:`Driver.call` sends one request through the typed client and records
its outcome in the :class:`~canistry.loadtest._stats.Tally`; it never lets a
failed request crash a worker, it raises :class:`Failed` (already counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from typing import TextIO, TypeVar

import httpx

from canistry.client import ApiError
from canistry.loadtest._stats import Tally

__all__ = ["Driver", "Failed", "RunControl", "Stopped"]

T = TypeVar("T")

#: Longest wait for one Retry-After, so a worker keeps up with the end of the run.
MAX_BACKOFF_S = 5.0
MIN_BACKOFF_S = 0.05
#: Distinct kinds of failure noted on stderr as they first happen; the rest are only counted.
MAX_NOTES = 20


class Stopped(Exception):
    """The run is over: the worker ends without sending more."""


class Failed(Exception):
    """A request that did not succeed; it is already counted."""

    def __init__(self, status: int | None, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


class RunControl:
    """The run's end (duration, request cap, signal) and its request budget."""

    def __init__(self, max_requests: int) -> None:
        self.stop = asyncio.Event()
        self.max_requests = max_requests
        self.issued = 0
        self.stopped_by: str | None = None
        self.deadline = math.inf
        """Monotonic time at which the run ends ("duration"); set when the load starts."""

    def end(self, reason: str) -> None:
        """End the run; the first reason given is the one reported."""
        if self.stopped_by is None:
            self.stopped_by = reason
        self.stop.set()

    def take(self) -> None:
        """Spend one request of the budget; raises :class:`Stopped` when the run is over."""
        if self.stop.is_set():
            raise Stopped
        # Checked here too, not only by a timer task: a worker whose requests
        # never suspend (an in-process transport) must still see the end.
        if time.monotonic() >= self.deadline:
            self.end("duration")
            raise Stopped
        if self.issued >= self.max_requests:
            self.end("max-requests")
            raise Stopped
        self.issued += 1

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the run ends meanwhile (then :class:`Stopped`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        if self.stop.is_set():
            raise Stopped


class Driver:
    """Sends requests for the workers and counts every one of them."""

    def __init__(self, tally: Tally, control: RunControl, notes: TextIO | None) -> None:
        self.tally = tally
        self.control = control
        self._notes = notes
        self._noted: set[str] = set()

    async def call(
        self,
        op: str,
        send: Callable[[], Awaitable[T]],
        *,
        status_of: Callable[[T], int] | None = None,
        until: float | None = None,
    ) -> T:
        """The answer to ``send()``, counted under ``op`` with the status ``status_of`` gives.

        A 503 (or a 409 for an idempotency key still in flight) with
        ``Retry-After`` is waited out and sent again, each try counted, as
        long as the run lasts and, if given, until the monotonic ``until``.
        Raises :class:`Failed` for any other outcome and :class:`Stopped`
        when the run is over.
        """
        while True:
            self.control.take()
            t0 = time.perf_counter()
            try:
                value = await send()
            except ApiError as exc:
                self.tally.refused(op, _ms(t0), exc.status, exc.code)
                wait = _retry_wait(exc, until)
                if wait is None:
                    if exc.status != 429:
                        self._note(f"{exc.status} {exc.code}", f"{op}: {exc}")
                    raise Failed(exc.status, exc.code) from exc
                self.tally.backoffs += 1
                self.tally.backoff_s += wait
                await self.control.pause(wait)
                continue
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
                self.tally.failed(op, _ms(t0), kind)
                self._note(kind, f"{op}: no response: {kind} {exc}")
                raise Failed(None, kind) from exc
            except Exception as exc:  # an answer we cannot read: count it, keep the run going
                kind = type(exc).__name__
                self.tally.unreadable(op, _ms(t0), kind)
                self._note(f"unreadable {kind}", f"{op}: unreadable answer: {kind} {exc}")
                raise Failed(200, "unreadable") from exc
            self.tally.ok(op, _ms(t0), status_of(value) if status_of is not None else 200)
            return value

    def _note(self, kind: str, text: str) -> None:
        if self._notes is None or kind in self._noted or len(self._noted) >= MAX_NOTES:
            return
        self._noted.add(kind)
        print(f"  first {kind}: {text}", file=self._notes, flush=True)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _retry_wait(error: ApiError, until: float | None) -> float | None:
    retryable = error.status == 503 or (
        error.status == 409 and error.code == "idempotency-key-in-flight"
    )
    if not retryable or error.retry_after is None:
        return None
    wait = max(MIN_BACKOFF_S, min(error.retry_after, MAX_BACKOFF_S))
    if until is not None and time.monotonic() + wait > until:
        return None
    return wait
