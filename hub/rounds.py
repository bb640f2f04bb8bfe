"""Capacity rounds: read the directory, decide (``hub.capacity``), act.

Rounds come from the scheduler's timer, from ``EnsureCapacity`` calls and
from the hub's start; all go through one lock, so two rounds never decide
at once, and a spawn runs as one owned task, so a second round sees it under
way instead of starting another. The spawn task is shielded from callers
that give up (an RPC deadline does not cut a spawn in half); only
:meth:`CapacityRounds.close` cancels it, and the recorded steps let the next
hub resume it.

A promotion (a warm shard registered) happens inside the round, under the
lock, even while a spawn runs, and wakes the loop so that the pool is
refilled. A caller waits for a spawn that adds capacity, but never for a
refill of the warm pool: only the background loop follows that one to its
end.

No new shard is allocated once ``max_shards`` exist (abandoned spawns not
counted): the round answers "at_limit" and logs ``shard_limit_reached`` once
(again only after the count fell below the limit). Resuming an unfinished
spawn and promoting a warm shard still happen: neither adds a shard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from hub import capacity
from hub.clock import Clock, wall_clock_ms
from hub.registry_client import RegistryClient
from hub.spawn_steps import Spawns
from hub.store import HubStore
from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError

__all__ = ["CapacityRounds", "shard_count"]

log = logs.get_logger(__name__)


def shard_count(records: list[hub_pb2.ShardRecord]) -> int:
    """Shards that count against ``max_shards``: every one created and not abandoned."""
    return sum(1 for r in records if r.step != hub_pb2.SPAWN_STEP_ABANDONED)


class CapacityRounds:
    def __init__(
        self,
        store: HubStore,
        registry: RegistryClient,
        spawns: Spawns,
        *,
        min_shards: int,
        soft_limit: int,
        warm_pool: int = 0,
        is_alive: Callable[[hub_pb2.ShardRecord], bool] = lambda record: True,
        retry_max_s: float = 30.0,
        max_shards: int = 0,
        clock: Clock = wall_clock_ms,
    ) -> None:
        """``is_alive`` tells whether a shard's process runs (a warm one is promoted only then).

        ``max_shards`` (0: no limit) is the most shards ever allocated; ``clock``
        stamps a promotion's decision (wall ms).
        """
        self.store = store
        self.registry = registry
        self.spawns = spawns
        self.min_shards = min_shards
        self.soft_limit = soft_limit
        self.warm_pool = warm_pool
        self.is_alive = is_alive
        self.retry_max_s = retry_max_s
        self.max_shards = max_shards
        self.clock = clock
        self.rounds = 0
        self._limit_logged = False
        self.limit_warnings = 0
        """Times ``shard_limit_reached`` was logged (once per time the limit is hit)."""
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._looping = False
        self._spawn_task: asyncio.Task[hub_pb2.ShardRecord] | None = None

    def wake(self) -> None:
        """Ask the background loop for a round soon (never blocks)."""
        self._wake.set()

    def idle(self) -> bool:
        """No round under way or asked for, and no spawn running."""
        busy = self._looping or self._lock.locked() or self.spawn_running()
        return not (busy or self._wake.is_set())

    async def run(self) -> None:
        """The background loop: one round per wake-up. Run it as an owned task.

        It follows any spawn under way to its end (a refill of the warm pool
        has no other waiter) and wakes again after it.

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
            self._looping = True
            try:
                reply = await self.ensure()
                if self.spawn_running():  # a refill, or a spawn a caller started: see it end
                    reply = await self._follow_spawn()
            except Exception:  # a bug must not end the loop: log it whole, keep going
                log.exception("capacity_round_crashed")
                reply = hub_pb2.EnsureCapacityReply(action="error")
            finally:
                self._looping = False
            log.info("capacity_round", action=reply.action, shard_id=reply.shard_id)
            if reply.action == "error":
                retry_s = min(2 * (retry_s or 0.25), self.retry_max_s)
            else:
                retry_s = None

    def spawn_running(self) -> bool:
        return self._spawn_task is not None and not self._spawn_task.done()

    async def ensure(self) -> hub_pb2.EnsureCapacityReply:
        """One capacity round; waits for a spawn it starts for capacity, not for a refill.

        Never raises for a down registry or a failed spawn: the reply's
        action says "error" and ``detail`` why.
        """
        async with self._lock:
            self.rounds += 1
            try:
                directory = await self.registry.list_shards()
            except CanistryError as exc:
                log.warning("capacity_check_failed", error=exc.code, detail=exc.message)
                return hub_pb2.EnsureCapacityReply(action="error", detail=exc.message)
            records = self.store.shards()
            ready = {
                r.shard_id
                for r in records
                if r.step == hub_pb2.SPAWN_STEP_WARM and self.is_alive(r)
            }
            decision = capacity.decide(
                directory,
                records,
                min_shards=self.min_shards,
                soft_limit=self.soft_limit,
                warm_pool=self.warm_pool,
                ready=ready,
                spawn_running=self.spawn_running(),
            )
            action = decision.action
            if action is capacity.Action.ENOUGH:
                return hub_pb2.EnsureCapacityReply(action="enough", detail=decision.reason)
            if action is capacity.Action.IN_PROGRESS:
                return self._in_progress()
            new = action in (capacity.Action.SPAWN, capacity.Action.FILL)
            if new and self._at_limit(records, decision.reason):
                return hub_pb2.EnsureCapacityReply(
                    action="at_limit", detail=f"{self.max_shards} shards, the most allowed"
                )
            log.info("capacity_spawn", action=action.value, reason=decision.reason)
            if action is capacity.Action.PROMOTE and decision.record is not None:
                return await self._promote(decision.record, decision.reason)
            if action is capacity.Action.RESUME and decision.record is not None:
                coro = self.spawns.resume(decision.record)
            else:
                coro = self.spawns.new(warm=action is capacity.Action.FILL)
            task = asyncio.create_task(coro, name="hub-spawn")
            # Retrieve the outcome even if every waiter gave up, so nothing is left unread.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._spawn_task = task
            if action is capacity.Action.FILL:
                self.wake()  # the loop follows it, whoever started it
                return hub_pb2.EnsureCapacityReply(action="warming", detail=decision.reason)
        return await self._outcome(task, decision.reason)

    def _at_limit(self, records: list[hub_pb2.ShardRecord], reason: str) -> bool:
        """Whether a new shard would pass ``max_shards``; logs it once per time it is hit."""
        count = shard_count(records)
        if not self.max_shards or count < self.max_shards:
            self._limit_logged = False
            return False
        if not self._limit_logged:
            self._limit_logged = True
            self.limit_warnings += 1
            log.warning(
                "shard_limit_reached",
                shards=count,
                max_shards=self.max_shards,
                wanted=reason,
                detail="no more shards are spawned; registrations past capacity get no-capacity",
            )
        return True

    async def _promote(
        self, record: hub_pb2.ShardRecord, reason: str
    ) -> hub_pb2.EnsureCapacityReply:
        decided_at_ms = self.clock()
        try:
            promoted = await self.spawns.promote(record, decided_at_ms=decided_at_ms)
        except CanistryError as exc:
            log.warning("promote_failed", shard_id=record.shard_id, error=exc.code)
            self.wake()  # capacity is still short: the next round spawns cold
            return hub_pb2.EnsureCapacityReply(
                action="error", shard_id=record.shard_id, detail=exc.message
            )
        self.wake()  # refill the pool, and check whether one more is needed
        return hub_pb2.EnsureCapacityReply(
            action="promoted", shard_id=promoted.shard_id, detail=reason
        )

    async def _follow_spawn(self) -> hub_pb2.EnsureCapacityReply:
        """Wait for the spawn task under way, if any, and say how it ended."""
        task = self._spawn_task
        if task is None:
            return hub_pb2.EnsureCapacityReply(action="enough")
        return await self._outcome(task, "followed by the capacity loop")

    async def _outcome(
        self, task: asyncio.Task[hub_pb2.ShardRecord], reason: str
    ) -> hub_pb2.EnsureCapacityReply:
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
        action = "warmed" if record.step == hub_pb2.SPAWN_STEP_WARM else "spawned"
        return hub_pb2.EnsureCapacityReply(action=action, shard_id=record.shard_id, detail=reason)

    def _in_progress(self) -> hub_pb2.EnsureCapacityReply:
        unfinished = [r.shard_id for r in self.store.shards() if capacity.unfinished(r)]
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
