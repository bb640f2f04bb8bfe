"""The background task that prunes idempotent replies past their retention.

Every submission with an idempotency key leaves one ``StoredReply``; without
pruning they would fill the store. Each sweep deletes the replies older than
the retention, oldest first, through the expiry index, a small batch per
transaction so submissions never wait long behind it. The loop survives any
error (a full store, a bug): it logs it and sweeps again next interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from runtime import logs

__all__ = ["ReplySweeper"]

log = logs.get_logger(__name__)


class Prunable(Protocol):
    async def prune_replies(self, before_ms: int, limit: int) -> int: ...


class ReplySweeper:
    """Prunes replies stored more than ``retention_ms`` before ``clock()`` (wall ms)."""

    def __init__(
        self,
        store: Prunable,
        *,
        retention_ms: int,
        interval_s: float,
        batch: int,
        clock: Callable[[], int],
    ) -> None:
        self._store = store
        self._retention_ms = retention_ms
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock
        self.pruned = 0
        """Replies deleted since this sweeper was made."""
        self.failures = 0
        """Sweeps that ended in an error."""

    async def sweep(self) -> int:
        """Delete every reply older than the retention now; return how many.

        Raises what the store raises (StoreFull, Unavailable); what was
        deleted by the batches before stays deleted.
        """
        before_ms = self._clock() - self._retention_ms
        total = 0
        while True:
            deleted = await self._store.prune_replies(before_ms, self._batch)
            total += deleted
            self.pruned += deleted
            if deleted < self._batch:
                break
        if total:
            log.info("idempotency_pruned", replies=total)
        return total

    async def run(self) -> None:
        """Sweep, then wait an interval, until cancelled. Never ends on its own."""
        while True:
            try:
                await self.sweep()
            except Exception:
                self.failures += 1
                log.exception("idempotency_sweep_failed")
            await asyncio.sleep(self._interval_s)
