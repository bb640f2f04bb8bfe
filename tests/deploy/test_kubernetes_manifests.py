"""deploy/kubernetes and the kubernetes spawner's objects, checked without a cluster.

``kubectl kustomize`` (client side) renders the manifests with certificates
made here by ``canistry init-certs``; every object is then validated against
the Kubernetes 1.32 OpenAPI schemas, strictly (``kubernetes-validate``). The
RBAC is checked to let the hub create only StatefulSets and Services, in its
own namespace, and do nothing at all with Secrets: shards enrol for their
certificates at the hub's enrollment port. Skips, saying why, where kubectl
or kubernetes-validate is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.spawner import ShardTemplate
from protos import hub_pb2

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate to check the schemas"
)
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here to render the kustomization (apt install kubernetes-client)")
    tree = tmp_path_factory.mktemp("k8s") / "kubernetes"
    shutil.copytree(ROOT / "deploy" / "kubernetes", tree, ignore=shutil.ignore_patterns("certs"))
    names = ("hub", "registry", "content", "gateway", "operator")
    subprocess.run(
        [sys.executable, "-m", "canistry", "init-certs", "--ca-dir", "certs/ca"]
        + [f"{n}=certs/{n}" for n in names],
        cwd=tree,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [kubectl, "kustomize", str(tree)], check=True, capture_output=True, text=True
    )
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_every_object_passes_the_schema_and_lives_in_the_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    kinds = sorted({d["kind"] for d in rendered})
    assert kinds == [
        "ConfigMap", "Deployment", "Namespace", "Role", "RoleBinding", "Secret", "Service",
        "ServiceAccount", "StatefulSet",
    ]  # fmt: skip
    for doc in rendered:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "canistry", doc["metadata"]["name"]


def test_the_hub_may_create_only_statefulsets_and_services_in_its_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    assert not of_kind(rendered, "ClusterRole") and not of_kind(rendered, "ClusterRoleBinding")
    (role,) = of_kind(rendered, "Role").values()
    created, named = set(), set()
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        named.update(rule["resources"])
        if "create" in rule["verbs"]:
            created.update(rule["resources"])
    assert created == {"statefulsets", "services"}
    assert named == {"statefulsets", "services"}  # nothing at all on secrets
    (binding,) = of_kind(rendered, "RoleBinding").values()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": "canistry"}
    ]
    hub = of_kind(rendered, "StatefulSet")["hub"]["spec"]["template"]["spec"]
    assert hub["serviceAccountName"] == "hub"
    assert "--spawner=kubernetes" in hub["containers"][0]["args"]


def test_shards_enrol_at_the_hubs_port_against_the_public_ca_certificate(
    rendered: list[dict[str, Any]],
) -> None:
    hub = of_kind(rendered, "StatefulSet")["hub"]["spec"]["template"]["spec"]["containers"][0]
    assert "--enroll-port=7001" in hub["args"]
    assert {"name": "enroll", "containerPort": 7001} in hub["ports"]
    env = {e["name"]: e.get("value") for e in hub["env"]}
    assert env["CANISTRY_HUB_ENROLL_ADDRESS"] == "hub:7001"
    service = of_kind(rendered, "Service")["hub"]["spec"]
    assert {"name": "enroll", "port": 7001, "targetPort": 7001} in service["ports"]
    # The ConfigMap the hub names in its shards' pods: that exact name, the CA's
    # certificate and nothing else (never its key).
    ca = of_kind(rendered, "ConfigMap")[env["CANISTRY_K8S_CA_CONFIGMAP"]]
    assert set(ca["data"]) == {"ca.pem"} and "PRIVATE KEY" not in ca["data"]["ca.pem"]
    assert ca["data"]["ca.pem"].startswith("-----BEGIN CERTIFICATE-----")


def test_certificates_come_from_secrets_and_only_the_hub_holds_the_ca(
    rendered: list[dict[str, Any]],
) -> None:
    secrets = of_kind(rendered, "Secret")
    workloads = {**of_kind(rendered, "Deployment"), **of_kind(rendered, "StatefulSet")}
    holders = []
    for name, w in workloads.items():
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"].get("volumes", [])}
        assert volumes["tls"]["secret"]["secretName"] in secrets, name
        tls = secrets[volumes["tls"]["secret"]["secretName"]]
        assert set(tls["data"]) == {"ca.pem", "cert.pem", "key.pem"}
        if "ca" in volumes:
            holders.append(name)
            assert set(secrets[volumes["ca"]["secret"]["secretName"]]["data"]) == {
                "ca.pem",
                "ca.key",
            }
    assert holders == ["hub"]
    assert sorted(workloads) == ["content", "gateway", "hub", "registry"]


def test_the_spawners_objects_pass_the_schema(tmp_path: Path) -> None:
    from hub.kubernetes_spawner import KubernetesSettings, KubernetesSpawner

    template = ShardTemplate(
        content_address="content:7000",
        hub_address=lambda: "hub:7000",
        daily_attempt_limit=20,
        daily_token_limit=1000,
        base_allowance=1000,
        tls=True,
    )
    settings = KubernetesSettings(image="r/canistry@sha256:" + "0" * 64, namespace="canistry")
    spawner = KubernetesSpawner(settings, template, image=settings.image, tls=None, client=object())
    record = hub_pb2.ShardRecord(shard_id="shard-0001", data_dir=str(tmp_path / "shard-0001"))
    for doc in (
        spawner.statefulset_manifest(record, "a-join-token"),
        spawner.service_manifest(record),
    ):
        doc["metadata"]["namespace"] = "canistry"
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
