"""The hub service's lifecycle: store, init config, gRPC server, background tasks.

Background work, all owned and ended in :meth:`HubService.stop`: the
supervisor loop, the capacity loop and the timer that wakes it every
``scale_interval_s`` (under one :class:`~runtime.lifecycle.BackgroundTasks`),
and a running spawn (owned by the capacity rounds). ``stop()`` first pauses
the supervisor (a shard stopped alongside the hub, as ``docker-compose down``
does, is not started again), drains the gRPC server, so a call under way
still finds the parts it needs, then
cancels the background work and closes the rest. It leaves the shards
running (they outlive the hub and are re-adopted by the next one); use
:func:`hub.spawner.stop_shards` to stop them.

With ``enroll_port`` (TLS only) the hub also serves a second listener, the
enrollment port: server-only TLS, ``EnrollShard`` alone
(:mod:`hub.enrollment_edge`), where a shard that makes its own key (the
kubernetes spawner's) trades a one-time join token for its certificate. It
is stopped first.

Shards run as processes (:class:`~hub.spawner.ProcessSpawner`) unless the
builder injects another :class:`~hub.spawner.Spawner` (tests inject an
in-memory one); the hub knows no other backend by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import grpc

from hub import enrollment_edge, kubernetes_spawner, swarm_spawner
from hub.capacity import IN_PROGRESS_STEPS
from hub.clock import Clock, wall_clock_ms
from hub.config import SPAWNERS, HubSettings, kept_notes, template_version
from hub.core import Hub
from hub.docker_spawner import DockerSettings, make_docker_spawner, pin_image
from hub.enrollment import TOKEN_TTL_STARTS, Enrollment
from hub.execution import make_governance
from hub.grpc_edge import ACCESS, HubServicer
from hub.pacing import StartPacer
from hub.registry_client import RegistryClient
from hub.rollout import Rollout
from hub.rounds import CapacityRounds
from hub.spawn_steps import AfterStep, Spawns
from hub.spawner import ProcessSpawner, ShardTemplate, Spawner
from hub.store import HubStore
from hub.supervisor import SUPERVISED_STEPS, Supervisor
from protos import hub_pb2, hub_pb2_grpc
from runtime import logs, rpc
from runtime.lifecycle import BackgroundTasks, Lifecycle
from runtime.metrics import Figure
from runtime.tls import ClusterCA, Role

__all__ = ["HubService"]


@runtime_checkable
class _Reconciling(Protocol):
    """A spawner that matches what runs with the records at start and watches it (docker & co)."""

    async def reconcile(self, records: list[hub_pb2.ShardRecord]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class _Enrolling(Protocol):
    """A spawner whose shards make their own keys and enrol with a join token (kubernetes)."""

    def use_enrollment(self, enrollment: Enrollment) -> None: ...


log = logs.get_logger(__name__)

SERVICE_NAME = hub_pb2.DESCRIPTOR.services_by_name["Hub"].full_name

STEP = hub_pb2.SpawnStep


class HubService(Lifecycle):
    """``async with HubService(settings) as svc:`` serves at ``svc.address``.

    ``spawner`` runs the shards instead of :class:`ProcessSpawner` (tests pass
    an in-memory one, shared across hub restarts so that "shards" outlive
    their hub); a first start stores its ``name`` in the init config.
    ``after_step`` is awaited after each committed spawn step (a test hook:
    one that blocks holds spawns there, see :data:`hub.spawn_steps.AfterStep`).
    ``clock`` (wall ms) stamps grants, spawns and restarts.
    """

    def __init__(
        self,
        settings: HubSettings,
        *,
        spawner: Spawner | None = None,
        after_step: AfterStep | None = None,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.settings = settings
        self.store = HubStore(settings.data_dir, durable=settings.durable)
        self.policy = hub_pb2.HubConfig()
        """The stored init config (valid after start)."""
        self.config_differences: list[str] = []
        """Policy fields the settings asked to change but the stored config kept."""
        self.spawner: Spawner | None = spawner
        self.after_step = after_step
        self.clock = clock
        self.registry: RegistryClient | None = None
        self.rounds: CapacityRounds | None = None
        self.supervisor: Supervisor | None = None
        self.hub: Hub | None = None
        self._server: rpc.Server | None = None
        self.enrollment: Enrollment | None = None
        """Join tokens and shard enrollment (a TLS hub with ``enroll_port`` only)."""
        self._enroll_server: rpc.Server | None = None
        self._tasks = BackgroundTasks()
        self._started = False
        self._stopped = False

    @property
    def address(self) -> str:
        if self._server is None:
            raise RuntimeError("hub not started")
        return self._server.address

    @property
    def enroll_address(self) -> str:
        """Where the enrollment port listens (``settings.enroll_port``; valid after start)."""
        if self._enroll_server is None:
            raise RuntimeError("no enrollment port")
        return self._enroll_server.address

    async def start(self) -> None:
        """Open the store, serve, start the background work; on failure close what opened."""
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
        if self.spawner is not None:  # an injected backend: the init config names it
            wanted.spawner = self.spawner.name
            wanted.template_version = template_version(self.spawner.name)
        elif wanted.spawner == "docker":  # the shard image, pinned by ID at init
            wanted.template_version = await asyncio.to_thread(pin_image, DockerSettings.from_env())
        elif wanted.spawner == "kubernetes":  # the shard image, as given (best by digest)
            k8s = kubernetes_spawner.KubernetesSettings.from_env()
            wanted.template_version = kubernetes_spawner.pin_image(k8s)
        elif wanted.spawner == "swarm":  # the shard image, pinned by its registry digest
            swarm = swarm_spawner.SwarmSettings.from_env()
            wanted.template_version = await asyncio.to_thread(swarm_spawner.pin_image, swarm)
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
        if ca is not None and settings.enroll_port is not None:
            ttl_s = TOKEN_TTL_STARTS * policy.shard_start_timeout_s
            self.enrollment = Enrollment(self.store, ca, ttl_s=ttl_s, clock=self.clock)
        self.registry = RegistryClient(settings.registry_address, tls=tls)
        if self.spawner is None:
            self.spawner = self._make_spawner(policy)
        if self.enrollment is not None and isinstance(self.spawner, _Enrolling):
            self.spawner.use_enrollment(self.enrollment)
        if isinstance(self.spawner, _Reconciling):  # docker & co: reconcile both ways at start
            await self.spawner.reconcile(self.store.shards())
        spawns = Spawns(
            self.store,
            self.spawner,
            self.registry,
            shards_dir=settings.shards_dir,
            policy=policy,
            ca=ca,
            tls=tls,
            after_step=self.after_step,
            clock=self.clock,
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
            clock=self.clock,
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
            wall_clock=self.clock,
        )
        self.hub = Hub(
            self.store,
            policy,
            self.rounds,
            registry_address=settings.registry_address,
            content_address=settings.content_address,
            clock=self.clock,
        )
        rollout = Rollout(self.store, self.spawner, self.supervisor, healthy, self.registry,
                          concurrency=policy.rollout_concurrency or 1)  # fmt: skip
        self.governance = make_governance(
            self.store, policy, self.registry, tls=tls, upgrade=rollout, clock=self.clock
        )
        servicer = HubServicer(self.hub, self.governance)

        def add(server: grpc.aio.Server) -> None:
            hub_pb2_grpc.add_HubServicer_to_server(servicer, server)

        binding = rpc.ServiceBinding(SERVICE_NAME, add, access=ACCESS)
        self._server = rpc.Server("hub", settings.server, [binding])
        await self._server.start()
        await self._serve_enrollment()

        self.supervisor.register_all()
        self._tasks.spawn(self.supervisor.run(), name="hub-supervisor")
        self._tasks.spawn(self.rounds.run(), name="hub-capacity")
        self._tasks.spawn(self.governance.run(), name="hub-governance")
        self._tasks.spawn(self._timer(policy.scale_interval_s), name="hub-capacity-timer")
        self.rounds.wake()  # one check at once, so min_shards come up
        log.info("hub_started", address=self.address, **_policy_fields(policy))

    async def _serve_enrollment(self) -> None:
        """Open the enrollment port, if asked: its own listener, server-only TLS, one RPC."""
        main = self.settings.server
        if self.settings.enroll_port is None or self.enrollment is None:
            return  # enrollment exists exactly when the port is asked for (and TLS)
        config = rpc.ServerConfig(
            host=main.host,
            port=self.settings.enroll_port,
            grace_s=main.grace_s,
            tls=main.tls,
            keepalive=main.keepalive,
            max_receive_bytes=enrollment_edge.MAX_REQUEST_BYTES,
            client_auth=False,
        )
        self._enroll_server = rpc.Server(
            "hub-enroll", config, [enrollment_edge.binding(self.enrollment)]
        )
        await self._enroll_server.start()

    def _make_spawner(self, policy: hub_pb2.HubConfig) -> Spawner:
        if policy.spawner not in SPAWNERS:
            raise ValueError(
                f"the stored init config names spawner {policy.spawner!r}, which only a "
                f"hub built with that spawner injected can run (this one makes {SPAWNERS})"
            )
        template = ShardTemplate(
            content_address=self.settings.content_address,
            hub_address=lambda: self.address,
            daily_attempt_limit=policy.daily_attempt_limit,
            daily_token_limit=policy.daily_token_limit,
            base_allowance=policy.base_allowance,
            durable=self.settings.durable,
            commit_per_request=self.settings.shard_commit_per_request,
            tls=self.settings.server.tls is not None,
        )
        if policy.spawner == "docker":
            return make_docker_spawner(template, policy, self.settings.server.tls)
        if policy.spawner == "swarm":
            return swarm_spawner.make_swarm_spawner(template, policy, self.settings.server.tls)
        if policy.spawner == "kubernetes":
            return kubernetes_spawner.make_kubernetes_spawner(
                template, policy, self.settings.server.tls
            )
        return ProcessSpawner(template)

    async def _timer(self, interval_s: float) -> None:
        """Wake the capacity loop every ``interval_s``: the round runs in that owned task."""
        while True:
            await asyncio.sleep(interval_s)
            if self.rounds is not None:
                self.rounds.wake()

    def figures(self) -> Iterator[Figure]:
        """What ``/metrics`` reports besides RPCs (read at each scrape, from LMDB)."""
        treasury = self.store.treasury(self.policy.cap)
        yield "hub_treasury_cap_tokens", "Tokens the treasury may ever grant", treasury.cap
        yield "hub_treasury_granted_tokens", "Tokens granted to shards", treasury.total_granted
        yield "hub_treasury_staked_tokens", "Tokens shards reported staked", treasury.total_staked
        yield "hub_allowance_calls", "Allowance requests answered", treasury.allowance_calls
        records = self.store.shards()
        steps = [r.step for r in records]
        yield (
            "hub_shards_registered",
            "Shards in service (registered)",
            steps.count(STEP.SPAWN_STEP_REGISTERED),
        )
        yield "hub_shards_warm", "Warm shards, ready to register", steps.count(STEP.SPAWN_STEP_WARM)
        yield (
            "hub_shards_in_progress",
            "Shards whose spawn is under way",
            sum(1 for s in steps if s in IN_PROGRESS_STEPS),
        )
        yield (
            "hub_spawns_done",
            "Spawns finished (shards registered or warm)",
            sum(1 for s in steps if s in SUPERVISED_STEPS),
        )
        yield (
            "hub_spawns_abandoned",
            "Spawns undone (shard stopped)",
            steps.count(STEP.SPAWN_STEP_ABANDONED),
        )
        yield "hub_shard_restarts", "Shard restarts after a crash", sum(r.restarts for r in records)

    async def stop(self) -> None:
        """Pause the supervisor, drain the server, stop the background work, close.

        The shards keep running.

        Idempotent; safe after a start that failed partway.
        """
        if self._stopped:
            return
        self._stopped = True
        if self.supervisor is not None:
            self.supervisor.pause()  # shards stopped with the hub stay stopped
        try:
            if self._enroll_server is not None:
                await self._enroll_server.stop()
            if self._server is not None:
                await self._server.stop()  # drain: calls under way still find every part
        finally:
            await self._tasks.stop()
            if self.rounds is not None:
                await self.rounds.close()
            if isinstance(self.spawner, _Reconciling):  # stop watching the engine
                await self.spawner.close()
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
