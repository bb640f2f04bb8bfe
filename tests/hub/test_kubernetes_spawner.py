"""The kubernetes spawner against an in-process fake of the API endpoints it calls.

No Kubernetes runs on this machine: :class:`tests.hub.fake_kubernetes.FakeKubernetes`
speaks the REST paths on loopback, and lightkube's real ``AsyncClient`` talks
to it over HTTP. A shard's "pod" is a real gRPC health server on loopback that
the readiness check reaches only while the shard's StatefulSet exists with a
replica; for a TLS hub, each pod first runs its init container as a real
``canistry enroll`` process, with the arguments and join token of the
StatefulSet the fake holds, and then serves mutual TLS on the certificate it
got. ``test_on_a_real_cluster`` runs against a real cluster when
``KUBECONFIG`` is set.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from hub.docker_spawner import LABEL_CLUSTER, LABEL_MANAGED_BY, LABEL_SHARD, LABEL_SPEC
from hub.spawner import ShardTemplate
from protos import hub_pb2, hub_pb2_grpc
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime import rpc
from runtime.rpc import ServerConfig
from runtime.tls import ClusterCA, Identity, Role, TLSConfig
from tests.hub.fake_kubernetes import FakeKubernetes

lightkube = pytest.importorskip("lightkube", reason="the kubernetes spawner needs lightkube")

from hub.kubernetes_spawner import (  # noqa: E402
    TOKEN_ENV,
    KubernetesApiError,
    KubernetesSettings,
    KubernetesSpawner,
    NoEnrollment,
    ShardStartFailed,
)

ROOT = Path(__file__).resolve().parents[2]

NS = "canistry"
IMAGE = "127.0.0.1:5000/canistry@sha256:" + "ab" * 32


def template(*, tls: bool = False, limit: int = 20) -> ShardTemplate:
    return ShardTemplate(
        content_address="content:7000",
        hub_address=lambda: "hub:7000",
        daily_attempt_limit=limit,
        daily_token_limit=1000,
        base_allowance=1000,
        tls=tls,
    )


class Pods:
    """One loopback health server standing in for every shard pod that the fake runs."""

    def __init__(self, api: FakeKubernetes) -> None:
        self.api = api
        self.address = ""
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self._server = grpc.aio.server()
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)

    def address_of(self, name: str) -> str:
        sts = self.api.get("statefulsets", name)
        if sts is None or sts["spec"].get("replicas", 1) < 1:
            return "127.0.0.1:1"  # no pod: nothing answers
        return self.address


class LoopbackSpawner(KubernetesSpawner):
    """The real spawner; only its readiness check dials the loopback stand-in pod."""

    pods: Pods

    def _health_address(self, record: hub_pb2.ShardRecord) -> str:
        return self.pods.address_of(self.object_name(record.shard_id))


@pytest.fixture
async def api() -> AsyncIterator[FakeKubernetes]:
    async with FakeKubernetes() as fake:
        yield fake


@pytest.fixture
async def pods(api: FakeKubernetes) -> AsyncIterator[Pods]:
    p = Pods(api)
    await p.start()
    yield p
    await p.stop()


def make(api: FakeKubernetes, pods: Pods, **kw: Any) -> LoopbackSpawner:
    from lightkube import AsyncClient, KubeConfig
    from lightkube.config.models import Cluster, User

    settings = KubernetesSettings(image=IMAGE, namespace=NS, poll_interval_s=0.1)
    config = KubeConfig.from_one(
        cluster=Cluster(server=api.url), user=User(token="fake-token"), namespace=NS
    )
    client = AsyncClient(config, namespace=NS)
    spawner = LoopbackSpawner(
        settings,
        kw.pop("template", template()),
        image="kubernetes:" + IMAGE,
        tls=None,
        start_timeout_s=kw.pop("start_timeout_s", 10.0),
        client=client,
    )
    spawner.pods = pods
    tokens = kw.pop("tokens", None)
    if tokens is not None:
        spawner.use_enrollment(tokens)
    return spawner


class Tokens:
    """Stands in for the hub's :class:`~hub.enrollment.Enrollment`: counts the tokens issued."""

    def __init__(self) -> None:
        self.issued: list[tuple[str, str]] = []

    async def issue_token(self, shard_id: str) -> str:
        token = f"token-{len(self.issued) + 1}-for-{shard_id}"
        self.issued.append((shard_id, token))
        return token


