"""Supervision of the shards the hub created: restart the dead, keep the registry current.

Every ``interval_s`` the supervisor looks at each REGISTERED or WARM shard.
One that runs is left alone (after a hub restart that is how running shards
are re-adopted: no second process). One that died is started again on its
same data directory, paced by :class:`~hub.backoff.Backoff`; its record
counts the restart and keeps the delay waited before it. If its old port was
taken meanwhile it gets a new one and the registry learns the new address (a
warm shard's is told when it is promoted); registrations that fail are
retried every ``register_retry_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hub.backoff import Backoff
from hub.registry_client import RegistryClient
from hub.spawn import ensure_identity, ensure_port
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
    ) -> None:
        self.store = store
        self.spawner = spawner
        self.registry = registry
        self.ca = ca
        """Renews a restarted shard's certificate if it nears its end."""
        self.interval_s = interval_s
        self.register_retry_s = register_retry_s
        self.clock = clock
        self.ticks = 0
        """Passes completed (tests wait on it instead of sleeping)."""
        self._backoff: dict[str, Backoff] = {}
        self._to_register: dict[str, float] = {}
        """shard id -> clock time of the next registration attempt."""

    def register_all(self) -> None:
        """Re-register every REGISTERED shard (at hub start: the registry may lag behind)."""
        for record in self.store.shards():
            if record.step == hub_pb2.SPAWN_STEP_REGISTERED:
                self._to_register[record.shard_id] = 0.0

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except CanistryError as exc:
                log.warning("supervise_failed", error=exc.code, detail=exc.message)
            except Exception:  # a bug must not end supervision: log it whole, keep going
                log.exception("supervise_crashed")
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> None:
        """One pass over the shards."""
        now = self.clock()
        for record in self.store.shards():
            if record.step not in SUPERVISED_STEPS:
                continue
            backoff = self._backoff.setdefault(record.shard_id, Backoff())
            if self.spawner.is_alive(record):
                if backoff.started_at is None:  # first sight: after a hub restart, re-adopted
                    log.info("shard_supervised", shard_id=record.shard_id, pid=record.pid)
                backoff.alive(now)
            elif backoff.dead(now):
                await self._restart(record, backoff, now)
        for shard_id, due in list(self._to_register.items()):
            if now >= due:
                await self._register(shard_id, now)
        self.ticks += 1

    async def _restart(self, record: hub_pb2.ShardRecord, backoff: Backoff, now: float) -> None:
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
                return
        running: int = pid

        def restart(r: hub_pb2.ShardRecord) -> None:
            r.pid = running
            if not adopted:
                r.restarts += 1
                r.restart_delay_s = waited
                r.restarted_at_ms = int(time.time() * 1000)

        # Only its own fields: a promotion may have changed the step meanwhile.
        restarted = await self.store.update_shard(record.shard_id, restart)
        log.info(
            "shard_restarted",
            shard_id=record.shard_id,
            pid=running,
            restarts=restarted.restarts,
            waited_s=waited,
            next_delay_s=backoff.delay_s,
        )

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
