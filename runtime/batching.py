"""Merge concurrent calls into batched calls, as group commit merges writes.

A :class:`Batcher` holds the items waiting to be sent. When nothing is in
flight, the first one goes out at once, alone: an idle caller adds no
latency. While a batch is in flight, newcomers wait and leave together when
it returns, or at once when ``max_batch`` of them are waiting. A caller that
knows more items are on their way (the service is busy) may ask to
*linger*: then an idle batcher (one with nothing in flight, including one
whose batch has just landed) waits ``linger_s`` for company before sending,
because each call costs the peer far more than each item in it. A caller
that does not linger never waits for the timer, and takes the lingering
ones along.

Each item's answer (a result, or the error the peer gave for that item
alone) goes back to its own caller; a batch whose call fails fails every
item in it with that error. Two batchers use it: the shard's grading calls
to content (:mod:`user_shard.batching`) and the gateway's submissions to a
shard (:mod:`gateway.submissions`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from runtime.errors import CanistryError

__all__ = ["Batcher", "SendBatch"]


ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: Sends one batch; returns one result or error per item, in order.
SendBatch = Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT | CanistryError]]]


@dataclass
class _Waiting(Generic[ItemT, ResultT]):
    item: ItemT
    future: asyncio.Future[ResultT] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher(Generic[ItemT, ResultT]):
    """Sends items through ``send``, many per call when they arrive together.

    ``name`` names the tasks that send batches.
    """

    def __init__(
        self,
        send: SendBatch[ItemT, ResultT],
        *,
        max_batch: int = 256,
        linger_s: float = 0.002,
        name: str = "batch",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if linger_s < 0:
            raise ValueError("linger_s must be >= 0")
        self._send = send
        self._name = name
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._waiting: list[_Waiting[ItemT, ResultT]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        """The latest caller asked to linger: more items are on their way."""
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches sent (benchmarks and tests read it)."""
        self.items = 0
        """Items sent in them."""

    @property
    def waiting(self) -> int:
        """Items waiting for a batch to leave."""
        return len(self._waiting)

    async def submit(self, item: ItemT, *, linger: bool = False) -> ResultT:
        """The result of ``item``. Raises what the peer said of it, or the batch's error.

        ``linger``: more items are on their way; an idle batcher may wait
        ``linger_s`` for them (see the module docstring).
        """
        waiting: _Waiting[ItemT, ResultT] = _Waiting(item)
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
        task = asyncio.get_running_loop().create_task(self._run(batch), name=self._name)
        self._in_flight.add(task)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._waiting and not task.cancelled():
            if self._busy:
                self._linger()
            else:
                self._flush()

    async def _run(self, batch: list[_Waiting[ItemT, ResultT]]) -> None:
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
