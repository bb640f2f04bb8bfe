"""Merge concurrent quiz verifications into batched calls, as group commit merges writes.

A :class:`VerifyBatcher` holds the submissions waiting to be graded. When
nothing is in flight, the first one goes out at once, alone: an idle shard
adds no latency. While a batch is in flight, newcomers wait and leave
together when it returns, or at once when ``max_batch`` of them are
waiting. A caller that knows the shard is busy (other submissions are in
progress, so more are about to arrive) may ask to *linger*: then an idle
batcher (one with nothing in flight, including one whose batch has just
landed) waits ``linger_s`` for company before sending, because each call
costs the content service far more than each item in it. A caller that does
not linger never waits for the timer, and takes the lingering ones along.

Each item's answer (a grade, or the error content gave for that item alone)
goes back to its own caller; a batch whose call fails fails every
submission in it with that error, and nothing is recorded for any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from runtime import logs
from runtime.errors import CanistryError
from user_shard.submission import Verdict

__all__ = ["Item", "SendBatch", "VerifyBatcher"]

log = logs.get_logger(__name__)


@dataclass(frozen=True)
class Item:
    """One submission to grade."""

    unit_id: str
    answers: dict[str, str]
    request_id: str = ""
    """The submission's own request id: a batch carries many, one per item."""


#: Sends one batch; returns one grade or error per item, in order.
SendBatch = Callable[[Sequence[Item]], Awaitable[Sequence[Verdict | CanistryError]]]


@dataclass
class _Waiting:
    item: Item
    future: asyncio.Future[Verdict] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class VerifyBatcher:
    """Grades submissions through ``send``, many per call when they arrive together."""

    def __init__(self, send: SendBatch, *, max_batch: int = 256, linger_s: float = 0.002) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if linger_s < 0:
            raise ValueError("linger_s must be >= 0")
        self._send = send
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._waiting: list[_Waiting] = []
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        """The latest caller asked to linger: the shard is busy."""
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches sent (benchmarks and tests read it)."""
        self.items = 0
        """Submissions sent in them."""

    async def verify(
        self, unit_id: str, answers: dict[str, str], *, linger: bool = False
    ) -> Verdict:
        """The grade of one submission. Raises what content said of it, or the batch's error.

        ``linger``: more submissions are on their way; an idle batcher may wait
        ``linger_s`` for them (see the module docstring).
        """
        waiting = _Waiting(Item(unit_id, answers, logs.current_request_id() or ""))
        self._waiting.append(waiting)
        self._busy = linger and self.linger_s > 0
        if len(self._waiting) >= self.max_batch or not (self._in_flight or self._busy):
            self._flush()
        elif not self._in_flight:
            self._linger()
        return await waiting.future

    def _linger(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
        batch = [w for w in batch if not w.future.done()]  # callers that gave up
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._run(batch), name="verify-batch")
        self._in_flight.add(task)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._waiting and not task.cancelled():
            if self._busy:
                self._linger()
            else:
                self._flush()

    async def _run(self, batch: list[_Waiting]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            outcomes = await self._send([w.item for w in batch])
            if len(outcomes) != len(batch):
                raise CanistryError(f"{len(outcomes)} answers to a batch of {len(batch)}")
        except CanistryError as exc:
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(type(exc)(exc.message))  # one object per caller
            return
        except BaseException as exc:  # a bug or cancellation: nobody waits forever
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
            raise
        for w, outcome in zip(batch, outcomes, strict=True):
            if w.future.done():
                continue
            if isinstance(outcome, CanistryError):
                w.future.set_exception(outcome)
            else:
                w.future.set_result(outcome)

    async def close(self) -> None:
        """Fail whatever waits, and stop the batches in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for w in self._waiting:
            if not w.future.done():
                w.future.cancel()
        self._waiting.clear()
