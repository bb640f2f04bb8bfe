"""A rolling upgrade of the shards to an adopted template, a few at a time.

For each shard (at most ``concurrency`` at once, by id): the supervisor
leaves it alone; it is drained and stopped (SIGTERM: the shard's server
stops taking calls and finishes those in flight before it exits); it is
started on the new template over the same data directory (its store's
migrations run at open); the hub waits until it answers healthy; then the
supervisor watches it again and it serves. A shard that does not answer in
its health deadline is stopped, put back on its old template and started
again, and the rollout stops there: the proposal fails with every shard's
result. Once every shard runs the new template, it is the one new shards
spawn on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hub.registry_client import RegistryClient
from hub.spawn_steps import ensure_port
from hub.spawner import Spawner
from hub.store import HubStore
from hub.supervisor import SUPERVISED_STEPS, Supervisor
from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError, Unavailable

__all__ = ["Rollout"]

log = logs.get_logger(__name__)

#: Waits until a started shard answers healthy; raises (Unavailable) if it does not in time.
Healthy = Callable[[hub_pb2.ShardRecord], Awaitable[None]]


class Rollout:
    """Carries out an adopted ``upgrade_shards`` proposal (a :data:`hub.execution.Upgrade`)."""

    def __init__(
        self,
        store: HubStore,
        spawner: Spawner,
        supervisor: Supervisor,
        healthy: Healthy,
        registry: RegistryClient,
        *,
        concurrency: int = 1,
        poll_s: float = 0.1,
    ) -> None:
        self.registry = registry
        self.poll_s = poll_s
        self.store = store
        self.spawner = spawner
        self.supervisor = supervisor
        self.healthy = healthy
        self.concurrency = max(1, concurrency)

    async def __call__(
        self, proposal: hub_pb2.Proposal
    ) -> tuple[bool, list[hub_pb2.ShardResult], str]:
        target = hub_pb2.AdoptedTemplate(
            python=proposal.action.template,
            version=proposal.action.template_version,
            proposal_id=proposal.id,
        )
        shards = [r for r in self.store.shards() if r.step in SUPERVISED_STEPS]
        results: list[hub_pb2.ShardResult] = []
        for start in range(0, len(shards), self.concurrency):
            batch = shards[start : start + self.concurrency]
            done = await asyncio.gather(*(self._upgrade(r, target) for r in batch))
            results.extend(done)
            failed = [r.shard_id for r in done if not r.ok]
            if failed:
                left = len(shards) - start - len(batch)
                detail = (
                    f"{', '.join(failed)} did not come up on {target.version}: rolled back; "
                    f"the rollout stopped ({left} shards not tried)"
                )
                return False, results, detail
        await self.store.adopt_template(target)
        return True, results, f"{len(results)} shards on {target.version}"

    async def _upgrade(
        self, record: hub_pb2.ShardRecord, target: hub_pb2.AdoptedTemplate
    ) -> hub_pb2.ShardResult:
        shard_id = record.shard_id
        there = record.python == target.python and record.template_version == target.version
        if there:  # moved before a hub restart: its old template is in the record
            old = hub_pb2.AdoptedTemplate(
                python=record.previous_python, version=record.previous_template_version
            )
        else:
            old = hub_pb2.AdoptedTemplate(python=record.python, version=record.template_version)
        await self.supervisor.hold(shard_id)
        try:
            log.info("shard_upgrading", shard_id=shard_id, to=target.version, resumed=there)
            try:
                current = self.store.shard(shard_id) or record
                if there and self.spawner.is_alive(current):
                    await self._until_healthy(current)
                else:
                    await self._restart_on(shard_id, target, previous=old)
                return hub_pb2.ShardResult(
                    shard_id=shard_id, ok=True, detail="upgraded", template_version=target.version
                )
            except (CanistryError, OSError) as exc:
                reason = exc.message if isinstance(exc, CanistryError) else repr(exc)
                log.warning("shard_upgrade_failed", shard_id=shard_id, error=reason)
            try:
                await self._restart_on(shard_id, old, previous=None)
                back = f"rolled back to {old.version}"
            except (CanistryError, OSError) as exc:
                # The supervisor, once it watches the shard again, keeps starting it on
                # its (old) record.
                back = f"rollback not healthy yet: {exc}"
            log.warning("shard_rolled_back", shard_id=shard_id, detail=back)
            return hub_pb2.ShardResult(
                shard_id=shard_id,
                ok=False,
                detail=f"not healthy on {target.version}: {reason}; {back}",
                template_version=old.version,
            )
        finally:
            self.supervisor.release(shard_id)

    async def _restart_on(
        self,
        shard_id: str,
        template: hub_pb2.AdoptedTemplate,
        *,
        previous: hub_pb2.AdoptedTemplate | None,
    ) -> None:
        """Drain and stop the shard, start it on ``template`` over its data, wait healthy.

        ``previous`` is recorded as what to roll back to (None: a rollback itself)."""
        current = self.store.shard(shard_id)
        if current is None:
            raise OSError(f"no record of {shard_id}")
        await self.spawner.stop(current)  # SIGTERM: it drains, then exits

        def retemplate(r: hub_pb2.ShardRecord) -> None:
            r.python = template.python
            r.template_version = template.version
            if previous is not None:
                r.previous_python = previous.python
                r.previous_template_version = previous.version

        record = await self.store.update_shard(shard_id, retemplate)
        record, moved = await ensure_port(self.store, self.spawner, record)
        if moved and record.step == hub_pb2.SPAWN_STEP_REGISTERED:
            await self.registry.register(shard_id, record.address)
        pid = await self.spawner.start(record)

        def started(r: hub_pb2.ShardRecord) -> None:
            r.pid = pid

        record = await self.store.update_shard(shard_id, started)
        await self._until_healthy(record)

    async def _until_healthy(self, record: hub_pb2.ShardRecord) -> None:
        """:attr:`healthy`, failing at once if the process exits before it answers."""
        waiting = asyncio.ensure_future(self.healthy(record))
        try:
            while not waiting.done():
                if not self.spawner.is_alive(record):
                    raise Unavailable(f"{record.shard_id} exited before it answered healthy")
                await asyncio.wait([waiting], timeout=self.poll_s)
            waiting.result()
        finally:
            if not waiting.done():
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
