"""The spawn of a shard: a recorded sequence of steps that a new hub can resume.

    ALLOCATED -> IDENTITY_ISSUED -> STARTED -> HEALTHY -> REGISTERED
                                                  |            ^
                                                  `-> WARM ----'   (warm pool; promoted)

    any step before REGISTERED -> ABANDONED (process stopped)

A shard spawned for the warm pool (``record.warm``) stops at WARM: running,
healthy, supervised, but unknown to the registry, so it gets no users. A
capacity round promotes it: one health check and one registration, which is
why a warm shard serves within milliseconds of the decision where a cold one
takes a process start.

Issuing the identity writes the shard's certificate, signed by the cluster
CA the hub holds, into ``<data_dir>/tls``: it is what lets the shard ask for
allowance and verify quizzes, and only shards the hub created get one.

Each step is committed before the next begins, so a hub that dies mid-spawn
finds the record where it stopped and carries on from there: a process that
is already running is adopted, never started twice. A shard that cannot get
healthy within the start timeout is stopped and ABANDONED. A registry that
cannot be reached leaves the record at HEALTHY, to be resumed by the next
capacity round.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from hub import capacity
from hub.clock import Clock, wall_clock_ms
from hub.registry_client import RegistryClient
from hub.spawner import PlacingSpawner, Spawner, shard_tls_dir
from hub.store import HubStore
from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError, Unavailable
from runtime.files import write_atomically
from runtime.net import free_port
from runtime.rpc import wait_healthy
from runtime.tls import ClusterCA, Identity, Role, TLSConfig

__all__ = [
    "IDENTITY_FILE",
    "AfterStep",
    "SpawnFailed",
    "Spawns",
    "ensure_identity",
    "ensure_port",
]

#: How long a warm shard may take to answer the health check that precedes its promotion.
PROMOTE_HEALTH_TIMEOUT_S = 3.0

log = logs.get_logger(__name__)

IDENTITY_FILE = "identity.json"

STEP = hub_pb2.SpawnStep


class SpawnFailed(Unavailable):
    """The spawn was undone (ABANDONED); a later round may try a new shard."""

    code = "spawn-failed"


#: Called with the record each time a spawn has committed a step (ALLOCATED included),
#: before the next one begins. A test hook: one that blocks holds the spawn right there.
AfterStep = Callable[[hub_pb2.ShardRecord], Awaitable[None]]


async def ensure_port(
    store: HubStore, spawner: Spawner, record: hub_pb2.ShardRecord, host: str = "127.0.0.1"
) -> tuple[hub_pb2.ShardRecord, bool]:
    """Keep the record's port if it is free, else take a new one and save it.

    Returns the (maybe updated) record and whether the address changed, in
    which case the registry must learn the new one.
    """
    if spawner.port_available(record.port):
        return record, False
    port = free_port(host)

    def move(r: hub_pb2.ShardRecord) -> None:
        r.port, r.address = port, f"{host}:{port}"

    await store.update_shard(record.shard_id, move)
    moved = hub_pb2.ShardRecord()
    moved.CopyFrom(record)
    move(moved)
    log.warning("shard_port_moved", shard_id=record.shard_id, old=record.port, new=port)
    return moved, True


async def ensure_identity(ca: ClusterCA | None, record: hub_pb2.ShardRecord) -> None:
    """Give the shard a current certificate of the cluster CA in its ``tls`` directory.

    A certificate that is still good is kept; one near its end, or from
    another CA, is issued again. Without a CA (a plain-text hub, tests only)
    this does nothing.
    """
    if ca is None:
        return
    identity = Identity(Role.SHARD, record.shard_id)
    await asyncio.to_thread(ca.ensure, identity, shard_tls_dir(record.data_dir))


class Spawns:
    """Runs spawns for one hub; the caller makes sure only one runs at a time."""

    def __init__(
        self,
        store: HubStore,
        spawner: Spawner,
        registry: RegistryClient,
        *,
        shards_dir: Path,
        policy: hub_pb2.HubConfig,
        ca: ClusterCA | None = None,
        tls: TLSConfig | None = None,
        host: str = "127.0.0.1",
        register_attempts: int = 3,
        after_step: AfterStep | None = None,
        promote_timeout_s: float = PROMOTE_HEALTH_TIMEOUT_S,
        clock: Clock = wall_clock_ms,
    ) -> None:
        """``ca`` issues shard certificates; ``tls`` is the hub's own, for health checks.

        Both None: a plain-text hub whose shards get no certificate (tests only).
        ``after_step`` is awaited after each committed step (see :data:`AfterStep`);
        ``clock`` stamps the records (wall ms).
        """
        self.store = store
        self.spawner = spawner
        self.registry = registry
        self.shards_dir = shards_dir
        self.policy = policy
        self.ca = ca
        self.tls = tls
        self.host = host
        self.register_attempts = register_attempts
        self.after_step = after_step
        self.promote_timeout_s = promote_timeout_s
        self.clock = clock

    async def new(self, *, warm: bool = False) -> hub_pb2.ShardRecord:
        """Allocate a new shard and run its spawn to the end (WARM if ``warm``).

        Raises on failure, as :meth:`resume`.
        """
        record = await self.store.allocate_shard(lambda shard_id: self._allocation(shard_id, warm))
        log.info("spawn_allocated", shard_id=record.shard_id, port=record.port, warm=warm)
        await self._stepped(record)
        return await self.resume(record)

    async def promote(
        self, record: hub_pb2.ShardRecord, *, decided_at_ms: int
    ) -> hub_pb2.ShardRecord:
        """Move the WARM shard ``record`` into service: check that it answers, register it.

        The decision is recorded first (``decided_at_ms``), so a hub that dies
        halfway finishes the promotion on restart (:meth:`resume`). Raises
        :class:`SpawnFailed` if the shard does not answer (it is stopped and
        ABANDONED, so the next round spawns cold), and ``Unavailable`` if the
        registry cannot be reached (the promotion stays under way).
        """

        def decide(r: hub_pb2.ShardRecord) -> None:
            r.decided_at_ms = decided_at_ms

        return await self._finish_promotion(await self.store.update_shard(record.shard_id, decide))

    async def _finish_promotion(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        try:
            await wait_healthy(
                record.address,
                timeout_s=self.promote_timeout_s,
                tls=self.tls,
                server_role=Role.SHARD,
            )
        except Unavailable as exc:
            await self._abandon(record, f"warm shard not healthy: {exc}")
        await self._register_with_retries(record)
        registered_at = self.clock()

        def registered(r: hub_pb2.ShardRecord) -> None:
            r.step, r.registered_at_ms = STEP.SPAWN_STEP_REGISTERED, registered_at

        # Only these fields: the supervisor may have restarted it meanwhile (a new pid).
        promoted = await self.store.update_shard(record.shard_id, registered)
        log.info(
            "shard_promoted",
            shard_id=record.shard_id,
            address=promoted.address,
            ms=registered_at - promoted.decided_at_ms,
        )
        return promoted

    async def resume(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        """Carry ``record`` from its current step to REGISTERED (WARM for a warm spawn).

        A WARM record whose promotion was decided is registered.

        Raises :class:`SpawnFailed` if the shard was abandoned, and
        ``Unavailable`` if the registry could not be reached (the record
        stays HEALTHY and a later call resumes it).
        """
        if capacity.promoting(record):
            return await self._finish_promotion(record)
        if record.step == STEP.SPAWN_STEP_ALLOCATED:
            record = await self._issue_identity(record)
        if record.step == STEP.SPAWN_STEP_IDENTITY_ISSUED:
            record = await self._start(record)
        if record.step == STEP.SPAWN_STEP_STARTED:
            record = await self._wait_healthy(record)
        if record.step == STEP.SPAWN_STEP_HEALTHY:
            if record.warm:
                record = await self._advance(record, STEP.SPAWN_STEP_WARM)
            else:
                record = await self._register(record)
        return record

    def _allocation(self, shard_id: str, warm: bool) -> hub_pb2.ShardRecord:
        address, port = self._place(shard_id)
        now = self.clock()
        # New shards spawn on the template of the last upgrade stakers adopted, if any.
        adopted = self.store.adopted_template() or hub_pb2.AdoptedTemplate(
            version=self.policy.template_version
        )
        return hub_pb2.ShardRecord(
            python=adopted.python,
            shard_id=shard_id,
            step=STEP.SPAWN_STEP_ALLOCATED,
            address=address,
            port=port,
            data_dir=str(self.shards_dir / shard_id),
            created_at_ms=now,
            template_version=adopted.version,
            warm=warm,
            # A cold spawn is decided now; a warm one when it is promoted.
            decided_at_ms=0 if warm else now,
        )

    def _place(self, shard_id: str) -> tuple[str, int]:
        """Where the new shard will serve: the spawner says if it places shards itself
        (containers, each reached by its own name), else a free port on ``host``."""
        if isinstance(self.spawner, PlacingSpawner):
            return self.spawner.place(shard_id)
        port = free_port(self.host)
        return f"{self.host}:{port}", port

    async def _advance(
        self, record: hub_pb2.ShardRecord, step: hub_pb2.SpawnStep.ValueType
    ) -> hub_pb2.ShardRecord:
        nxt = hub_pb2.ShardRecord()
        nxt.CopyFrom(record)
        nxt.step = step
        await self.store.put_shard(nxt)
        log.info("spawn_step", shard_id=nxt.shard_id, step=hub_pb2.SpawnStep.Name(step))
        await self._stepped(nxt)
        return nxt

    async def _stepped(self, record: hub_pb2.ShardRecord) -> None:
        if self.after_step is not None:
            await self.after_step(record)

    async def _issue_identity(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        await ensure_identity(self.ca, record)
        # A readable note beside the certificate (the certificate is what counts).
        identity = {
            "shard_id": record.shard_id,
            "identity": Identity(Role.SHARD, record.shard_id).uri,
            "certificate": str(shard_tls_dir(record.data_dir)) if self.ca else None,
            "issued_at": datetime.fromtimestamp(self.clock() / 1000, UTC).isoformat(
                timespec="seconds"
            ),
            "template_version": record.template_version,
        }
        path = Path(record.data_dir) / IDENTITY_FILE
        await asyncio.to_thread(write_atomically, path, json.dumps(identity, indent=2) + "\n")
        return await self._advance(record, STEP.SPAWN_STEP_IDENTITY_ISSUED)

    async def _launch(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        """Adopt the shard's running process, or start one; the record gets its pid."""
        pid = self.spawner.adopt(record)
        if pid is None:
            record, _ = await ensure_port(self.store, self.spawner, record, self.host)
            try:
                pid = await self.spawner.start(record)
            except (OSError, CanistryError) as exc:
                await self._abandon(record, f"could not start: {exc}")
        else:
            log.info("spawn_adopted", shard_id=record.shard_id, pid=pid)
        launched = hub_pb2.ShardRecord()
        launched.CopyFrom(record)
        launched.pid = pid
        return launched

    async def _start(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        return await self._advance(await self._launch(record), STEP.SPAWN_STEP_STARTED)

    async def _wait_healthy(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        if not self.spawner.is_alive(record):  # the hub restarted and the process is gone
            relaunched = await self._launch(record)
            if relaunched.pid != record.pid:
                await self.store.put_shard(relaunched)
            record = relaunched
        try:
            await wait_healthy(
                record.address,
                timeout_s=self.policy.shard_start_timeout_s,
                tls=self.tls,
                server_role=Role.SHARD,
            )
        except Unavailable as exc:
            await self._abandon(record, str(exc))
        return await self._advance(record, STEP.SPAWN_STEP_HEALTHY)

    async def _register(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        await self._register_with_retries(record)
        registered = hub_pb2.ShardRecord()
        registered.CopyFrom(record)
        registered.registered_at_ms = self.clock()
        return await self._advance(registered, STEP.SPAWN_STEP_REGISTERED)

    async def _register_with_retries(self, record: hub_pb2.ShardRecord) -> None:
        delay = 0.2
        for attempt in range(1, self.register_attempts + 1):
            try:
                await self.registry.register(record.shard_id, record.address)
                break
            except Unavailable:
                if attempt == self.register_attempts:
                    raise
                await asyncio.sleep(delay)
                delay *= 2

    async def _abandon(self, record: hub_pb2.ShardRecord, reason: str) -> NoReturn:
        log.warning("spawn_abandoned", shard_id=record.shard_id, reason=reason)
        await self.spawner.stop(record)
        await self._advance(record, STEP.SPAWN_STEP_ABANDONED)
        raise SpawnFailed(f"{record.shard_id} abandoned: {reason}")
