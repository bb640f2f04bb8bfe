"""Supervision of the shards the hub created: restart the dead, keep the registry current.

Every ``interval_s`` the supervisor looks at each REGISTERED or WARM shard.
One that runs is left alone (after a hub restart that is how running shards
are re-adopted: no second process). One that died is started again on its
same data directory, paced by :class:`~hub.backoff.Backoff`; its record
counts the restart and keeps the delay waited before it. If its old port was
taken meanwhile it gets a new one and the registry learns the new address (a
warm shard's is told when it is promoted); registrations that fail are
retried every ``register_retry_s``.

Starts are paced by a :class:`~hub.pacing.StartPacer` (a few at a time, each
until the shard answers healthy, and a rate cap) in the order of
:func:`~hub.pacing.start_order`, so that a hub brought back with dozens of
stopped shards does not start them all in one second. A shard found not
running at the first look after the hub started (``canistry up`` stopped the
cluster cleanly, or it went down with the hub) is started at once, without a
backoff wait, and is not counted as a restart: that is a resume, not a crash.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from hub.backoff import Backoff
from hub.clock import Clock, wall_clock_ms
from hub.pacing import StartPacer, start_order
from hub.registry_client import RegistryClient
from hub.spawn_steps import ensure_identity, ensure_port
from hub.spawner import Spawner
from hub.store import HubStore
from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError
from runtime.tls import ClusterCA, TLSError

__all__ = ["SUPERVISED_STEPS", "Supervisor"]

log = logs.get_logger(__name__)

#: Spawns that are over: their process should run, and is restarted if it does not.
SUPERVISED_STEPS = frozenset({hub_pb2.SPAWN_STEP_REGISTERED, hub_pb2.SPAWN_STEP_WARM})


class Supervisor:
    """Restarts crashed shards with backoff. Run :meth:`run` as an owned task."""

    def __init__(
        self,
        store: HubStore,
        spawner: Spawner,
        registry: RegistryClient,
        *,
        ca: ClusterCA | None = None,
        interval_s: float = 0.5,
        register_retry_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        pacer: StartPacer | None = None,
        healthy: Callable[[hub_pb2.ShardRecord], Awaitable[None]] | None = None,
        wall_clock: Clock = wall_clock_ms,
    ) -> None:
        """``healthy`` waits until a started shard answers (raises if it does not in time);
        a start holds its ``pacer`` slot until then. None: a start frees its slot at once.

        ``clock`` (monotonic s) paces backoff and starts; ``wall_clock`` (ms) stamps restarts.
        """
        self.store = store
        self.spawner = spawner
        self.registry = registry
        self.ca = ca
        """Renews a restarted shard's certificate if it nears its end."""
        self.interval_s = interval_s
        self.register_retry_s = register_retry_s
        self.clock = clock
        self.wall_clock = wall_clock
        self.ticks = 0
        """Passes completed (tests wait on it instead of sleeping)."""
        self._backoff: dict[str, Backoff] = {}
        self._to_register: dict[str, float] = {}
        """shard id -> clock time of the next registration attempt."""
        self.pacer = pacer or StartPacer()
        self.healthy = healthy
        self.resumed = 0
        """Shards started at their first look after the hub started (not restarts)."""
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._resume: set[str] = set()
        """Shards not running at the first pass: started as a resume, not a restart."""
        self._waiting = False
        self._wake = asyncio.Event()
        self._held: set[str] = set()
        """Shards an upgrade is restarting itself: left alone until released."""
        self._paused = False

    def pause(self) -> None:
        """Start nothing from now on: the hub is stopping.

        Under ``docker-compose down`` the engine stops the shards while the hub
        drains; a supervisor still running would start them again.
        """
        self._paused = True

    async def hold(self, shard_id: str) -> None:
        """Leave ``shard_id`` alone (an upgrade stops and starts it) once no start of
        this supervisor's is under way for it."""
        self._held.add(shard_id)
        task = self._starting.get(shard_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def release(self, shard_id: str) -> None:
        """Supervise ``shard_id`` again: it is seen as running (not a crash) if it runs."""
        self._held.discard(shard_id)
        backoff = self._backoff.get(shard_id)
        if backoff is not None:
            backoff.started_at = None

    def register_all(self) -> None:
        """Re-register every REGISTERED shard (at hub start: the registry may lag behind)."""
        for record in self.store.shards():
            if record.step == hub_pb2.SPAWN_STEP_REGISTERED:
                self._to_register[record.shard_id] = 0.0

    async def run(self) -> None:
        """Supervise until cancelled; starts under way are cancelled with it."""
        try:
            while True:
                try:
                    await self.tick()
                except CanistryError as exc:
                    log.warning("supervise_failed", error=exc.code, detail=exc.message)
                except Exception:  # a bug must not end supervision: log it whole, keep going
                    log.exception("supervise_crashed")
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._pause_s())
                except TimeoutError:
                    pass
        finally:
            await self.close()

    async def close(self) -> None:
        """Cancel the starts under way (their shards are looked at again by the next hub)."""
        tasks = list(self._starting.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._starting.clear()

    def _pause_s(self) -> float:
        """Until the next pass: sooner while shards wait for a start slot."""
        if self._waiting:
            now = self.clock()
            return max(0.01, min(self.interval_s, self.pacer.next_at(now) - now))
        return self.interval_s

    async def tick(self) -> None:
        """One pass over the shards."""
        if self._paused:
            return
        now = self.clock()
        due: list[hub_pb2.ShardRecord] = []
        for record in self.store.shards():
            if record.step not in SUPERVISED_STEPS or record.shard_id in self._starting:
                continue
            if record.shard_id in self._held:
                continue
            backoff = self._backoff.setdefault(record.shard_id, Backoff())
            if self.spawner.is_alive(record):
                if backoff.started_at is None:  # first sight: after a hub restart, re-adopted
                    log.info("shard_supervised", shard_id=record.shard_id, pid=record.pid)
                backoff.alive(now)
            else:
                if self.ticks == 0 and backoff.started_at is None:
                    self._resume.add(record.shard_id)
                if record.shard_id in self._resume or backoff.dead(now):
                    due.append(record)
        self._waiting = bool(due)
        if due:
            await self._start_due(due, now)
        for shard_id, due_at in list(self._to_register.items()):
            if now >= due_at:
                await self._register(shard_id, now)
        self.ticks += 1

    async def _start_due(self, due: list[hub_pb2.ShardRecord], now: float) -> None:
        """Start what the pacer allows now, in :func:`start_order`; the rest wait."""
        if not self.pacer.may_start(now):
            return
        users: dict[str, int] = {}
        if len(due) > 1:
            try:
                directory = await self.registry.list_shards()
                users = {s.shard_id: s.users for s in directory.shards}
            except CanistryError:
                pass  # recency alone orders them
        for record in start_order(due, users):
            if not self.pacer.may_start(now):
                break
            self.pacer.begin(now)
            # The pacer's own time (monotonic), unlike the line's timestamp, which is
            # taken whenever the busy host gets round to writing it.
            log.info("shard_start_begun", shard_id=record.shard_id, at=round(now, 4))
            backoff = self._backoff[record.shard_id]
            first = record.shard_id in self._resume
            self._resume.discard(record.shard_id)
            task = asyncio.create_task(
                self._start(record, backoff, now, first=first), name=f"start-{record.shard_id}"
            )
            self._starting[record.shard_id] = task
        log.info(
            "shard_starts_paced",
            due=len(due),
            starting=self.pacer.running,
            max_concurrent=self.pacer.max_concurrent,
        )

    async def _start(
        self, record: hub_pb2.ShardRecord, backoff: Backoff, now: float, *, first: bool
    ) -> None:
        """One start holding its pacer slot until the shard answers (or gives up)."""
        try:
            started = await self._restart(record, backoff, now, first=first)
            if started is not None and self.healthy is not None:
                try:
                    await self.healthy(started)
                except CanistryError as exc:
                    log.warning("shard_start_slow", shard_id=record.shard_id, detail=exc.message)
        except Exception:  # a bug must not end supervision: log it whole, keep going
            log.exception("shard_start_crashed", shard_id=record.shard_id)
        finally:
            self.pacer.end()
            self._starting.pop(record.shard_id, None)
            self._wake.set()

    async def _restart(
        self, record: hub_pb2.ShardRecord, backoff: Backoff, now: float, *, first: bool = False
    ) -> hub_pb2.ShardRecord | None:
        """Start ``record``'s process again (or adopt it); the updated record, None if not.

        ``first``: not running at the hub's first look, a resume (not counted, no wait).
        """
        if first:
            log.info("shard_resuming", shard_id=record.shard_id, pid=record.pid)
            self.resumed += 1
            waited = 0.0
            backoff.started_at = now
        else:
            log.warning("shard_dead", shard_id=record.shard_id, pid=record.pid)
            waited = backoff.delay_s
            backoff.restarted(now)
        pid = self.spawner.adopt(record)
        adopted = pid is not None
        if pid is None:
            record, moved = await ensure_port(self.store, self.spawner, record)
            if moved:
                self._to_register[record.shard_id] = 0.0
            try:
                await ensure_identity(self.ca, record)
                pid = await self.spawner.start(record)
            except (OSError, TLSError, CanistryError) as exc:
                log.error("shard_restart_failed", shard_id=record.shard_id, error=repr(exc))
                return None
        running: int = pid
        restarted_at_ms = self.wall_clock()

        def restart(r: hub_pb2.ShardRecord) -> None:
            r.pid = running
            if not adopted and not first:
                r.restarts += 1
                r.restart_delay_s = waited
                r.restarted_at_ms = restarted_at_ms

        # Only its own fields: a promotion may have changed the step meanwhile.
        restarted = await self.store.update_shard(record.shard_id, restart)
        log.info(
            "shard_resumed" if first else "shard_restarted",
            shard_id=record.shard_id,
            pid=running,
            restarts=restarted.restarts,
            waited_s=waited,
            next_delay_s=backoff.delay_s,
        )
        return restarted

    async def _register(self, shard_id: str, now: float) -> None:
        record = self.store.shard(shard_id)
        if record is None or record.step != hub_pb2.SPAWN_STEP_REGISTERED:
            self._to_register.pop(shard_id, None)
            return
        try:
            await self.registry.register(shard_id, record.address)
        except CanistryError as exc:
            self._to_register[shard_id] = now + self.register_retry_s
            log.warning("shard_register_failed", shard_id=shard_id, error=exc.code)
        else:
            self._to_register.pop(shard_id, None)
