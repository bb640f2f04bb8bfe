"""The spawn of a shard: a recorded sequence of steps that a new hub can resume.

    ALLOCATED -> IDENTITY_ISSUED -> STARTED -> HEALTHY -> REGISTERED
        \\______________________________________/
                  ABANDONED (process stopped)

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
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from hub.registry_client import RegistryClient
from hub.spawner import Spawner, shard_tls_dir
from hub.store import HubStore
from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError, Unavailable
from runtime.net import free_port
from runtime.process import write_atomically
from runtime.rpc import wait_healthy
from runtime.tls import ClusterCA, Identity, Role, TLSConfig

__all__ = ["IDENTITY_FILE", "SpawnFailed", "Spawns", "ensure_identity", "ensure_port"]

log = logs.get_logger(__name__)

IDENTITY_FILE = "identity.json"

STEP = hub_pb2.SpawnStep


class SpawnFailed(Unavailable):
    """The spawn was undone (ABANDONED); a later round may try a new shard."""

    code = "spawn-failed"


def _now_ms() -> int:
    return int(time.time() * 1000)


async def ensure_port(
    store: HubStore, spawner: Spawner, record: hub_pb2.ShardRecord, host: str = "127.0.0.1"
) -> tuple[hub_pb2.ShardRecord, bool]:
    """Keep the record's port if it is free, else take a new one and save it.

    Returns the (maybe updated) record and whether the address changed, in
    which case the registry must learn the new one.
    """
    if spawner.port_available(record.port):
        return record, False
    moved = hub_pb2.ShardRecord()
    moved.CopyFrom(record)
    moved.port = free_port(host)
    moved.address = f"{host}:{moved.port}"
    await store.put_shard(moved)
    log.warning("shard_port_moved", shard_id=record.shard_id, old=record.port, new=moved.port)
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
    ) -> None:
        """``ca`` issues shard certificates; ``tls`` is the hub's own, for health checks.

        Both None: a plain-text hub whose shards get no certificate (tests only).
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

    async def new(self) -> hub_pb2.ShardRecord:
        """Allocate a new shard and run its spawn to the end. Raises on failure."""
        record = await self.store.allocate_shard(self._allocation)
        log.info("spawn_allocated", shard_id=record.shard_id, port=record.port)
        return await self.resume(record)

    async def resume(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        """Carry ``record`` from its current step to REGISTERED.

        Raises :class:`SpawnFailed` if the shard was abandoned, and
        ``Unavailable`` if the registry could not be reached (the record
        stays HEALTHY and a later call resumes it).
        """
        if record.step == STEP.SPAWN_STEP_ALLOCATED:
            record = await self._issue_identity(record)
        if record.step == STEP.SPAWN_STEP_IDENTITY_ISSUED:
            record = await self._start(record)
        if record.step == STEP.SPAWN_STEP_STARTED:
            record = await self._wait_healthy(record)
        if record.step == STEP.SPAWN_STEP_HEALTHY:
            record = await self._register(record)
        return record

    def _allocation(self, shard_id: str) -> hub_pb2.ShardRecord:
        port = free_port(self.host)
        return hub_pb2.ShardRecord(
            shard_id=shard_id,
            step=STEP.SPAWN_STEP_ALLOCATED,
            address=f"{self.host}:{port}",
            port=port,
            data_dir=str(self.shards_dir / shard_id),
            created_at_ms=_now_ms(),
            template_version=self.policy.template_version,
        )

    async def _advance(
        self, record: hub_pb2.ShardRecord, step: hub_pb2.SpawnStep.ValueType
    ) -> hub_pb2.ShardRecord:
        nxt = hub_pb2.ShardRecord()
        nxt.CopyFrom(record)
        nxt.step = step
        await self.store.put_shard(nxt)
        log.info("spawn_step", shard_id=nxt.shard_id, step=hub_pb2.SpawnStep.Name(step))
        return nxt

    async def _issue_identity(self, record: hub_pb2.ShardRecord) -> hub_pb2.ShardRecord:
        await ensure_identity(self.ca, record)
        # A readable note beside the certificate (the certificate is what counts).
        identity = {
            "shard_id": record.shard_id,
            "identity": Identity(Role.SHARD, record.shard_id).uri,
            "certificate": str(shard_tls_dir(record.data_dir)) if self.ca else None,
            "issued_at": datetime.now(UTC).isoformat(timespec="seconds"),
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
        return await self._advance(record, STEP.SPAWN_STEP_REGISTERED)

    async def _abandon(self, record: hub_pb2.ShardRecord, reason: str) -> NoReturn:
        log.warning("spawn_abandoned", shard_id=record.shard_id, reason=reason)
        await self.spawner.stop(record)
        await self._advance(record, STEP.SPAWN_STEP_ABANDONED)
        raise SpawnFailed(f"{record.shard_id} abandoned: {reason}")
