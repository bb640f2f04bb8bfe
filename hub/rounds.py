"""Capacity rounds: read the directory, decide (``hub.capacity``), spawn.

Rounds come from the scheduler's timer, from ``EnsureCapacity`` calls and
from the hub's start; all go through one lock, so two rounds never decide
at once, and a spawn runs as one owned task, so a second round sees it under
way instead of starting another. The spawn task is shielded from callers
that give up (an RPC deadline does not cut a spawn in half); only
:meth:`CapacityRounds.close` cancels it, and the recorded steps let the next
hub resume it.
"""

from __future__ import annotations

import asyncio
import contextlib

from hub import capacity
from hub.registry_client import RegistryClient
from hub.spawn import Spawns
from hub.store import HubStore
from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError

__all__ = ["CapacityRounds"]

log = logs.get_logger(__name__)


class CapacityRounds:
    def __init__(
        self,
        store: HubStore,
        registry: RegistryClient,
        spawns: Spawns,
        *,
        min_shards: int,
        soft_limit: int,
        retry_max_s: float = 30.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.spawns = spawns
        self.min_shards = min_shards
        self.soft_limit = soft_limit
        self.retry_max_s = retry_max_s
        self.rounds = 0
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._spawn_task: asyncio.Task[hub_pb2.ShardRecord] | None = None

    def wake(self) -> None:
        """Ask the background loop for a round soon (never blocks)."""
        self._wake.set()

    async def run(self) -> None:
        """The background loop: one round per wake-up. Run it as an owned task.

        A round that ends in "error" (registry down, spawn abandoned) is
        retried on its own after a delay doubling from 0.5 s up to
        ``retry_max_s``, so a hub that starts before its registry still
        brings up its minimum shards promptly.
        """
        retry_s: float | None = None
        while True:
            if retry_s is None:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), retry_s)
            self._wake.clear()
            try:
                reply = await self.ensure()
            except Exception:  # a bug must not end the loop: log it whole, keep going
                log.exception("capacity_round_crashed")
                reply = hub_pb2.EnsureCapacityReply(action="error")
            log.info("capacity_round", action=reply.action, shard_id=reply.shard_id)
            if reply.action == "error":
                retry_s = min(2 * (retry_s or 0.25), self.retry_max_s)
            else:
                retry_s = None

    def spawn_running(self) -> bool:
        return self._spawn_task is not None and not self._spawn_task.done()

    async def ensure(self) -> hub_pb2.EnsureCapacityReply:
        """One capacity round; waits for the spawn it starts, if any.

        Never raises for a down registry or a failed spawn: the reply's
        action says "error" and ``detail`` why.
        """
        if self.spawn_running():
            return self._in_progress()
        async with self._lock:
            if self.spawn_running():
                return self._in_progress()
            self.rounds += 1
            try:
                directory = await self.registry.list_shards()
            except CanistryError as exc:
                log.warning("capacity_check_failed", error=exc.code, detail=exc.message)
                return hub_pb2.EnsureCapacityReply(action="error", detail=exc.message)
            decision = capacity.decide(
                directory,
                self.store.shards(),
                min_shards=self.min_shards,
                soft_limit=self.soft_limit,
            )
            if decision.action is capacity.Action.ENOUGH:
                return hub_pb2.EnsureCapacityReply(action="enough", detail=decision.reason)
            log.info("capacity_spawn", action=decision.action.value, reason=decision.reason)
            if decision.action is capacity.Action.RESUME and decision.record is not None:
                coro = self.spawns.resume(decision.record)
            else:
                coro = self.spawns.new()
            task = asyncio.create_task(coro, name="hub-spawn")
            # Retrieve the outcome even if every waiter gave up, so nothing is left unread.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._spawn_task = task
        await asyncio.wait({task})
        if task.cancelled():
            return hub_pb2.EnsureCapacityReply(action="error", detail="the hub is stopping")
        error = task.exception()
        if error is not None:
            if not isinstance(error, CanistryError):
                log.error("spawn_crashed", exc_info=error)
                return hub_pb2.EnsureCapacityReply(action="error", detail="spawn failed")
            log.warning("spawn_failed", error=error.code, detail=error.message)
            return hub_pb2.EnsureCapacityReply(action="error", detail=error.message)
        record = task.result()
        self.wake()  # one spawn per round: check again whether more are needed
        return hub_pb2.EnsureCapacityReply(
            action="spawned", shard_id=record.shard_id, detail=decision.reason
        )

    def _in_progress(self) -> hub_pb2.EnsureCapacityReply:
        unfinished = [
            r.shard_id for r in self.store.shards() if r.step in capacity.IN_PROGRESS_STEPS
        ]
        return hub_pb2.EnsureCapacityReply(
            action="spawn_in_progress",
            shard_id=unfinished[0] if unfinished else "",
            detail="a spawn is under way",
        )

    async def close(self) -> None:
        """Cancel a running spawn (its recorded steps let the next hub resume it)."""
        task, self._spawn_task = self._spawn_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
