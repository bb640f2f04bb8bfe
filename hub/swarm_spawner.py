"""The ``swarm`` spawner: each shard is a Docker Swarm service of one replica.

Per shard, named ``<cluster>-<shard id>``:

- a **service** with one replica, restart policy ``on-failure``, endpoint
  mode ``dnsrr`` (the virtual-IP mode needs IPVS, which some kernels lack),
  on the cluster's attachable overlay network, running the image its record
  names, pinned by **registry digest** (``template_version`` is
  ``swarm:<repository>@sha256:...``: the shard image at the hub's init, or
  the one an adopted ``upgrade_shards`` proposal moved it to; the image must
  be in a registry every node pulls from);
- a **local volume** ``<cluster>-<shard id>-data`` mounted at
  ``/var/lib/canistry``. Swarm volumes are local to a node, so the service is
  **pinned to one node** by a placement constraint ``node.id==<id>``, chosen
  when the shard is first created (the active node running fewest of this
  cluster's shards) and recorded beside the shard's certificate in the hub's
  data (``swarm-node.json``): a restarted or recreated shard goes back to
  its data;
- three **Swarm secrets** (``ca.pem``, ``cert.pem``, ``key.pem``: the
  certificate the hub issued), mounted in ``/run/secrets``; named by a hash
  of their content, since secrets are immutable.

Labels are the docker spawner's (``io.canistry.managed-by``, ``.cluster``,
``.shard``, ``.spec``), plus ``io.canistry.node``. **Reconciling** works as
with docker: services are found by label, a restarted hub re-adopts them,
one whose spec hash differs is removed (volume kept) and recreated by the
supervisor, and a labelled service with no record is reported and left
alone. **Creation is idempotent** (a 409 adopts our own service).
**Readiness** is the gRPC health check within the start deadline. Swarm
heals a failed task itself (on-failure); the hub recreates a service that
is gone. Engine calls run in worker threads; :meth:`is_alive` and
:meth:`adopt` answer from a picture a watcher thread refreshes.

A service's tasks may run on other nodes: the "pid" of a shard is a stable
number derived from its service ID.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.docker_spawner import (
    LABEL_CLUSTER,
    LABEL_MANAGED_BY,
    LABEL_SHARD,
    LABEL_SPEC,
    MANAGED_BY,
    EngineError,
    ShardStartFailed,
    _engine_errors,
    engine_client,
    engine_env,
)
from hub.spawner import ShardTemplate, shard_tls_dir
from protos import hub_pb2
from runtime import logs
from runtime.errors import InvalidArgument, Unavailable
from runtime.files import write_atomically
from runtime.rpc import wait_healthy
from runtime.tls import CA_CERT_FILE, CERT_FILE, KEY_FILE, Role, TLSConfig

__all__ = [
    "LABEL_NODE",
    "SwarmSettings",
    "SwarmSpawner",
    "make_swarm_spawner",
    "pin_image",
    "resolve_template",
]

log = logs.get_logger(__name__)

LABEL_NODE = "io.canistry.node"
TEMPLATE_PREFIX = "swarm:"
#: What an image reference may look like (a tag or a digest); the registry checks the rest.
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")
SHARD_HOME = "/var/lib/canistry"
SECRETS_DIR = "/run/secrets"
_S = 1_000_000_000
_HEALTH_TIMING = {"interval": 3 * _S, "timeout": 10 * _S, "retries": 3, "start_period": 60 * _S}
#: Task states in which its container no longer runs.
_STOPPED = frozenset({"complete", "shutdown", "failed", "rejected", "orphaned", "remove"})
#: Beside the shard's certificate in the hub's data: the node holding its volume.
NODE_FILE = "swarm-node.json"


@dataclass(frozen=True)
class SwarmSettings:
    """How the hub reaches the swarm and what it gives shard services (from its environment)."""

    image: str
    """The shard image in a registry (``CANISTRY_SHARD_IMAGE``); pinned by digest at init."""
    network: str
    """The attachable overlay network of the stack (``CANISTRY_DOCKER_NETWORK``)."""
    cluster_id: str = "canistry"
    """Names and labels this cluster's services, secrets and volumes (``CANISTRY_CLUSTER_ID``)."""
    hub_address: str = "hub:7000"
    """Where shards dial the hub on the network (``CANISTRY_HUB_ADDRESS``)."""
    shard_port: int = 7000
    shard_uid: int = 10001
    """The image's unprivileged user: owner of the secrets' files."""
    stop_grace_s: int = 10
    poll_interval_s: float = 1.0
    """How often the watcher refreshes its picture of the labelled services."""

    def __post_init__(self) -> None:
        for name in ("image", "network", "cluster_id", "hub_address"):
            if not getattr(self, name).strip():
                raise ValueError(f"swarm spawner: {name} is required")
        if self.poll_interval_s <= 0 or self.stop_grace_s < 0:
            raise ValueError("swarm spawner: poll_interval_s must be > 0, stop_grace_s >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SwarmSettings:
        """The settings from the same ``CANISTRY_*`` variables as docker's (:func:`engine_env`)."""
        return cls(**engine_env(env))


def repository_of(image: str) -> str:
    """``image`` without its tag or digest: ``host:5000/name:tag`` -> ``host:5000/name``."""
    name = image.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def pin_image(settings: SwarmSettings, client: Any = None) -> str:
    """``swarm:<repository>@<digest>``: the image as the registry has it now. Blocking."""
    if "@sha256:" in settings.image:
        return f"{TEMPLATE_PREFIX}{settings.image}"
    import docker

    with _engine_errors("pin the shard image by its registry digest"):
        client = client or docker.from_env()
        digest = client.images.get_registry_data(settings.image).id
    return f"{TEMPLATE_PREFIX}{repository_of(settings.image)}@{digest}"


async def resolve_template(template: str, client: Any = None) -> str:
    """The ``swarm:<repository>@<digest>`` an ``upgrade_shards`` template pins, as
    :func:`pin_image`: the registry's digest of ``template`` (``repo:tag`` or
    ``repo@sha256:...``), asked through the hub's engine in a worker thread.

    Raises :class:`InvalidArgument` when it is malformed or the registry
    cannot resolve it (no such repository, tag or digest; no registry there),
    :class:`EngineError` when the engine itself does not answer.
    """
    reference = template.strip()
    if not _REFERENCE.match(reference):
        raise InvalidArgument(f"template {template!r} is not an image reference")

    def pin() -> str:
        import docker.errors

        with _engine_errors(f"resolve {reference} by its registry digest"):
            engine = engine_client() if client is None else client
            try:
                digest = engine.images.get_registry_data(reference).id
            except docker.errors.APIError as exc:  # the engine answered: the registry did not
                raise InvalidArgument(
                    f"template {template!r}: no registry digest: {exc.explanation or exc}"
                ) from None
        return f"{TEMPLATE_PREFIX}{repository_of(reference)}@{digest}"

    return await asyncio.to_thread(pin)


@dataclass(frozen=True)
class Seen:
    """One labelled service, as the last look found it."""

    service_id: str
    shard_id: str
    replicas: int
    spec: str
    node: str

    @property
    def pid(self) -> int:
        return int(hashlib.sha256(self.service_id.encode()).hexdigest()[:7], 16) + 1


class SwarmSpawner:
    """Shards as Swarm services; see the module docstring."""

    name = "swarm"

    def __init__(
        self,
        settings: SwarmSettings,
        template: ShardTemplate,
        *,
        image: str,
        tls: TLSConfig | None,
        start_timeout_s: float = 60.0,
        client: Any = None,
    ) -> None:
        self.settings = settings
        self.template = template
        self.image = image.removeprefix(TEMPLATE_PREFIX)
        self.tls = tls
        self.start_timeout_s = start_timeout_s
        self._client = client
        self.orphans: list[str] = []
        self._seen: dict[str, Seen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def client(self) -> Any:
        """The engine client (made on first use; blocking: use it in worker threads)."""
        if self._client is None:
            self._client = engine_client()
        return self._client

    # ---- names, spec, labels ----

    def service_name(self, shard_id: str) -> str:
        return f"{self.settings.cluster_id}-{shard_id}"

    def volume_name(self, shard_id: str) -> str:
        return f"{self.settings.cluster_id}-{shard_id}-data"

    def place(self, shard_id: str) -> tuple[str, int]:
        port = self.settings.shard_port
        return f"{self.service_name(shard_id)}:{port}", port

    def argv(self, record: hub_pb2.ShardRecord) -> list[str]:
        s = self.settings
        return self.template.serve_args(
            record.shard_id,
            data_dir=f"{SHARD_HOME}/data",
            host="0.0.0.0",
            port=s.shard_port,
            hub=s.hub_address,
            tls_dir=SECRETS_DIR,
        )

    def health_test(self) -> list[str]:
        """The task's health check: the image's probe, with the certificate in /run/secrets."""
        if not self.template.tls:
            return ["NONE"]
        port = str(self.settings.shard_port)
        return ["CMD", "canistry", "probe", f"127.0.0.1:{port}", "--tls-dir", SECRETS_DIR,
                "--timeout", "5"]  # fmt: skip

    def image_of(self, record: hub_pb2.ShardRecord) -> str:
        """The pinned image the shard runs: its record's template (an upgrade or a rollback
        moves it), else the one the hub pinned at init."""
        if record.template_version.startswith(TEMPLATE_PREFIX):
            return record.template_version.removeprefix(TEMPLATE_PREFIX)
        return self.image

    def spec_hash(self, record: hub_pb2.ShardRecord, node: str) -> str:
        spec = {
            "health": self.health_test(),
            "image": self.image_of(record),
            "command": self.argv(record),
            "network": self.settings.network,
            "volume": self.volume_name(record.shard_id),
            "restart": "on-failure",
            "endpoint": "dnsrr",
            "node": node,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def labels(self, shard_id: str) -> dict[str, str]:
        return {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_CLUSTER: self.settings.cluster_id,
            LABEL_SHARD: shard_id,
        }

    def _filters(self) -> dict[str, list[str]]:
        return {
            "label": [
                f"{LABEL_MANAGED_BY}={MANAGED_BY}",
                f"{LABEL_CLUSTER}={self.settings.cluster_id}",
            ]
        }

    def recorded_node(self, record: hub_pb2.ShardRecord) -> str | None:
        """The node holding the shard's volume, as recorded when it was created."""
        try:
            return str(json.loads((Path(record.data_dir) / NODE_FILE).read_text())["node_id"])
        except (FileNotFoundError, ValueError, KeyError):
            return None

    # ---- the Spawner protocol ----

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        """Create (or adopt) the shard's service on its node; return once it serves."""
        seen = await asyncio.to_thread(self._run_service, record)
        log.info(
            "shard_service_started",
            shard_id=record.shard_id,
            service=seen.service_id[:12],
            node=seen.node,
        )
        await self._ready(record)
        return seen.pid

    def is_alive(self, record: hub_pb2.ShardRecord) -> bool:
        with self._lock:
            seen = self._seen.get(record.shard_id)
        return seen is not None and seen.replicas >= 1

    def adopt(self, record: hub_pb2.ShardRecord) -> int | None:
        with self._lock:
            seen = self._seen.get(record.shard_id)
        if seen is None or seen.replicas < 1:
            return None
        node = self.recorded_node(record) or seen.node
        if seen.spec != self.spec_hash(record, node):
            return None
        return seen.pid

    async def stop(self, record: hub_pb2.ShardRecord) -> None:
        """Remove the shard's service and its secrets (never its volume); no error if none."""
        await asyncio.to_thread(self._remove, record.shard_id)
        with self._lock:
            self._seen.pop(record.shard_id, None)
        log.info("shard_service_stopped", shard_id=record.shard_id)

    def port_available(self, port: int) -> bool:
        return True  # each task has its own network namespace

    # ---- reconciling and watching ----

    async def reconcile(self, records: list[hub_pb2.ShardRecord]) -> None:
        """Match labelled services with records, both ways, then start watching."""
        await asyncio.to_thread(self._refresh)
        by_id = {r.shard_id: r for r in records if r.step != hub_pb2.SPAWN_STEP_ABANDONED}
        with self._lock:
            seen = dict(self._seen)
        self.orphans = sorted(set(seen) - set(by_id))
        for shard_id in self.orphans:
            log.warning(
                "shard_orphan",
                shard_id=shard_id,
                service=seen[shard_id].service_id[:12],
                detail="labelled for this cluster but not in the hub's records; left alone",
            )
        for shard_id, record in by_id.items():
            found = seen.get(shard_id)
            if found is None:
                log.info("shard_service_missing", shard_id=shard_id, detail="recreated")
            elif found.spec != self.spec_hash(record, self.recorded_node(record) or found.node):
                log.warning("shard_spec_changed", shard_id=shard_id, detail="volume kept")
                await self.stop(record)
            else:
                log.info("shard_service_adopted", shard_id=shard_id, service=found.service_id[:12])
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="swarm-watch", daemon=True)
            self._watcher.start()

    async def close(self) -> None:
        """Stop watching (the services keep running). Idempotent."""
        self._stop.set()
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.join, 5.0)
            self._watcher = None

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_s):
            try:
                self._refresh()
            except EngineError as exc:
                log.warning("swarm_watch_failed", detail=exc.message)

    def _refresh(self) -> None:
        seen = {}
        with _engine_errors("list shard services"):
            for row in self.client.api.services(filters=self._filters()):
                spec = row.get("Spec", {})
                labels = spec.get("Labels") or {}
                shard_id = labels.get(LABEL_SHARD)
                if not shard_id:
                    continue
                replicated = spec.get("Mode", {}).get("Replicated", {})
                seen[shard_id] = Seen(
                    service_id=row["ID"],
                    shard_id=shard_id,
                    replicas=int(replicated.get("Replicas", 0)),
                    spec=labels.get(LABEL_SPEC, ""),
                    node=labels.get(LABEL_NODE, ""),
                )
        with self._lock:
            self._seen = seen

    # ---- engine work (worker threads) ----

    def _node_for(self, record: hub_pb2.ShardRecord) -> str:
        """The node holding the shard's volume: recorded, else chosen now and recorded."""
        node = self.recorded_node(record)
        if node is not None:
            return node
        with _engine_errors("list swarm nodes"):
            nodes: list[str] = [
                str(n["ID"])
                for n in self.client.api.nodes()
                if n.get("Spec", {}).get("Availability") == "active"
                and n.get("Status", {}).get("State") == "ready"
            ]
        if not nodes:
            raise EngineError("no active, ready swarm node to place a shard on")
        with self._lock:
            load = {n: 0 for n in nodes}
            for s in self._seen.values():
                if s.node in load:
                    load[s.node] += 1
        node = min(nodes, key=lambda n: (load[n], n))
        Path(record.data_dir).mkdir(parents=True, exist_ok=True)
        write_atomically(Path(record.data_dir) / NODE_FILE, json.dumps({"node_id": node}) + "\n")
        log.info("shard_node_chosen", shard_id=record.shard_id, node=node)
        return node

    def _secrets(self, record: hub_pb2.ShardRecord) -> list[Any]:
        """The shard's certificate as Swarm secrets (made if missing), mounted in /run/secrets."""
        import docker.errors
        from docker.types import SecretReference

        refs = []
        uid = str(self.settings.shard_uid)
        for name, mode in ((CA_CERT_FILE, 0o444), (CERT_FILE, 0o444), (KEY_FILE, 0o400)):
            data = Path(shard_tls_dir(record.data_dir), name).read_bytes()
            digest = hashlib.sha256(data).hexdigest()[:12]
            secret_name = f"{self.service_name(record.shard_id)}-{name.split('.')[0]}-{digest}"
            try:
                secret = self.client.secrets.create(
                    name=secret_name, data=data, labels=self.labels(record.shard_id)
                )
                secret_id = secret.id
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                secret_id = self.client.secrets.get(secret_name).id
            refs.append(SecretReference(secret_id, secret_name, name, uid, uid, mode))
        return refs

    def _run_service(self, record: hub_pb2.ShardRecord) -> Seen:
        import docker.errors
        from docker.types import EndpointSpec, Healthcheck, Mount, RestartPolicy, ServiceMode

        name = self.service_name(record.shard_id)
        with _engine_errors(f"start {name}"):
            node = self._node_for(record)
            want = self.spec_hash(record, node)
            current = self._get(name)
            if current is not None:
                labels = current.attrs["Spec"].get("Labels") or {}
                if labels.get(LABEL_CLUSTER) != self.settings.cluster_id or (
                    labels.get(LABEL_SHARD) != record.shard_id
                ):
                    raise EngineError(f"service {name} exists and is not {record.shard_id}")
                if labels.get(LABEL_SPEC) != want:
                    log.warning("shard_spec_changed", shard_id=record.shard_id, detail="recreating")
                    current.remove()
                    current = None
            if current is None:
                labels = {**self.labels(record.shard_id), LABEL_SPEC: want, LABEL_NODE: node}
                try:
                    current = self.client.services.create(
                        self.image_of(record),
                        args=self.argv(record),
                        name=name,
                        hostname=name,
                        labels=labels,
                        container_labels=self.labels(record.shard_id),
                        mode=ServiceMode("replicated", replicas=1),
                        restart_policy=RestartPolicy(condition="on-failure", delay=1_000_000_000),
                        endpoint_spec=EndpointSpec(mode="dnsrr"),
                        networks=[self.settings.network],
                        constraints=[f"node.id=={node}"],
                        mounts=[
                            Mount(
                                SHARD_HOME,
                                self.volume_name(record.shard_id),
                                type="volume",
                                labels=self.labels(record.shard_id),
                            )
                        ],
                        secrets=self._secrets(record) if self.template.tls else [],
                        stop_grace_period=self.settings.stop_grace_s * 1_000_000_000,
                        healthcheck=Healthcheck(test=self.health_test(), **_HEALTH_TIMING),
                    )
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:
                        raise
                    current = self._get(name)  # made meanwhile: ours if its labels say so
                    if (
                        current is None
                        or (current.attrs["Spec"].get("Labels") or {}).get(LABEL_SHARD)
                        != record.shard_id
                    ):
                        raise EngineError(f"service {name} exists and is not ours") from exc
            current.reload()
            spec = current.attrs["Spec"]
            seen = Seen(
                service_id=current.id,
                shard_id=record.shard_id,
                replicas=int(spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0)),
                spec=(spec.get("Labels") or {}).get(LABEL_SPEC, ""),
                node=node,
            )
        with self._lock:
            self._seen[record.shard_id] = seen
        return seen

    def _get(self, name: str) -> Any:
        import docker.errors

        try:
            return self.client.services.get(name)
        except docker.errors.NotFound:
            return None

    def _remove(self, shard_id: str) -> None:
        import docker.errors

        with _engine_errors(f"remove {self.service_name(shard_id)}"):
            service = self._get(self.service_name(shard_id))
            if service is not None:
                with contextlib.suppress(docker.errors.NotFound):
                    self._drain(service)
                    service.remove()
            for secret in self.client.secrets.list(filters={"label": f"{LABEL_SHARD}={shard_id}"}):
                if (secret.attrs["Spec"].get("Labels") or {}).get(
                    LABEL_CLUSTER
                ) == self.settings.cluster_id:
                    with contextlib.suppress(docker.errors.APIError):
                        secret.remove()  # in use until the task is gone: the next stop retries

    def _drain(self, service: Any) -> None:
        """Scale ``service`` to 0 and wait until its task has stopped (SIGTERM: it drains).

        Removing a service returns before its container exits: a shard started
        again at once (an upgrade, a rollback) would find the old one still
        answering on its name and holding its volume. Waits at most the stop
        grace period and a margin, then goes on (the engine kills it anyway).
        """
        service.scale(0)
        deadline = time.monotonic() + self.settings.stop_grace_s + 20
        while True:
            live = [t for t in service.tasks() if t["Status"]["State"] not in _STOPPED]
            if not live:
                return
            if time.monotonic() > deadline:
                log.warning("shard_service_not_drained", service=service.name, tasks=len(live))
                return
            time.sleep(0.2)

    def _health_address(self, record: hub_pb2.ShardRecord) -> str:
        return record.address

    async def _ready(self, record: hub_pb2.ShardRecord) -> None:
        """Wait until the shard answers its gRPC health check, within the start deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise ShardStartFailed(
                    f"{record.shard_id}: not healthy within {self.start_timeout_s:g}s "
                    "(its service is left for the supervisor)"
                )
            try:
                await wait_healthy(
                    self._health_address(record),
                    timeout_s=min(2.0, left),
                    tls=self.tls,
                    server_role=Role.SHARD,
                )
                return
            except Unavailable:
                await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))


def make_swarm_spawner(
    template: ShardTemplate, policy: hub_pb2.HubConfig, tls: TLSConfig | None
) -> SwarmSpawner:
    """The swarm spawner for a hub whose stored config pinned ``policy.template_version``."""
    return SwarmSpawner(
        SwarmSettings.from_env(),
        template,
        image=policy.template_version,
        tls=tls,
        start_timeout_s=policy.shard_start_timeout_s,
    )
