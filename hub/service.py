"""The hub service's lifecycle: store, init config, gRPC server, background tasks.

Background work, all owned and cancelled in :meth:`HubService.stop`: the
supervisor loop, the capacity loop, a running spawn, and an APScheduler
interval job that only wakes the capacity loop. ``stop()`` leaves the shards
running (they outlive the hub and are re-adopted by the next one); use
:func:`hub.spawner.stop_shards` to stop them.
"""

from __future__ import annotations

import asyncio

import grpc
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from hub.config import HubSettings, kept_notes, pause_step
from hub.core import Hub
from hub.docker_spawner import DockerSettings, DockerSpawner, make_docker_spawner, pin_image
from hub.fake_spawner import FakeSpawner
from hub.pacing import StartPacer
from hub.registry_client import RegistryClient
from hub.rounds import CapacityRounds
from hub.servicer import ACCESS, HubServicer
from hub.spawn import Spawns
from hub.spawner import ProcessSpawner, ShardTemplate, Spawner
from hub.store import HubStore
from hub.supervisor import Supervisor
from protos import hub_pb2, hub_pb2_grpc
from runtime import logs, rpc
from runtime.lifecycle import Lifecycle
from runtime.tls import ClusterCA, Role

__all__ = ["HubService"]

log = logs.get_logger(__name__)

SERVICE_NAME = hub_pb2.DESCRIPTOR.services_by_name["Hub"].full_name


class HubService(Lifecycle):
    """``async with HubService(settings) as svc:`` serves at ``svc.address``.

    ``spawner`` overrides the backend named in the stored config (tests pass
    a shared :class:`FakeSpawner` so that "shards" outlive a hub restart).
    """

    def __init__(self, settings: HubSettings, *, spawner: Spawner | None = None) -> None:
        self.settings = settings
        self.store = HubStore(settings.data_dir, durable=settings.durable)
        self.policy = hub_pb2.HubConfig()
        """The stored init config (valid after start)."""
        self.config_differences: list[str] = []
        """Policy fields the settings asked to change but the stored config kept."""
        self._spawner_override = spawner
        self.spawner: Spawner | None = None
        self.registry: RegistryClient | None = None
        self.rounds: CapacityRounds | None = None
        self.supervisor: Supervisor | None = None
        self.hub: Hub | None = None
        self._server: rpc.Server | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._stopped = False

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("hub not started")
        return self._server.address

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        await self.store.start()
        moved = await self.store.rebase_shard_dirs(settings.shards_dir)
        if moved:
            log.info("shard_dirs_moved", shards=moved, shards_dir=str(settings.shards_dir))
        wanted = settings.init_config()
        if wanted.spawner == "docker":  # docker spawner: the shard image, pinned by ID at init
            wanted.template_version = await asyncio.to_thread(pin_image, DockerSettings.from_env())
        self.policy, self.config_differences = await self.store.init_config(wanted)
        if self.config_differences:
            log.warning(
                "hub_config_kept",
                fields=self.config_differences,
                kept=kept_notes(self.policy, wanted),
                detail="the init config stored at first start wins; these settings are ignored",
            )
        policy = self.policy
        tls = settings.server.tls
        # The only process that reads the CA key after `canistry up` made it.
        ca = None if settings.ca_dir is None else ClusterCA.load(settings.ca_dir)
        self.registry = RegistryClient(settings.registry_address, tls=tls)
        self.spawner = self._spawner_override or self._make_spawner(policy)
        if isinstance(self.spawner, DockerSpawner):  # docker spawner: reconcile both ways
            await self.spawner.reconcile(self.store.shards())
        spawns = Spawns(
            self.store,
            self.spawner,
            self.registry,
            shards_dir=settings.shards_dir,
            policy=policy,
            ca=ca,
            tls=tls,
            pause_after=pause_step(settings.pause_spawn_after),
        )
        self.rounds = CapacityRounds(
            self.store,
            self.registry,
            spawns,
            min_shards=policy.min_shards,
            soft_limit=policy.soft_limit,
            warm_pool=policy.warm_pool,
            is_alive=self.spawner.is_alive,
            retry_max_s=min(30.0, policy.scale_interval_s),
            max_shards=policy.max_shards,
        )
        start_timeout_s = policy.shard_start_timeout_s

        async def healthy(record: hub_pb2.ShardRecord) -> None:
            await rpc.wait_healthy(
                record.address, timeout_s=start_timeout_s, tls=tls, server_role=Role.SHARD
            )

        self.supervisor = Supervisor(
            self.store,
            self.spawner,
            self.registry,
            ca=ca,
            pacer=StartPacer(settings.start_concurrency, settings.start_interval_s),
            healthy=healthy,
        )
        self.hub = Hub(
            self.store,
            policy,
            self.rounds,
            registry_address=settings.registry_address,
            content_address=settings.content_address,
        )
        servicer = HubServicer(self.hub)

        def add(server: grpc.aio.Server) -> None:
            hub_pb2_grpc.add_HubServicer_to_server(servicer, server)

        binding = rpc.ServiceBinding(SERVICE_NAME, add, access=ACCESS)
        self._server = rpc.Server("hub", settings.server, [binding])
        await self._server.start()

        self.supervisor.register_all()
        self._tasks = [
            asyncio.create_task(self.supervisor.run(), name="hub-supervisor"),
            asyncio.create_task(self.rounds.run(), name="hub-capacity"),
        ]
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(
            self._scheduled_round,
            "interval",
            seconds=policy.scale_interval_s,
            id="capacity-check",
            coalesce=True,
            max_instances=1,
        )
        self._scheduler.start()
        self.rounds.wake()  # one check at once, so min_shards come up
        log.info("hub_started", address=self.address, **_policy_fields(policy))

    def _make_spawner(self, policy: hub_pb2.HubConfig) -> Spawner:
        if policy.spawner == "fake":
            return FakeSpawner(tls=self.settings.server.tls is not None)
        template = ShardTemplate(
            content_address=self.settings.content_address,
            hub_address=lambda: self.address,
            daily_attempt_limit=policy.daily_attempt_limit,
            daily_token_limit=policy.daily_token_limit,
            base_allowance=policy.base_allowance,
            durable=self.settings.durable,
            commit_per_request=policy.shard_commit_per_request,
            tls=self.settings.server.tls is not None,
        )
        if policy.spawner == "docker":
            return make_docker_spawner(template, policy, self.settings.server.tls)
        return ProcessSpawner(template)

    async def _scheduled_round(self) -> None:
        # Only a wake-up: the round itself runs in the owned capacity task.
        if self.rounds is not None:
            self.rounds.wake()

    async def stop(self) -> None:
        """Stop the hub (not its shards). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.rounds is not None:
            await self.rounds.close()
        if isinstance(self.spawner, DockerSpawner):  # docker spawner: stop watching
            await self.spawner.close()
        if self._server is not None:
            await self._server.stop()
        if self.registry is not None:
            await self.registry.close()
        await self.store.stop()
        log.info("hub_stopped")


def _policy_fields(policy: hub_pb2.HubConfig) -> dict[str, object]:
    return {
        "cap": policy.cap,
        "soft_limit": policy.soft_limit,
        "hard_limit": policy.hard_limit,
        "min_shards": policy.min_shards,
        "warm_pool": policy.warm_pool,
        "max_shards": policy.max_shards,
        "spawner": policy.spawner,
    }
