"""The ``kubernetes`` spawner: each shard is a StatefulSet of one replica, through lightkube.

Per shard, in the hub's own namespace, all named ``<cluster>-<shard id>``:

- a **StatefulSet** of one replica running the shard image (pinned at the
  hub's init: the stored ``template_version`` is ``kubernetes:<image>``; give
  the image by digest, ``name@sha256:...``), with a ``volumeClaimTemplate``
  ``data`` mounted at ``/var/lib/canistry/data`` and a PVC retention policy
  of Retain both when deleted and when scaled: **retiring a shard keeps its
  PVC** (``data-<name>-0``), and a StatefulSet created again under the same
  name binds the same claim, so the data comes back;
- a **headless Service** (``clusterIP: None``) selecting the shard's pod; the
  shard serves at ``<name>.<namespace>.svc:7000``.

**No Secrets**: the hub's Role allows only StatefulSets and Services. A TLS
shard gets its certificate by **enrolling** (:mod:`hub.enrollment`, as
kubeadm joins nodes): at each start the hub issues a one-time join token
bound to the shard's id, keeps only its hash, and puts the token in the
pod template's environment (``CANISTRY_JOIN_TOKEN`` of the ``enroll`` init
container; it is not in the spec hash). The init container runs ``canistry
enroll``: unless the shard's ``tls`` directory on its PVC already holds a
certificate good for more than 30 days, it makes a key there (the private
key never leaves the pod), and trades the token and a CSR for a
certificate at the hub's enrollment port (``CANISTRY_HUB_ENROLL_ADDRESS``,
server-only TLS), checking the hub against the cluster CA certificate
mounted from the ConfigMap the kustomization makes
(``CANISTRY_K8S_CA_CONFIGMAP``: public, ``ca.pem`` only). A start that
finds the StatefulSet already there gives it the fresh token (a merge
patch of its init container). Whoever may read StatefulSets in the namespace
can read a token, so a token is good once, for one shard, for three start
timeouts, and only on the hub's enrollment port. Shards created by a hub
that still used Secrets have another spec hash, so they are recreated once
(PVC kept) and enrol; their old ``<name>-tls`` Secrets are the operator's to
delete (``kubectl delete secret -l io.canistry.managed-by=canistry-hub``).

Every object carries the docker spawner's labels (``io.canistry.managed-by``,
``io.canistry.cluster``, ``io.canistry.shard``, and on the StatefulSet
``io.canistry.spec``, a hash of what it runs).

**Reconciling** (:meth:`KubernetesSpawner.reconcile`) works as with docker:
StatefulSets are found by label, so a restarted hub re-adopts its shards; one
whose spec hash differs from its record's is deleted (PVC kept) and so
recreated by the supervisor; a labelled StatefulSet without a record is an
orphan, reported and left alone. **Creation is idempotent**: a 409 on create
is resolved by reading the object and adopting it if its labels say it is
this cluster's shard. **Readiness** is the shard's gRPC health check within
the start deadline. API calls are async (lightkube's ``AsyncClient``); the
synchronous :meth:`is_alive` and :meth:`adopt` answer from a picture that a
watcher task refreshes every ``poll_interval_s``.

A StatefulSet's pods have no pid the hub could see: the "pid" of a shard is
a stable number derived from its StatefulSet's uid.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hub.docker_spawner import LABEL_CLUSTER, LABEL_MANAGED_BY, LABEL_SHARD, LABEL_SPEC, MANAGED_BY
from hub.spawner import TLS_DIR, ShardTemplate
from protos import hub_pb2
from runtime import logs
from runtime.errors import Unavailable
from runtime.rpc import wait_healthy
from runtime.tls import CA_CERT_FILE, Role, TLSConfig

__all__ = [
    "KubernetesApiError",
    "KubernetesSettings",
    "KubernetesSpawner",
    "ShardStartFailed",
    "make_kubernetes_spawner",
]

log = logs.get_logger(__name__)

#: The stored template_version of a kubernetes hub: this prefix and the image.
TEMPLATE_PREFIX = "kubernetes:"
SHARD_HOME = "/var/lib/canistry"
#: The shard's certificate directory, on its PVC (the init container writes it).
SHARD_TLS_DIR = f"{SHARD_HOME}/data/{TLS_DIR}"
#: Where the init container finds the cluster CA certificate (from the ConfigMap).
CA_MOUNT = f"{SHARD_HOME}/ca"
#: The init container's environment variable holding the join token (canistry.enroll reads it).
TOKEN_ENV = "CANISTRY_JOIN_TOKEN"
_SERVICE_ACCOUNT_NS = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubernetesApiError(Unavailable):
    """The Kubernetes API refused or could not be reached."""

    code = "kubernetes-api"


class ShardStartFailed(KubernetesApiError):
    """A shard's StatefulSet did not serve within the start deadline."""

    code = "shard-start-failed"