def record(tmp_path: Path, n: int) -> hub_pb2.ShardRecord:
    shard_id = f"shard-{n:04d}"
    return hub_pb2.ShardRecord(
        shard_id=shard_id,
        step=hub_pb2.SPAWN_STEP_IDENTITY_ISSUED,
        address=f"canistry-{shard_id}.{NS}.svc:7000",
        port=7000,
        data_dir=str(tmp_path / shard_id),
    )


async def test_a_shard_is_a_statefulset_with_a_claim_template_and_a_headless_service(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    spawner = make(api, pods)
    r = record(tmp_path, 1)
    assert spawner.place(r.shard_id) == ("canistry-shard-0001.canistry.svc:7000", 7000)
    pid = await spawner.start(r)
    r.pid = pid
    sts = api.get("statefulsets", "canistry-shard-0001")
    assert sts is not None
    labels = sts["metadata"]["labels"]
    assert labels[LABEL_MANAGED_BY] == "canistry-hub" and labels[LABEL_CLUSTER] == "canistry"
    assert labels[LABEL_SHARD] == "shard-0001" and labels[LABEL_SPEC] == spawner.spec_hash(r)
    spec = sts["spec"]
    assert spec["replicas"] == 1 and spec["serviceName"] == "canistry-shard-0001"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    assert container["args"][:4] == ["serve", "shard", "--shard-id", "shard-0001"]
    svc = api.get("services", "canistry-shard-0001")
    assert svc is not None and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"][LABEL_SHARD] == "shard-0001"
    assert api.names("persistentvolumeclaims") == ["data-canistry-shard-0001-0"]
    assert api.names("secrets") == []  # a plain-text shard has no certificate
    assert spawner.is_alive(r) and spawner.adopt(r) == pid
    await spawner.close()


def pod_spec(api: FakeKubernetes, name: str) -> dict[str, Any]:
    sts = api.get("statefulsets", name)
    assert sts is not None
    spec: dict[str, Any] = sts["spec"]["template"]["spec"]
    return spec


def token_in(pod: dict[str, Any]) -> str:
    (init,) = pod["initContainers"]
    (env,) = init["env"]
    assert env["name"] == TOKEN_ENV
    return str(env["value"])


async def test_a_tls_shard_enrols_with_a_join_token_and_no_secret_is_ever_touched(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    tokens = Tokens()
    spawner = make(api, pods, template=template(tls=True), tokens=tokens)
    r = record(tmp_path, 1)
    await spawner.start(r)
    pod = pod_spec(api, "canistry-shard-0001")
    (init,) = pod["initContainers"]
    assert init["name"] == "enroll" and init["image"] == IMAGE
    assert init["args"] == [
        "enroll", "--shard-id", "shard-0001", "--hub", "hub:7001",
        "--ca", "/var/lib/canistry/ca/ca.pem", "--tls-dir", "/var/lib/canistry/data/tls",
        "--timeout", "10",
    ]  # fmt: skip
    assert tokens.issued == [("shard-0001", token_in(pod))]
    assert {m["name"]: m.get("readOnly", False) for m in init["volumeMounts"]} == {
        "data": False,
        "ca": True,
    }
    # The public CA certificate only, from the ConfigMap the kustomization makes.
    (ca,) = pod["volumes"]
    assert ca == {
        "name": "ca",
        "configMap": {"name": "canistry-ca-cert", "items": [{"key": "ca.pem", "path": "ca.pem"}]},
    }
    (shard,) = pod["containers"]
    assert shard["args"][shard["args"].index("--tls-dir") + 1] == "/var/lib/canistry/data/tls"
    assert [m["name"] for m in shard["volumeMounts"]] == ["data"]  # the certificate is on the PVC
    spec = api.get("statefulsets", "canistry-shard-0001")["metadata"]["labels"][LABEL_SPEC]  # type: ignore[index]

    # A second start finds the StatefulSet there: it gets this start's token (the last one
    # is void at the hub), and the spec hash, which leaves the token out, stays.
    await spawner.start(r)
    pod = pod_spec(api, "canistry-shard-0001")
    assert [t for _, t in tokens.issued] == ["token-1-for-shard-0001", token_in(pod)]
    assert token_in(pod) == "token-2-for-shard-0001"
    assert api.get("statefulsets", "canistry-shard-0001")["metadata"]["labels"][LABEL_SPEC] == spec  # type: ignore[index]
    assert ("PATCH", f"/apis/apps/v1/namespaces/{NS}/statefulsets/canistry-shard-0001") in (
        api.calls
    )
    await spawner.stop(r)
    assert not [path for _, path in api.calls if "secrets" in path]
    assert api.names("persistentvolumeclaims") == ["data-canistry-shard-0001-0"]
    await spawner.close()


async def test_a_tls_shard_without_an_enrollment_port_is_refused_before_any_object(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    spawner = make(api, pods, template=template(tls=True))
    with pytest.raises(NoEnrollment, match="enroll-port"):
        await spawner.start(record(tmp_path, 1))
    assert api.calls == []
    await spawner.close()


async def test_creation_is_idempotent_and_never_takes_a_foreign_object(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    spawner = make(api, pods)
    r = record(tmp_path, 1)
    first = await spawner.start(r)
    again = await spawner.start(r)  # 409s, resolved by adopting its own objects
    assert again == first
    assert api.names("statefulsets") == ["canistry-shard-0001"]
    assert api.names("persistentvolumeclaims") == ["data-canistry-shard-0001-0"]
    # Someone else's StatefulSet under the name of shard-0002: refused, left alone.
    api.objects[("statefulsets", NS, "canistry-shard-0002")] = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "canistry-shard-0002", "namespace": NS, "labels": {"app": "x"}},
        "spec": {
            "replicas": 1,
            "serviceName": "x",
            "selector": {"matchLabels": {"app": "x"}},
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "x", "image": "x"}]},
            },
        },
    }
    with pytest.raises(KubernetesApiError, match="not ours"):
        await spawner.start(record(tmp_path, 2))
    assert api.get("statefulsets", "canistry-shard-0002")["metadata"]["labels"] == {"app": "x"}  # type: ignore[index]
    await spawner.close()


