"""The ``docker`` spawner: each shard is a container the hub creates through the Engine API.

Every shard runs the image its own record names (``template_version`` is
``docker:<image id>``: the shard image pinned by ID at the hub's init, or
the one an adopted ``upgrade_shards`` proposal moved it to), on the cluster's
network, with its own named volume mounted at ``/var/lib/canistry`` (LMDB in
``data/``, its certificate in ``tls/``), a restart policy, and labels:

    io.canistry.managed-by = canistry-hub
    io.canistry.cluster    = <cluster id>
    io.canistry.shard      = <shard id>
    io.canistry.spec       = <hash of image, command, network, volume, restart policy>

The container is named ``<cluster>-<shard id>`` and reached by that name on
the network, always on port 7000 (each container has its own network
namespace, so no port is ever taken). The hub writes the shard's certificate
in its own volume, as for processes, and copies it into the container before
each start.

**Engine calls never run on the event loop.** They run in worker threads
(``asyncio.to_thread``); the synchronous questions of the :class:`Spawner`
protocol (:meth:`is_alive`, :meth:`adopt`) are answered from a picture of
the labelled containers that a watcher thread refreshes every
``poll_interval_s`` (and each start or stop updates at once).

**Reconciling**, at hub start (:meth:`reconcile`), both ways: containers are
found by label, so a restarted hub re-adopts its running shards (same
containers); a record whose container is gone is recreated on its volume by
the supervisor's first pass; a container whose spec hash differs from what
its record would run now is removed (its volume kept) and so recreated; a
labelled container with no record is reported as an orphan and left alone.
Volumes are never deleted.

**Creation is idempotent**: a name conflict (an earlier hub died between
create and record) is resolved by inspecting the container and adopting it if
its labels say it is this cluster's shard. **Readiness** is the gRPC health
check within the start deadline, not "running"; a container that exits
first (bad image, bad config) fails the start at once and is removed.

**Under docker-compose**, shard containers also carry the compose labels of
a one-off container of the hub's service (:func:`compose_labels`), so a plain
``docker-compose down`` stops and removes them with the rest (their volumes
stay), and ``ps`` lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from hub.spawner import ShardTemplate, shard_tls_dir
from protos import hub_pb2
from runtime import logs
from runtime.errors import InvalidArgument, Unavailable
from runtime.rpc import wait_healthy
from runtime.tls import CA_CERT_FILE, CERT_FILE, KEY_FILE, Role, TLSConfig

__all__ = [
    "LABEL_CLUSTER",
    "LABEL_MANAGED_BY",
    "LABEL_SHARD",
    "LABEL_SPEC",
    "DockerSettings",
    "DockerSpawner",
    "EngineError",
    "ShardStartFailed",
    "engine_env",
    "make_docker_spawner",
    "pin_image",
    "resolve_template",
]

log = logs.get_logger(__name__)

LABEL_MANAGED_BY = "io.canistry.managed-by"
LABEL_CLUSTER = "io.canistry.cluster"
LABEL_SHARD = "io.canistry.shard"
LABEL_SPEC = "io.canistry.spec"
MANAGED_BY = "canistry-hub"
#: docker-compose's labels that a shard container copies from a hub run by compose.
COMPOSE_PROJECT = "com.docker.compose.project"
_COMPOSE_KEPT = (
    COMPOSE_PROJECT,
    "com.docker.compose.service",
    "com.docker.compose.project.working_dir",
    "com.docker.compose.project.config_files",
    "com.docker.compose.version",
)
#: The stored template_version of a docker hub: this prefix and the image ID.
TEMPLATE_PREFIX = "docker:"
#: Where a shard's volume is mounted; the image's HEALTHCHECK reads ``tls/`` under it.
SHARD_HOME = "/var/lib/canistry"
#: What an image reference may look like (a tag, an ID, a digest); the engine checks the rest.
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$")


class EngineError(Unavailable):
    """The Docker engine refused or could not be reached."""

    code = "docker-engine"


class ShardStartFailed(EngineError):
    """A shard container could not start or exited before serving (it was removed)."""

    code = "shard-start-failed"


@dataclass(frozen=True)
class DockerSettings:
    """How the hub reaches the engine and what it gives shard containers.

    Read from the hub's environment (:meth:`from_env`): docker-compose sets it.
    """

    image: str
    """The shard image (name or ID; ``CANISTRY_SHARD_IMAGE``); pinned to its ID at init."""
    network: str
    """The network shards join, the one the core services are on (``CANISTRY_DOCKER_NETWORK``)."""
    cluster_id: str = "canistry"
    """Labels and names this cluster's containers and volumes (``CANISTRY_CLUSTER_ID``)."""
    hub_address: str = "hub:7000"
    """Where shards dial the hub on the network (``CANISTRY_HUB_ADDRESS``)."""
    shard_port: int = 7000
    """The port a shard serves gRPC on inside its container."""
    restart_policy: str = "unless-stopped"
    """The engine restarts a crashed shard itself; the hub heals what it does not restart."""
    shard_uid: int = 10001
    """The image's unprivileged user; owner of what the hub copies into a shard's volume."""
    stop_timeout_s: int = 10
    """Seconds a stopping shard gets after SIGTERM before the engine kills it."""
    poll_interval_s: float = 0.5
    """How often the watcher refreshes its picture of the labelled containers."""

    def __post_init__(self) -> None:
        for name in ("image", "network", "cluster_id", "hub_address"):
            if not getattr(self, name).strip():
                raise ValueError(f"docker spawner: {name} is required")
        if self.poll_interval_s <= 0 or self.stop_timeout_s < 0:
            raise ValueError("docker spawner: poll_interval_s must be > 0, stop_timeout_s >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DockerSettings:
        """The settings from ``CANISTRY_*`` variables (:func:`engine_env`)."""
        return cls(**engine_env(env))


class EngineEnv(TypedDict):
    """The settings a docker or swarm hub takes from its environment."""

    image: str
    network: str
    cluster_id: str
    hub_address: str


def engine_env(env: Mapping[str, str] | None = None) -> EngineEnv:
    """What a docker or swarm hub reads from its environment (docker-compose and the
    stack file set it): the one place these ``CANISTRY_*`` variables are read."""
    env = os.environ if env is None else env
    return {
        "image": env.get("CANISTRY_SHARD_IMAGE", ""),
        "network": env.get("CANISTRY_DOCKER_NETWORK", ""),
        "cluster_id": env.get("CANISTRY_CLUSTER_ID", "canistry"),
        "hub_address": env.get("CANISTRY_HUB_ADDRESS", "hub:7000"),
    }


def pin_image(settings: DockerSettings) -> str:
    """The template_version pinning ``settings.image``: ``docker:<image id>``. Blocking."""
    import docker

    with _engine_errors("pin the shard image"):
        image = docker.from_env().images.get(settings.image)
    return f"{TEMPLATE_PREFIX}{image.id!s}"


async def resolve_template(template: str, client: Any = None) -> str:
    """The ``docker:<image id>`` an ``upgrade_shards`` template pins, as :func:`pin_image`.

    ``template`` is an image reference (``name:tag``, an ID or a digest) that
    must be on the hub's engine already: the hub pulls nothing. Raises
    :class:`InvalidArgument` when it is malformed or no such image is there,
    :class:`EngineError` when the engine does not answer. The engine is asked
    in a worker thread.
    """
    reference = template.strip()
    if not _REFERENCE.match(reference):
        raise InvalidArgument(f"template {template!r} is not an image reference")

    def pin() -> str:
        import docker.errors

        with _engine_errors(f"resolve the image {reference}"):
            engine = engine_client() if client is None else client
            try:
                image = engine.images.get(reference)
            except docker.errors.NotFound:  # ImageNotFound included
                raise InvalidArgument(
                    f"template {template!r}: no such image on the hub's engine"
                ) from None
            except docker.errors.APIError as exc:
                if exc.status_code != 400:  # 400: a reference the engine cannot parse
                    raise
                raise InvalidArgument(f"template {template!r}: {exc.explanation}") from None
        return f"{TEMPLATE_PREFIX}{image.id!s}"

    return await asyncio.to_thread(pin)


@contextlib.contextmanager
def _engine_errors(doing: str) -> Iterator[None]:
    """Engine and transport failures as :class:`EngineError` (the one translation)."""
    import docker.errors
    import requests

    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise ShardStartFailed(f"cannot {doing}: image not found: {exc.explanation}") from exc
    except docker.errors.DockerException as exc:
        raise EngineError(f"cannot {doing}: {exc}") from exc
    except requests.RequestException as exc:
        raise EngineError(f"cannot {doing}: engine unreachable: {exc}") from exc


@dataclass(frozen=True)
class Seen:
    """One labelled container, as the last look found it."""

    container_id: str
    shard_id: str
    running: bool
    pid: int
    spec: str


class DockerSpawner:
    """Shards as containers; see the module docstring."""

    name = "docker"

    def __init__(
        self,
        settings: DockerSettings,
        template: ShardTemplate,
        *,
        image: str,
        tls: TLSConfig | None,
        start_timeout_s: float = 20.0,
        client: Any = None,
    ) -> None:
        """``image`` is the pinned image ID of the stored init config: what a record that
        names no ``docker:`` template runs (see :meth:`image_of`); ``tls`` the
        hub's own certificate, for health checks. ``client``: a ``docker.DockerClient``
        (default: made from the environment in a worker thread, by :meth:`reconcile`:
        making one asks the engine its API version)."""
        self.settings = settings
        self.template = template
        self.image = image.removeprefix(TEMPLATE_PREFIX)
        self.tls = tls
        self.start_timeout_s = start_timeout_s
        self._client = client
        self.orphans: list[str] = []
        """Shard ids of labelled containers with no record (reported, never touched)."""
        self._seen: dict[str, Seen] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._compose: dict[str, str] = {}
        """The compose labels shard containers get (:func:`compose_labels`), learnt at
        :meth:`reconcile`."""

    @property
    def client(self) -> Any:
        """The engine client (made on first use; blocking: use it in worker threads)."""
        if self._client is None:
            self._client = engine_client()
        return self._client

    # ---- names, spec, labels ----

    def container_name(self, shard_id: str) -> str:
        return f"{self.settings.cluster_id}-{shard_id}"

    def volume_name(self, shard_id: str) -> str:
        return f"{self.settings.cluster_id}-{shard_id}-data"

    def place(self, shard_id: str) -> tuple[str, int]:
        """The address a new shard will serve at on the network, and its port."""
        port = self.settings.shard_port
        return f"{self.container_name(shard_id)}:{port}", port

    def argv(self, record: hub_pb2.ShardRecord) -> list[str]:
        s = self.settings
        return self.template.serve_args(
            record.shard_id,
            data_dir=f"{SHARD_HOME}/data",
            host="0.0.0.0",
            port=s.shard_port,
            hub=s.hub_address,
            tls_dir=f"{SHARD_HOME}/tls",
        )

    def image_of(self, record: hub_pb2.ShardRecord) -> str:
        """The image ID the shard runs: its record's template (an upgrade or a rollback
        moves it), else the one the hub pinned at init."""
        if record.template_version.startswith(TEMPLATE_PREFIX):
            return record.template_version.removeprefix(TEMPLATE_PREFIX)
        return self.image

    def spec(self, record: hub_pb2.ShardRecord) -> dict[str, Any]:
        """Everything that decides what a shard's container runs; its hash is a label."""
        return {
            "image": self.image_of(record),
            "command": self.argv(record),
            "network": self.settings.network,
            "volume": self.volume_name(record.shard_id),
            "restart": self.settings.restart_policy,
            "port": self.settings.shard_port,
        }

    def spec_hash(self, record: hub_pb2.ShardRecord) -> str:
        raw = json.dumps(self.spec(record), sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    def labels(self, record: hub_pb2.ShardRecord) -> dict[str, str]:
        return {
            **self._compose,
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_CLUSTER: self.settings.cluster_id,
            LABEL_SHARD: record.shard_id,
            LABEL_SPEC: self.spec_hash(record),
        }

    def _filters(self) -> dict[str, list[str]]:
        return {
            "label": [
                f"{LABEL_MANAGED_BY}={MANAGED_BY}",
                f"{LABEL_CLUSTER}={self.settings.cluster_id}",
            ]
        }

    def _ours(self, container: Any, shard_id: str) -> bool:
        labels = container.labels or {}
        return (
            labels.get(LABEL_MANAGED_BY) == MANAGED_BY
            and labels.get(LABEL_CLUSTER) == self.settings.cluster_id
            and labels.get(LABEL_SHARD) == shard_id
        )

    # ---- the Spawner protocol ----

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        """Create (or adopt) and start the shard's container; return once it serves."""
        tar = await asyncio.to_thread(self._tls_archive, record)
        seen = await asyncio.to_thread(self._run_container, record, tar)
        log.info(
            "shard_container_started",
            shard_id=record.shard_id,
            container=seen.container_id[:12],
            pid=seen.pid,
        )
        await self._ready(record, seen)
        return seen.pid

    def is_alive(self, record: hub_pb2.ShardRecord) -> bool:
        with self._lock:
            seen = self._seen.get(record.shard_id)
        return seen is not None and seen.running

    def adopt(self, record: hub_pb2.ShardRecord) -> int | None:
        with self._lock:
            seen = self._seen.get(record.shard_id)
        if seen is None or not seen.running or seen.spec != self.spec_hash(record):
            return None
        return seen.pid

    async def stop(self, record: hub_pb2.ShardRecord) -> None:
        """Stop and remove the shard's container (never its volume); no error if none."""
        await asyncio.to_thread(self._remove_by_name, self.container_name(record.shard_id))
        with self._lock:
            self._seen.pop(record.shard_id, None)
        log.info("shard_container_stopped", shard_id=record.shard_id)

    def port_available(self, port: int) -> bool:
        return True  # each container has its own network namespace

    # ---- reconciling and watching ----

    async def reconcile(self, records: list[hub_pb2.ShardRecord]) -> None:
        """Match labelled containers with records, both ways, then start watching.

        Re-adopts running containers (nothing is restarted), removes those whose
        spec changed (volume kept: the supervisor recreates them), and reports
        labelled containers without a record as orphans (left alone).
        """
        await asyncio.to_thread(self._refresh)  # makes the client too, off the loop
        self._compose = await asyncio.to_thread(self._own_compose_labels)
        by_id = {r.shard_id: r for r in records if r.step != hub_pb2.SPAWN_STEP_ABANDONED}
        with self._lock:
            seen = dict(self._seen)
        self.orphans = sorted(set(seen) - set(by_id))
        for shard_id in self.orphans:
            log.warning(
                "shard_orphan",
                shard_id=shard_id,
                container=seen[shard_id].container_id[:12],
                volume=self.volume_name(shard_id),
                detail="labelled for this cluster but not in the hub's records; left alone",
            )
        for shard_id, record in by_id.items():
            found = seen.get(shard_id)
            if found is None:
                log.info(
                    "shard_container_missing", shard_id=shard_id, detail="recreated on its volume"
                )
            elif found.spec != self.spec_hash(record):
                log.warning(
                    "shard_spec_changed", shard_id=shard_id, detail="recreated on its volume"
                )
                await self.stop(record)
            else:
                log.info(
                    "shard_container_adopted", shard_id=shard_id, container=found.container_id[:12]
                )
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="docker-watch", daemon=True)
            self._watcher.start()

    async def close(self) -> None:
        """Stop watching (the containers keep running). Idempotent."""
        self._stop.set()
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.join, 5.0)
            self._watcher = None

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.poll_interval_s):
            try:
                self._refresh()
            except EngineError as exc:
                log.warning("docker_watch_failed", detail=exc.message)

    def _refresh(self) -> None:
        """One list call; a container is inspected only when it is new or changed state."""
        with self._lock:
            before = dict(self._seen)
        seen = {}
        with _engine_errors("list shard containers"):
            for row in self.client.api.containers(all=True, filters=self._filters()):
                labels = row.get("Labels") or {}
                shard_id = labels.get(LABEL_SHARD)
                if not shard_id:
                    continue
                running = row.get("State") == "running"
                known = before.get(shard_id)
                if (
                    known is not None
                    and known.container_id == row["Id"]
                    and known.running == running
                ):
                    seen[shard_id] = known
                    continue
                with contextlib.suppress(docker_not_found()):
                    attrs = self.client.api.inspect_container(row["Id"])
                    seen[shard_id] = _seen_from(attrs)
        with self._lock:
            self._seen = seen

    # ---- engine work (worker threads) ----

    def _own_compose_labels(self) -> dict[str, str]:
        """:func:`compose_labels` of the hub's own container (its hostname is its id)."""
        import docker.errors

        try:
            own = self.client.containers.get(socket.gethostname())
        except docker.errors.DockerException:  # not a container of this engine
            return {}
        return compose_labels(own.labels or {})

    def _tls_archive(self, record: hub_pb2.ShardRecord) -> bytes:
        """``data/`` and ``tls/`` (the certificate the hub issued) as a tar for the volume."""
        uid = self.settings.shard_uid
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            dirs = ["data"] + (["tls"] if self.template.tls else [])
            for name in dirs:
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, uid, uid
                info.mtime = int(time.time())
                tar.addfile(info)
            if self.template.tls:
                source = shard_tls_dir(record.data_dir)
                for name, mode in ((CA_CERT_FILE, 0o644), (CERT_FILE, 0o644), (KEY_FILE, 0o600)):
                    data = Path(source, name).read_bytes()
                    info = tarfile.TarInfo(f"tls/{name}")
                    info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
                    info.mtime = int(time.time())
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def _run_container(self, record: hub_pb2.ShardRecord, tar: bytes) -> Seen:
        import docker.errors

        name = self.container_name(record.shard_id)
        want = self.spec_hash(record)
        with _engine_errors(f"start {name}"):
            container = self._get(name)
            if container is not None and not self._ours(container, record.shard_id):
                raise EngineError(
                    f"container {name} exists and is not {record.shard_id} of this cluster"
                )
            if container is not None and container.labels.get(LABEL_SPEC) != want:
                log.warning("shard_spec_changed", shard_id=record.shard_id, detail="recreating")
                container.remove(force=True)
                container = None
            if container is None:
                self._ensure_volume(record)
                try:
                    container = self._create(record, name)
                except docker.errors.APIError as exc:
                    if exc.status_code != 409:
                        raise
                    # Created meanwhile (another start, or a hub that died): adopt it if ours.
                    container = self.client.containers.get(name)
                    if not self._ours(container, record.shard_id):
                        raise EngineError(f"container {name} exists and is not ours") from exc
                    log.info("shard_container_conflict_adopted", shard_id=record.shard_id)
            container.reload()
            if container.status != "running":
                container.put_archive(SHARD_HOME, tar)  # a fresh certificate for each start
                container.start()
                container.reload()
        seen = _seen(container)
        with self._lock:
            self._seen[record.shard_id] = seen
        return seen

    def _get(self, name: str) -> Any:
        import docker.errors

        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound:
            return None

    def _ensure_volume(self, record: hub_pb2.ShardRecord) -> None:
        import docker.errors

        name = self.volume_name(record.shard_id)
        try:
            self.client.volumes.get(name)
        except docker.errors.NotFound:
            labels = {k: v for k, v in self.labels(record).items() if k != LABEL_SPEC}
            self.client.volumes.create(name=name, labels=labels)

    def _create(self, record: hub_pb2.ShardRecord, name: str) -> Any:
        s = self.settings
        return self.client.containers.create(
            self.image_of(record),
            command=self.argv(record),
            name=name,
            hostname=name,
            labels=self.labels(record),
            volumes={self.volume_name(record.shard_id): {"bind": SHARD_HOME, "mode": "rw"}},
            network=s.network,
            restart_policy={"Name": s.restart_policy},
            stop_signal="SIGTERM",
            detach=True,
        )

    def _remove_by_name(self, name: str) -> None:
        with _engine_errors(f"remove {name}"):
            container = self._get(name)
            if container is None:
                return
            with contextlib.suppress(Exception):
                container.stop(timeout=self.settings.stop_timeout_s)
            container.remove(force=True, v=False)

    def _state(self, container_id: str) -> dict[str, Any]:
        with _engine_errors("inspect a shard container"):
            state: dict[str, Any] = self.client.api.inspect_container(container_id)["State"]
        return state

    def _failure(self, container_id: str) -> str:
        """The end of a failed container's log, then remove it."""
        with _engine_errors("read a failed container's log"):
            container = self.client.containers.get(container_id)
            tail: str = container.logs(tail=20).decode(errors="replace").strip()
            container.remove(force=True, v=False)
        return tail

    def _health_address(self, record: hub_pb2.ShardRecord, seen: Seen) -> str:
        """Where the readiness check dials: the shard's address on the network."""
        return record.address

    async def _ready(self, record: hub_pb2.ShardRecord, seen: Seen) -> None:
        """Wait until the shard answers its gRPC health check; fail at once if it exits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.start_timeout_s
        while True:
            state = await asyncio.to_thread(self._state, seen.container_id)
            if state.get("Status") in ("exited", "dead") or state.get("Restarting"):
                tail = await asyncio.to_thread(self._failure, seen.container_id)
                with self._lock:
                    self._seen.pop(record.shard_id, None)
                raise ShardStartFailed(
                    f"{record.shard_id}: container exited with code {state.get('ExitCode')} "
                    f"before serving (removed): {tail[-2000:]}"
                )
            left = deadline - loop.time()
            if left <= 0:
                await self.stop(record)
                raise ShardStartFailed(
                    f"{record.shard_id}: not healthy within {self.start_timeout_s:g}s (removed)"
                )
            try:
                await wait_healthy(
                    self._health_address(record, seen),
                    timeout_s=min(1.0, left),
                    tls=self.tls,
                    server_role=Role.SHARD,
                )
                return
            except Unavailable:
                continue


def _seen(container: Any) -> Seen:
    return _seen_from(container.attrs)


def _seen_from(attrs: dict[str, Any]) -> Seen:
    """What a full inspection says about a labelled container."""
    state = attrs.get("State", {})
    labels = attrs.get("Config", {}).get("Labels") or {}
    return Seen(
        container_id=attrs["Id"],
        shard_id=labels.get(LABEL_SHARD, ""),
        running=bool(state.get("Running")) and not state.get("Restarting"),
        pid=int(state.get("Pid") or 0),
        spec=labels.get(LABEL_SPEC, ""),
    )


def compose_labels(hub: Mapping[str, str]) -> dict[str, str]:
    """The labels that make a shard container a one-off container of the hub's compose
    service, as ``docker-compose run`` makes them; {} for a hub not run by compose.

    ``docker-compose down`` then stops and removes the shard containers with the
    rest, while ``up``, ``restart`` and ``stop`` leave them alone (one-off
    containers are not a service's replicas), and ``ps`` lists them.
    """
    if not hub.get(COMPOSE_PROJECT):
        return {}
    kept = {key: hub[key] for key in _COMPOSE_KEPT if key in hub}
    return {**kept, "com.docker.compose.oneoff": "True"}


def engine_client() -> Any:
    """A ``docker.DockerClient`` from the environment (blocking: it asks the engine its API
    version). Raises :class:`EngineError` when no engine answers."""
    import docker

    with _engine_errors("reach the Docker engine"):
        return docker.from_env()


def docker_not_found() -> type[Exception]:
    """The SDK's NotFound (a container removed between listing and inspecting it)."""
    import docker.errors

    return docker.errors.NotFound  # type: ignore[no-any-return]


def make_docker_spawner(
    template: ShardTemplate, policy: hub_pb2.HubConfig, tls: TLSConfig | None
) -> DockerSpawner:
    """The docker spawner for a hub whose stored config pinned ``policy.template_version``."""
    return DockerSpawner(
        DockerSettings.from_env(),
        template,
        image=policy.template_version,
        tls=tls,
        start_timeout_s=policy.shard_start_timeout_s,
    )
