"""The docker spawner against a real engine: labels, adoption, reconciling, failures.

Shards here run plain text (a template without TLS) on a network of their
own, with no hub or content behind them: they answer the health check all
the same, which is what starting and adopting need. This test process is on
the host, which reaches a container by its IP on the bridge network, not by
its name, so the readiness check dials the IP (:class:`HostSpawner`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hub.docker_spawner import (
    LABEL_CLUSTER,
    LABEL_MANAGED_BY,
    LABEL_SHARD,
    LABEL_SPEC,
    DockerSettings,
    DockerSpawner,
    EngineError,
    Seen,
    ShardStartFailed,
)
from hub.spawner import ShardTemplate
from protos import hub_pb2

pytestmark = pytest.mark.timeout(300)

TEMPLATE = ShardTemplate(
    content_address="content:7000",
    hub_address=lambda: "hub:7000",
    daily_attempt_limit=20,
    daily_token_limit=1000,
    base_allowance=1000,
    tls=False,
)


class HostSpawner(DockerSpawner):
    """Checks readiness at the container's IP: this test runs on the host, off the network."""

    def _health_address(self, record: hub_pb2.ShardRecord, seen: Seen) -> str:
        attrs = self.client.api.inspect_container(seen.container_id)
        ip = attrs["NetworkSettings"]["Networks"][self.settings.network]["IPAddress"]
        return f"{ip}:{self.settings.shard_port}"


@pytest.fixture
def cluster(engine: Any, image: str) -> Iterator[DockerSettings]:
    cluster_id = f"cantest{uuid.uuid4().hex[:8]}"
    network = engine.networks.create(f"{cluster_id}-net", labels={"io.canistry.test": cluster_id})
    try:
        yield DockerSettings(image=image, network=network.name, cluster_id=cluster_id)
    finally:
        label = {"label": f"{LABEL_CLUSTER}={cluster_id}"}
        for c in engine.containers.list(all=True, filters=label):
            c.remove(force=True)
        for c in engine.containers.list(all=True, filters={"name": cluster_id}):
            c.remove(force=True)
        for v in engine.volumes.list(filters=label):
            v.remove(force=True)
        network.remove()


def spawner(
    settings: DockerSettings, engine: Any, template: ShardTemplate = TEMPLATE, **kw: Any
) -> HostSpawner:
    image = kw.pop("image", engine.images.get(settings.image).id)
    return HostSpawner(
        settings, template, image=image, tls=None, start_timeout_s=60, client=engine, **kw
    )


def record(s: DockerSpawner, shard_id: str, tmp_path: Path) -> hub_pb2.ShardRecord:
    address, port = s.place(shard_id)
    return hub_pb2.ShardRecord(
        shard_id=shard_id,
        step=hub_pb2.SPAWN_STEP_REGISTERED,
        address=address,
        port=port,
        data_dir=str(tmp_path / shard_id),
    )


def containers(engine: Any, settings: DockerSettings) -> dict[str, Any]:
    found = engine.containers.list(
        all=True, filters={"label": f"{LABEL_CLUSTER}={settings.cluster_id}"}
    )
    return {c.labels[LABEL_SHARD]: c for c in found}


async def test_start_labels_adopts_and_stops(
    cluster: DockerSettings, engine: Any, tmp_path: Path
) -> None:
    s = spawner(cluster, engine)
    r = record(s, "shard-0001", tmp_path)
    began = time.monotonic()
    pid = await s.start(r)
    # A cold start's share of a spawn: volume, container, start, gRPC health SERVING.
    print(f"\ndocker spawner cold start to healthy: {time.monotonic() - began:.2f}s")
    c = containers(engine, cluster)["shard-0001"]
    assert pid > 0 and c.status == "running"
    assert c.labels[LABEL_MANAGED_BY] == "canistry-hub"
    assert c.labels[LABEL_SPEC] == s.spec_hash(r)
    assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert c.attrs["Config"]["Image"].startswith("sha256:")
    assert [m["Name"] for m in c.attrs["Mounts"]] == [f"{cluster.cluster_id}-shard-0001-data"]
    assert s.is_alive(r) and s.adopt(r) == pid

    # A new hub: it finds the container by its labels and adopts it; starting again is a no-op.
    again = spawner(cluster, engine)
    await again.reconcile([r])
    try:
        assert again.is_alive(r) and again.adopt(r) == pid
        assert await again.start(r) == pid
        assert containers(engine, cluster)["shard-0001"].id == c.id
    finally:
        await again.close()

    await s.stop(r)
    assert not containers(engine, cluster) and not s.is_alive(r)
    assert engine.volumes.get(f"{cluster.cluster_id}-shard-0001-data")  # never deleted


async def test_created_container_is_adopted_and_a_foreign_one_refused(
    cluster: DockerSettings, engine: Any, tmp_path: Path
) -> None:
    s = spawner(cluster, engine)
    r = record(s, "shard-0002", tmp_path)
    # The hub died between creating the container and recording it: the name is taken.
    s._ensure_volume(r)
    created = s._create(r, s.container_name(r.shard_id))
    await s.start(r)
    assert containers(engine, cluster)["shard-0002"].id == created.id

    foreign = record(s, "shard-0003", tmp_path)
    engine.containers.create(s.image, name=s.container_name("shard-0003"), command=["--version"])
    with pytest.raises(EngineError, match="not shard-0003 of this cluster"):
        await s.start(foreign)


async def test_reconcile_reports_orphans_and_recreates_changed_specs(
    cluster: DockerSettings, engine: Any, tmp_path: Path
) -> None:
    s = spawner(cluster, engine)
    kept, orphan = record(s, "shard-0004", tmp_path), record(s, "shard-0005", tmp_path)
    await s.start(kept)
    await s.start(orphan)
    old = containers(engine, cluster)

    # The next hub runs shards with another limit, and has no record of shard-0005.
    changed = spawner(cluster, engine, replace(TEMPLATE, daily_attempt_limit=21))
    await changed.reconcile([kept])
    try:
        now = containers(engine, cluster)
        assert changed.orphans == ["shard-0005"]
        assert now["shard-0005"].id == old["shard-0005"].id  # left alone
        assert "shard-0004" not in now  # removed for recreation...
        assert engine.volumes.get(f"{cluster.cluster_id}-shard-0004-data")  # ...on its volume
        await changed.start(kept)
        again = containers(engine, cluster)["shard-0004"]
        assert again.id != old["shard-0004"].id
        assert again.labels[LABEL_SPEC] == changed.spec_hash(kept) != s.spec_hash(kept)
    finally:
        await changed.close()


async def test_bad_config_fails_fast_and_removes_the_container(
    cluster: DockerSettings, engine: Any, tmp_path: Path
) -> None:
    s = spawner(cluster, engine, replace(TEMPLATE, daily_attempt_limit=0))
    r = record(s, "shard-0006", tmp_path)
    began = time.monotonic()
    with pytest.raises(ShardStartFailed, match="daily_attempt_limit"):
        await s.start(r)
    assert time.monotonic() - began < s.start_timeout_s / 2
    assert not containers(engine, cluster) and not s.is_alive(r)


async def test_missing_image_fails_fast(
    cluster: DockerSettings, engine: Any, tmp_path: Path
) -> None:
    s = spawner(cluster, engine, image="sha256:" + "0" * 64)
    with pytest.raises(ShardStartFailed, match="image not found"):
        await s.start(record(s, "shard-0007", tmp_path))
    assert not containers(engine, cluster)
