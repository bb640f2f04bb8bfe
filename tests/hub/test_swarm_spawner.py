"""The swarm spawner's pure parts; tests/deploy/test_swarm.py runs it on a real swarm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hub.spawner import ShardTemplate
from hub.swarm_spawner import (
    NODE_FILE,
    SwarmSettings,
    SwarmSpawner,
    pin_image,
    repository_of,
)
from protos import hub_pb2

DIGEST = "sha256:" + "ab" * 32


def spawner(tls: bool = True) -> SwarmSpawner:
    template = ShardTemplate(
        content_address="content:7000",
        hub_address=lambda: "hub:7000",
        daily_attempt_limit=20,
        daily_token_limit=1000,
        base_allowance=1000,
        tls=tls,
    )
    settings = SwarmSettings(image="127.0.0.1:5000/canistry:x", network="canistry", cluster_id="c1")
    return SwarmSpawner(
        settings,
        template,
        image=f"swarm:127.0.0.1:5000/canistry@{DIGEST}",
        tls=None,
        client=object(),
    )


def test_an_image_is_pinned_by_its_registry_digest() -> None:
    assert repository_of("127.0.0.1:5000/canistry:test") == "127.0.0.1:5000/canistry"
    assert repository_of("127.0.0.1:5000/canistry") == "127.0.0.1:5000/canistry"
    assert repository_of(f"r.io/a/b:1@{DIGEST}") == "r.io/a/b"

    class Data:
        id = DIGEST

    class Images:
        def get_registry_data(self, image: str) -> Data:
            assert image == "127.0.0.1:5000/canistry:test"
            return Data()

    class Client:
        images = Images()

    settings = SwarmSettings(image="127.0.0.1:5000/canistry:test", network="n")
    assert pin_image(settings, Client()) == f"swarm:127.0.0.1:5000/canistry@{DIGEST}"
    by_digest = SwarmSettings(image=f"r/c@{DIGEST}", network="n")
    assert pin_image(by_digest) == f"swarm:r/c@{DIGEST}"


def test_names_address_and_the_certificate_from_secrets() -> None:
    s = spawner()
    assert s.image == f"127.0.0.1:5000/canistry@{DIGEST}"
    assert s.place("shard-0001") == ("c1-shard-0001:7000", 7000)
    assert s.volume_name("shard-0001") == "c1-shard-0001-data"
    record = hub_pb2.ShardRecord(shard_id="shard-0001", data_dir="/x")
    argv = s.argv(record)
    assert argv[argv.index("--tls-dir") + 1] == "/run/secrets"
    assert "/run/secrets" in s.health_test()
    assert spawner(tls=False).health_test() == ["NONE"]


def test_the_spec_hash_changes_with_what_the_shard_runs_and_where(tmp_path: Path) -> None:
    s = spawner()
    record = hub_pb2.ShardRecord(shard_id="shard-0001", data_dir=str(tmp_path))
    same = s.spec_hash(record, "node-a")
    assert same == s.spec_hash(record, "node-a")
    assert s.spec_hash(record, "node-b") != same
    assert spawner(tls=False).spec_hash(record, "node-a") != same


def test_the_node_is_read_from_the_record_of_its_creation(tmp_path: Path) -> None:
    s = spawner()
    record = hub_pb2.ShardRecord(shard_id="shard-0001", data_dir=str(tmp_path))
    assert s.recorded_node(record) is None
    (tmp_path / NODE_FILE).write_text(json.dumps({"node_id": "abc"}))
    assert s.recorded_node(record) == "abc"


def test_settings_come_from_the_environment() -> None:
    s = SwarmSettings.from_env(
        {
            "CANISTRY_SHARD_IMAGE": "r/c:1",
            "CANISTRY_DOCKER_NETWORK": "net",
            "CANISTRY_CLUSTER_ID": "k",
        }
    )
    assert (s.image, s.network, s.cluster_id, s.hub_address) == ("r/c:1", "net", "k", "hub:7000")
    with pytest.raises(ValueError, match="network"):
        SwarmSettings.from_env({"CANISTRY_SHARD_IMAGE": "r/c:1"})


def test_stop_waits_until_the_task_has_drained() -> None:
    """Removing a service returns before its container exits: stop scales it to 0 first
    and waits for the task to stop, so a shard started at once does not meet the old one."""

    class Service:
        name = "c1-shard-0001"

        def __init__(self) -> None:
            self.calls: list[str] = []
            self.states = ["running", "running", "complete"]

        def scale(self, replicas: int) -> None:
            self.calls.append(f"scale {replicas}")

        def tasks(self) -> list[dict[str, Any]]:
            self.calls.append("tasks")
            return [{"Status": {"State": self.states.pop(0)}}]

        def remove(self) -> None:
            self.calls.append("remove")

    service = Service()

    class Secrets:
        def list(self, filters: dict[str, str]) -> list[Any]:
            return []

    class Client:
        secrets = Secrets()

    s = spawner()
    s._client = Client()
    s._get = lambda name: service  # type: ignore[method-assign]
    s._remove("shard-0001")
    assert service.calls == ["scale 0", "tasks", "tasks", "tasks", "remove"]