async def test_retiring_a_shard_keeps_its_claim_and_a_new_start_binds_it_again(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    spawner = make(api, pods)
    r = record(tmp_path, 1)
    await spawner.start(r)
    await spawner.stop(r)
    assert api.names("statefulsets") == [] and api.names("services") == []
    assert api.names("persistentvolumeclaims") == ["data-canistry-shard-0001-0"]
    assert not spawner.is_alive(r)
    await spawner.stop(r)  # stopping a stopped shard is no error
    await spawner.start(r)
    assert api.names("persistentvolumeclaims") == ["data-canistry-shard-0001-0"]
    await spawner.close()


async def test_a_restarted_hub_re_adopts_by_label_recreates_a_stale_spec_reports_orphans(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    first = make(api, pods)
    r1, r2, r3 = (record(tmp_path, n) for n in (1, 2, 3))
    for r in (r1, r2, r3):
        r.pid = await first.start(r)
    await first.close()
    creates = sum(1 for method, _ in api.calls if method == "POST")

    # shard-0002 runs what an older hub made (another spec); the hub restarts
    # knowing shards 1 and 2 (3 is an orphan).
    api.objects[("statefulsets", NS, "canistry-shard-0002")]["metadata"]["labels"][LABEL_SPEC] = (
        "0123456789abcdef"
    )
    second = make(api, pods)
    await second.reconcile([r1, r2])
    assert second.orphans == ["shard-0003"]
    assert second.adopt(r1) == r1.pid  # same StatefulSet, nothing created
    assert sum(1 for method, _ in api.calls if method == "POST") == creates
    assert "canistry-shard-0003" in api.names("statefulsets")  # an orphan is left alone
    assert api.get("statefulsets", "canistry-shard-0002") is None  # to be recreated
    assert "data-canistry-shard-0002-0" in api.names("persistentvolumeclaims")
    assert second.adopt(r2) is None
    new_pid = await second.start(r2)
    assert api.get("statefulsets", "canistry-shard-0002")["metadata"]["labels"][LABEL_SPEC] == (  # type: ignore[index]
        second.spec_hash(r2)
    )
    assert second.adopt(r2) == new_pid
    assert api.names("persistentvolumeclaims") == [
        f"data-canistry-shard-000{n}-0" for n in (1, 2, 3)
    ]
    await second.close()


async def test_the_watcher_sees_a_statefulset_deleted_behind_the_hubs_back(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    spawner = make(api, pods)
    r = record(tmp_path, 1)
    r.pid = await spawner.start(r)
    await spawner.reconcile([r])
    assert spawner.is_alive(r)
    del api.objects[("statefulsets", NS, "canistry-shard-0001")]
    deadline = asyncio.get_running_loop().time() + 10
    while spawner.is_alive(r):
        assert asyncio.get_running_loop().time() < deadline, "the watcher never noticed"
        await asyncio.sleep(0.05)
    assert spawner.adopt(r) is None
    await spawner.close()


async def test_readiness_is_the_health_check_within_the_deadline(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    spawner = make(api, pods, start_timeout_s=1.0)
    pods.address = "127.0.0.1:1"  # the pod never serves
    with pytest.raises(ShardStartFailed, match="not healthy within 1s"):
        await spawner.start(record(tmp_path, 1))
    await spawner.close()


async def test_api_failures_are_domain_errors(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    spawner = make(api, pods)
    api.fail_next = [500]
    with pytest.raises(KubernetesApiError, match="500"):
        await spawner.start(record(tmp_path, 1))
    await api.__aexit__(None, None, None)  # the API server goes away
    with pytest.raises(KubernetesApiError, match="unreachable"):
        await spawner.reconcile([])
    await spawner.close()


def test_settings_come_from_the_environment() -> None:
    s = KubernetesSettings.from_env(
        {
            "CANISTRY_SHARD_IMAGE": IMAGE,
            "CANISTRY_K8S_NAMESPACE": "prod",
            "CANISTRY_CLUSTER_ID": "c1",
        }
    )
    assert (s.image, s.namespace, s.cluster_id) == (IMAGE, "prod", "c1")
    with pytest.raises(ValueError, match="namespace"):
        KubernetesSettings.from_env({"CANISTRY_SHARD_IMAGE": IMAGE})


@pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"),
    reason="no KUBECONFIG: no Kubernetes cluster to test against on this machine",
)
async def test_on_a_real_cluster(tmp_path: Path) -> None:
    """With KUBECONFIG (and CANISTRY_K8S_NAMESPACE, CANISTRY_SHARD_IMAGE): a shard's
    objects are created, found again by label by a second spawner, and retired with
    the claim kept. Readiness needs the hub inside the cluster, so it is not awaited."""
    from lightkube import AsyncClient

    settings = KubernetesSettings(
        image=os.environ.get("CANISTRY_SHARD_IMAGE", "busybox"),
        namespace=os.environ.get("CANISTRY_K8S_NAMESPACE", "default"),
        cluster_id="canistry-test",
    )

    class NoWait(KubernetesSpawner):
        async def _ready(self, record: hub_pb2.ShardRecord) -> None:
            return None

    spawner = NoWait(settings, template(), image=settings.image, tls=None, client=AsyncClient())
    r = record(tmp_path, 1)
    try:
        r.pid = await spawner.start(r)
        again = NoWait(settings, template(), image=settings.image, tls=None, client=AsyncClient())
        await again.reconcile([r])
        assert again.adopt(r) == r.pid
        await again.close()
    finally:
        await spawner.stop(r)
        await spawner.close()


class LoopbackPlacingSpawner(LoopbackSpawner):
    """As a hub test needs it: the hub itself also dials the address it records."""

    def place(self, shard_id: str) -> tuple[str, int]:
        return self.pods.address, 7000


async def test_a_hub_on_kubernetes_creates_its_shards_and_re_adopts_them_after_a_restart(
    api: FakeKubernetes, pods: Pods, tmp_path: Path, registry: Any
) -> None:
    from hub.service import HubService
    from tests.hub._support import hub_settings, shards_up

    def spawner() -> LoopbackPlacingSpawner:
        s = make(api, pods)
        placing = LoopbackPlacingSpawner(
            s.settings, s.template, image=s.image, tls=None, client=s.client
        )
        placing.pods = pods
        return placing

    settings = hub_settings(tmp_path, registry.address, min_shards=2)
    async with HubService(settings, spawner=spawner()) as hub:
        await shards_up(hub, registry, 2)
        assert hub.policy is not None and hub.policy.spawner == "kubernetes"
    assert api.names("statefulsets") == ["canistry-shard-0001", "canistry-shard-0002"]
    creates = sum(1 for method, path in api.calls if method == "POST" and "statefulsets" in path)

    async with HubService(settings, spawner=spawner()) as again:
        await shards_up(again, registry, 2)
        records = again.store.shards()
        assert {r.step for r in records} == {hub_pb2.SPAWN_STEP_REGISTERED}
    after = sum(1 for method, path in api.calls if method == "POST" and "statefulsets" in path)
    assert after == creates  # every shard re-adopted, none created again


class EnrollingPods:
    """Each TLS shard's "pod": its init container, then a shard serving mutual TLS.

    The init container is a real ``canistry enroll`` process, run with the
    arguments and the join token of the StatefulSet the fake API holds (the
    enrollment address and the two paths mapped onto this machine); the
    "shard" is a real :class:`runtime.rpc.Server` (health only) on the
    certificate it enrolled for.
    """

    def __init__(self, api: FakeKubernetes, root: Path, ca_pem: bytes) -> None:
        self.api = api
        self.root = root
        self.ca_file = root / "ca.pem"
        root.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(ca_pem)
        self.enroll_address: Callable[[], str] = lambda: ""
        self.ports: dict[str, int] = {}
        self.servers: dict[str, rpc.Server] = {}

    def tls_dir(self, shard_id: str) -> Path:
        return self.root / shard_id / "tls"

    def place(self, shard_id: str) -> tuple[str, int]:
        if shard_id not in self.ports:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.ports[shard_id] = sock.getsockname()[1]
        return f"127.0.0.1:{self.ports[shard_id]}", self.ports[shard_id]

    async def boot(self, name: str, shard_id: str) -> None:
        if shard_id in self.servers:
            return
        pod = pod_spec(self.api, name)
        (init,) = pod["initContainers"]
        args = list(init["args"])
        for flag, value in (
            ("--hub", self.enroll_address()),
            ("--ca", str(self.ca_file)),
            ("--tls-dir", str(self.tls_dir(shard_id))),
        ):
            args[args.index(flag) + 1] = value
        env = {**os.environ, TOKEN_ENV: token_in(pod), "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "canistry", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, out.decode()
        tls = TLSConfig.from_dir(self.tls_dir(shard_id))
        server = rpc.Server(f"pod-{shard_id}", ServerConfig(port=self.ports[shard_id], tls=tls), [])
        await server.start()
        self.servers[shard_id] = server

    async def stop(self) -> None:
        for server in self.servers.values():
            await server.stop()


class EnrollingSpawner(KubernetesSpawner):
    """The real spawner; its pods are :class:`EnrollingPods` on loopback."""

    pods: EnrollingPods

    def place(self, shard_id: str) -> tuple[str, int]:
        return self.pods.place(shard_id)

    async def _ready(self, record: hub_pb2.ShardRecord) -> None:
        await self.pods.boot(self.object_name(record.shard_id), record.shard_id)
        await super()._ready(record)


async def test_a_tls_hub_on_kubernetes_enrols_its_shards_and_re_adopts_them_without_secrets(
    api: FakeKubernetes, pods: Pods, tmp_path: Path
) -> None:
    from hub.service import HubService
    from tests.hub._support import hub_settings, shards_up

    ca = ClusterCA.open(tmp_path / "ca")

    def cert(role: Role) -> TLSConfig:
        return ca.issue(Identity(role, role.value), tmp_path / "tls" / role.value)

    enrolling = EnrollingPods(api, tmp_path / "pods", ca.cert_pem)

    def spawner() -> EnrollingSpawner:
        s = make(api, pods)
        real = EnrollingSpawner(
            s.settings, template(tls=True), image=s.image, tls=cert(Role.HUB), client=s.client,
            start_timeout_s=30.0,
        )  # fmt: skip
        real.pods = enrolling
        return real

    registry_cfg = RegistryConfig(
        data_dir=tmp_path / "registry",
        server=ServerConfig(tls=cert(Role.REGISTRY)),
        soft_limit=2,
        hard_limit=3,
        durable=False,
    )
    try:
        async with RegistryService(registry_cfg) as registry:
            settings = hub_settings(
                tmp_path,
                registry.address,
                server=ServerConfig(tls=cert(Role.HUB)),
                ca_dir=tmp_path / "ca",
                enroll_port=0,
                min_shards=2,
                shard_start_timeout_s=30.0,
            )
            async with HubService(settings, spawner=spawner()) as hub:
                enrolling.enroll_address = lambda: hub.enroll_address
                await shards_up(hub, registry, 2, timeout_s=120)
                # The certificate each pod enrolled for is that shard's at the hub's main port.
                shard_tls = TLSConfig.from_dir(enrolling.tls_dir("shard-0002"))
                async with rpc.make_channel(hub.address, shard_tls, server_role=Role.HUB) as ch:
                    grant = await hub_pb2_grpc.HubStub(ch).RequestAllowance(
                        hub_pb2.AllowanceRequest(shard_id="shard-0002", seq=1, amount=7)
                    )
                assert grant.granted == 7
            creates = [c for c in api.calls if c[0] == "POST" and "statefulsets" in c[1]]

            async with HubService(settings, spawner=spawner()) as again:
                enrolling.enroll_address = lambda: again.enroll_address
                await shards_up(again, registry, 2, timeout_s=120)
            after = [c for c in api.calls if c[0] == "POST" and "statefulsets" in c[1]]
            assert after == creates  # re-adopted, none created again
    finally:
        await enrolling.stop()
    assert api.names("statefulsets") == ["canistry-shard-0001", "canistry-shard-0002"]
    assert not [path for _, path in api.calls if "secrets" in path]