class NoEnrollment(KubernetesApiError):
    """A TLS shard cannot get a certificate: the hub serves no enrollment port."""

    code = "no-enrollment"


class TokenIssuer(Protocol):
    """Issues a shard's one-time join token (:class:`hub.enrollment.Enrollment`)."""

    async def issue_token(self, shard_id: str) -> str: ...


@dataclass(frozen=True)
class KubernetesSettings:
    """Where the hub's shards go and what they get. Read from the hub's environment."""

    image: str
    """The shard image (``CANISTRY_SHARD_IMAGE``), best by digest; pinned at init."""
    namespace: str
    """The hub's own namespace (``CANISTRY_K8S_NAMESPACE``, else the service account's)."""
    cluster_id: str = "canistry"
    """Names and labels this cluster's objects (``CANISTRY_CLUSTER_ID``)."""
    hub_address: str = "hub:7000"
    """Where shards dial the hub (``CANISTRY_HUB_ADDRESS``)."""
    enroll_address: str = "hub:7001"
    """The hub's enrollment port, where a shard's init container trades its join token
    for a certificate (``CANISTRY_HUB_ENROLL_ADDRESS``)."""
    ca_config_map: str = "canistry-ca-cert"
    """The ConfigMap holding the cluster CA certificate (key ``ca.pem``, public) that the
    init container checks the hub against (``CANISTRY_K8S_CA_CONFIGMAP``)."""
    storage_size: str = "1Gi"
    """Each shard's claim (``CANISTRY_K8S_STORAGE_SIZE``)."""
    storage_class: str = ""
    """The claims' storage class; empty: the cluster default (``CANISTRY_K8S_STORAGE_CLASS``)."""
    shard_port: int = 7000
    """The port a shard serves gRPC on in its pod."""
    shard_uid: int = 10001
    """The image's unprivileged user (the pod's ``fsGroup``, so the claim is writable)."""
    poll_interval_s: float = 2.0
    """How often the watcher refreshes its picture of the labelled StatefulSets."""

    def __post_init__(self) -> None:
        for name in ("image", "namespace", "cluster_id", "hub_address", "enroll_address"):
            if not getattr(self, name).strip():
                raise ValueError(f"kubernetes spawner: {name} is required")
        if self.poll_interval_s <= 0:
            raise ValueError("kubernetes spawner: poll_interval_s must be > 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KubernetesSettings:
        """The settings from ``CANISTRY_*`` variables (the one place they are read)."""
        env = os.environ if env is None else env
        namespace = env.get("CANISTRY_K8S_NAMESPACE", "")
        if not namespace and _SERVICE_ACCOUNT_NS.exists():
            namespace = _SERVICE_ACCOUNT_NS.read_text().strip()
        return cls(
            image=env.get("CANISTRY_SHARD_IMAGE", ""),
            namespace=namespace,
            cluster_id=env.get("CANISTRY_CLUSTER_ID", "canistry"),
            hub_address=env.get("CANISTRY_HUB_ADDRESS", "hub:7000"),
            enroll_address=env.get("CANISTRY_HUB_ENROLL_ADDRESS", "hub:7001"),
            ca_config_map=env.get("CANISTRY_K8S_CA_CONFIGMAP", "canistry-ca-cert"),
            storage_size=env.get("CANISTRY_K8S_STORAGE_SIZE", "1Gi"),
            storage_class=env.get("CANISTRY_K8S_STORAGE_CLASS", ""),
        )


def pin_image(settings: KubernetesSettings) -> str:
    """The template_version pinning the shard image: ``kubernetes:<image>``.

    The hub cannot resolve a tag to a digest without registry access; an
    image given by tag is pinned as given, with a warning.
    """
    if "@sha256:" not in settings.image:
        log.warning(
            "shard_image_not_by_digest",
            image=settings.image,
            detail="give CANISTRY_SHARD_IMAGE as name@sha256:... so every shard runs the same",
        )
    return f"{TEMPLATE_PREFIX}{settings.image}"


@contextlib.asynccontextmanager
async def _api_errors(doing: str) -> AsyncIterator[None]:
    """API and transport failures as :class:`KubernetesApiError` (the one translation)."""
    import httpx2
    from lightkube import ApiError

    try:
        yield
    except ApiError as exc:
        raise KubernetesApiError(f"cannot {doing}: {exc.status.code} {exc.status.message}") from exc
    except httpx2.HTTPError as exc:
        raise KubernetesApiError(f"cannot {doing}: API unreachable: {exc}") from exc


def _status_code(exc: BaseException) -> int:
    status = getattr(exc, "status", None)
    return int(getattr(status, "code", 0) or 0)


@dataclass(frozen=True)
class Seen:
    """One labelled StatefulSet, as the last look found it."""

    name: str
    shard_id: str
    uid: str
    replicas: int
    spec: str

    @property
    def pid(self) -> int:
        """A stable stand-in for a pid: from the StatefulSet's uid."""
        return int(hashlib.sha256(self.uid.encode()).hexdigest()[:7], 16) + 1


class KubernetesSpawner:
    """Shards as StatefulSets; see the module docstring."""

    name = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings,
        template: ShardTemplate,
        *,
        image: str,
        tls: TLSConfig | None,
        start_timeout_s: float = 60.0,
        client: Any = None,
    ) -> None:
        """``image``: the pinned image (stored init config); ``tls``: the hub's own
        certificate, for health checks; ``client``: a lightkube ``AsyncClient``
        (default: from the environment: in-cluster, else ``KUBECONFIG``)."""
        self.settings = settings
        self.template = template
        self.image = image.removeprefix(TEMPLATE_PREFIX)
        self.tls = tls
        self.start_timeout_s = start_timeout_s
        self._client = client
        self._tokens: TokenIssuer | None = None
        self.orphans: list[str] = []
        """Shard ids of labelled StatefulSets with no record (reported, never touched)."""
        self._seen: dict[str, Seen] = {}
        self._watcher: asyncio.Task[None] | None = None

    def use_enrollment(self, enrollment: TokenIssuer) -> None:
        """Give each TLS shard a join token from ``enrollment`` at its start (the hub calls it)."""
        self._tokens = enrollment

    @property
    def client(self) -> Any:
        if self._client is None:
            from lightkube import AsyncClient

            self._client = AsyncClient(namespace=self.settings.namespace)
        return self._client

    # ---- names, spec, labels, manifests ----

    def object_name(self, shard_id: str) -> str:
        return f"{self.settings.cluster_id}-{shard_id}"

    def claim_name(self, shard_id: str) -> str:
        """The PVC the StatefulSet's template makes for its one pod (kept on retire)."""
        return f"data-{self.object_name(shard_id)}-0"

    def place(self, shard_id: str) -> tuple[str, int]:
        """The address a new shard will serve at (its headless Service), and its port."""
        port = self.settings.shard_port
        return f"{self.object_name(shard_id)}.{self.settings.namespace}.svc:{port}", port

    def argv(self, record: hub_pb2.ShardRecord) -> list[str]:
        s = self.settings
        return self.template.serve_args(
            record.shard_id,
            data_dir=f"{SHARD_HOME}/data",
            host="0.0.0.0",
            port=s.shard_port,
            hub=s.hub_address,
            tls_dir=SHARD_TLS_DIR,
        )

    def enroll_argv(self, record: hub_pb2.ShardRecord) -> list[str]:
        """The init container's ``canistry enroll ...`` (empty for a plain-text shard)."""
        if not self.template.tls:
            return []
        return [
            "enroll",
            "--shard-id", record.shard_id,
            "--hub", self.settings.enroll_address,
            "--ca", f"{CA_MOUNT}/{CA_CERT_FILE}",
            "--tls-dir", SHARD_TLS_DIR,
            "--timeout", f"{self.start_timeout_s:g}",
        ]  # fmt: skip

    def spec_hash(self, record: hub_pb2.ShardRecord) -> str:
        """A hash of what the shard runs; the join token is left out (each start has its own)."""
        s = self.settings
        spec = {
            "image": self.image,
            "command": self.argv(record),
            "enroll": self.enroll_argv(record),
            "storage": [s.storage_size, s.storage_class],
            "port": s.shard_port,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def labels(self, shard_id: str) -> dict[str, str]:
        return {
            LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_CLUSTER: self.settings.cluster_id,
            LABEL_SHARD: shard_id,
        }

    def selector(self) -> dict[str, str]:
        return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLUSTER: self.settings.cluster_id}

    def service_manifest(self, record: hub_pb2.ShardRecord) -> dict[str, Any]:
        name, port = self.object_name(record.shard_id), self.settings.shard_port
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": self.labels(record.shard_id)},
            "spec": {
                "clusterIP": "None",
                "selector": self.labels(record.shard_id),
                "ports": [{"name": "grpc", "port": port, "targetPort": port}],
                "publishNotReadyAddresses": True,
            },
        }

    def init_containers(self, record: hub_pb2.ShardRecord, token: str) -> list[dict[str, Any]]:
        """The ``enroll`` init container of a TLS shard, carrying its join token."""
        if not self.template.tls:
            return []
        return [
            {
                "name": "enroll",
                "image": self.image,
                "args": self.enroll_argv(record),
                "env": [{"name": TOKEN_ENV, "value": token}],
                "volumeMounts": [
                    {"name": "data", "mountPath": f"{SHARD_HOME}/data"},
                    {"name": "ca", "mountPath": CA_MOUNT, "readOnly": True},
                ],
            }
        ]

    def _init_containers(self, record: hub_pb2.ShardRecord, token: str) -> dict[str, Any]:
        init = self.init_containers(record, token)
        return {"initContainers": init} if init else {}

    def statefulset_manifest(self, record: hub_pb2.ShardRecord, token: str = "") -> dict[str, Any]:
        """The shard's StatefulSet; ``token`` is its join token (a TLS shard needs one)."""
        s = self.settings
        name, labels = self.object_name(record.shard_id), self.labels(record.shard_id)
        mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": f"{SHARD_HOME}/data"}]
        volumes: list[dict[str, Any]] = []
        if self.template.tls:
            # The public CA certificate only: what the init container checks the hub against.
            ca_items = [{"key": CA_CERT_FILE, "path": CA_CERT_FILE}]
            volumes.append(
                {"name": "ca", "configMap": {"name": s.ca_config_map, "items": ca_items}}
            )
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": s.storage_size}},
        }
        if s.storage_class:
            claim["storageClassName"] = s.storage_class
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": name,
                "labels": {**labels, LABEL_SPEC: self.spec_hash(record)},
            },
            "spec": {
                "replicas": 1,
                "serviceName": name,
                "selector": {"matchLabels": labels},
                "persistentVolumeClaimRetentionPolicy": {
                    "whenDeleted": "Retain",
                    "whenScaled": "Retain",
                },
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {
                            "runAsUser": s.shard_uid,
                            "runAsGroup": s.shard_uid,
                            "fsGroup": s.shard_uid,
                            "runAsNonRoot": True,
                        },
                        "terminationGracePeriodSeconds": 15,
                        **self._init_containers(record, token),
                        "containers": [
                            {
                                "name": "shard",
                                "image": self.image,
                                "args": self.argv(record),
                                "ports": [{"name": "grpc", "containerPort": s.shard_port}],
                                "volumeMounts": mounts,
                                "readinessProbe": {
                                    "tcpSocket": {"port": s.shard_port},
                                    "periodSeconds": 5,
                                },
                            }
                        ],
                        "volumes": volumes,
                    },
                },
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data", "labels": labels}, "spec": claim}
                ],
            },
        }

    # ---- the Spawner protocol ----

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        """Create (or adopt) the shard's Service and StatefulSet; return once it serves.

        A TLS shard gets a fresh join token; a StatefulSet that was already
        there is given it, and scaled to one replica if it had none.
        """
        from lightkube.resources.apps_v1 import StatefulSet
        from lightkube.resources.core_v1 import Service

        token = await self._issue_token(record.shard_id)
        await self._put(Service.from_dict(self.service_manifest(record)), Service, record.shard_id)
        manifest = self.statefulset_manifest(record, token)
        want = StatefulSet.from_dict(manifest)
        sts, created = await self._put(want, StatefulSet, record.shard_id)
        seen = _seen(sts)
        if seen.spec != self.spec_hash(record):  # an older spec under this name: recreate
            log.warning("shard_spec_changed", shard_id=record.shard_id, detail="recreating")
            await self._delete(StatefulSet, self.object_name(record.shard_id))
            seen = _seen((await self._put(want, StatefulSet, record.shard_id))[0])
        elif not created and (self.template.tls or seen.replicas < 1):
            # It was there: give it this start's token, and a replica if it had none.
            patch: dict[str, Any] = {"replicas": 1}
            if self.template.tls:
                init = manifest["spec"]["template"]["spec"]["initContainers"]
                patch["template"] = {"spec": {"initContainers": init}}
            async with _api_errors(f"update {seen.name}"):
                await self.client.patch(
                    StatefulSet, seen.name, {"spec": patch}, patch_type=_merge_patch()
                )
            seen = Seen(seen.name, seen.shard_id, seen.uid, 1, seen.spec)
        self._seen[record.shard_id] = seen
        log.info("shard_statefulset_started", shard_id=record.shard_id, name=seen.name)
        await self._ready(record)
        return seen.pid

    async def _issue_token(self, shard_id: str) -> str:
        """A join token for this start of a TLS shard ("" for a plain-text one)."""
        if not self.template.tls:
            return ""
        if self._tokens is None:
            raise NoEnrollment(
                f"{shard_id}: a TLS shard enrols for its certificate, and this hub serves no "
                "enrollment port (canistry serve hub --enroll-port)"
            )
        return await self._tokens.issue_token(shard_id)

    def is_alive(self, record: hub_pb2.ShardRecord) -> bool:
        seen = self._seen.get(record.shard_id)
        return seen is not None and seen.replicas >= 1

    def adopt(self, record: hub_pb2.ShardRecord) -> int | None:
        seen = self._seen.get(record.shard_id)
        if seen is None or seen.replicas < 1 or seen.spec != self.spec_hash(record):
            return None
        return seen.pid

    async def stop(self, record: hub_pb2.ShardRecord) -> None:
        """Delete the shard's StatefulSet and Service; its PVC (with its certificate) is kept."""
        from lightkube.resources.apps_v1 import StatefulSet
        from lightkube.resources.core_v1 import Service

        name = self.object_name(record.shard_id)
        await self._delete(StatefulSet, name)
        await self._delete(Service, name)
        self._seen.pop(record.shard_id, None)
        log.info(
            "shard_statefulset_stopped",
            shard_id=record.shard_id,
            claim_kept=self.claim_name(record.shard_id),
        )

    def port_available(self, port: int) -> bool:
        return True  # each pod has its own network namespace

    # ---- reconciling and watching ----

    async def reconcile(self, records: list[hub_pb2.ShardRecord]) -> None:
        """Match labelled StatefulSets with records, both ways, then start watching."""
        await self._refresh()
        by_id = {r.shard_id: r for r in records if r.step != hub_pb2.SPAWN_STEP_ABANDONED}
        seen = dict(self._seen)
        self.orphans = sorted(set(seen) - set(by_id))
        for shard_id in self.orphans:
            log.warning(
                "shard_orphan",
                shard_id=shard_id,
                statefulset=seen[shard_id].name,
                detail="labelled for this cluster but not in the hub's records; left alone",
            )
        for shard_id, record in by_id.items():
            found = seen.get(shard_id)
            if found is None:
                log.info("shard_statefulset_missing", shard_id=shard_id, detail="recreated")
            elif found.spec != self.spec_hash(record):
                log.warning("shard_spec_changed", shard_id=shard_id, detail="recreated, PVC kept")
                await self.stop(record)
            else:
                log.info("shard_statefulset_adopted", shard_id=shard_id, name=found.name)
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch(), name="kubernetes-watch")

    async def close(self) -> None:
        """Stop watching (the shards keep running) and close the client. Idempotent."""
        task, self._watcher = self._watcher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self._refresh()
            except KubernetesApiError as exc:
                log.warning("kubernetes_watch_failed", detail=exc.message)

    async def _refresh(self) -> None:
        from lightkube.resources.apps_v1 import StatefulSet

        seen = {}
        async with _api_errors("list shard statefulsets"):
            async for sts in self.client.list(StatefulSet, labels=self.selector()):
                found = _seen(sts)
                if found.shard_id:
                    seen[found.shard_id] = found
        self._seen = seen

    # ---- API calls ----

    async def _put(self, obj: Any, kind: Any, shard_id: str) -> tuple[Any, bool]:
        """Create ``obj``; on a conflict adopt the existing one if it is ours.

        Returns the object and whether this call created it.
        """
        from lightkube import ApiError

        name = obj.metadata.name
        async with _api_errors(f"create {kind.__name__} {name}"):
            try:
                return await self.client.create(obj), True
            except ApiError as exc:
                if _status_code(exc) != 409:
                    raise
            existing = await self.client.get(kind, name)
            labels = existing.metadata.labels or {}
            if (
                labels.get(LABEL_CLUSTER) != self.settings.cluster_id
                or labels.get(LABEL_SHARD) != shard_id
            ):
                raise KubernetesApiError(f"{kind.__name__} {name} exists and is not ours")
            return existing, False

    async def _delete(self, kind: Any, name: str) -> None:
        from lightkube import ApiError

        async with _api_errors(f"delete {kind.__name__} {name}"):
            try:
                await self.client.delete(kind, name)
            except ApiError as exc:
                if _status_code(exc) != 404:
                    raise

    def _health_address(self, record: hub_pb2.ShardRecord) -> str:
        """Where the readiness check dials: the shard's headless Service."""
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
                    "(its StatefulSet is left for the supervisor to retry)"
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
                continue


def _merge_patch() -> Any:
    """A JSON merge patch: a list in it (the init containers) replaces the list whole."""
    from lightkube.types import PatchType

    return PatchType.MERGE


def _seen(sts: Any) -> Seen:
    labels = sts.metadata.labels or {}
    return Seen(
        name=sts.metadata.name,
        shard_id=labels.get(LABEL_SHARD, ""),
        uid=sts.metadata.uid or sts.metadata.name,
        replicas=int(sts.spec.replicas if sts.spec.replicas is not None else 1),
        spec=labels.get(LABEL_SPEC, ""),
    )


def make_kubernetes_spawner(
    template: ShardTemplate, policy: hub_pb2.HubConfig, tls: TLSConfig | None
) -> KubernetesSpawner:
    """The kubernetes spawner for a hub whose stored config pinned ``policy.template_version``."""
    return KubernetesSpawner(
        KubernetesSettings.from_env(),
        template,
        image=policy.template_version,
        tls=tls,
        start_timeout_s=policy.shard_start_timeout_s,
    )
