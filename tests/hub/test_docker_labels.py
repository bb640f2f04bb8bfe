"""The labels a docker hub gives shard containers, with and without docker-compose."""

from __future__ import annotations

from hub.docker_spawner import (
    LABEL_CLUSTER,
    LABEL_SHARD,
    DockerSettings,
    DockerSpawner,
    compose_labels,
)
from hub.spawner import ShardTemplate
from protos import hub_pb2

HUB_UNDER_COMPOSE = {
    "com.docker.compose.project": "canistry",
    "com.docker.compose.service": "hub",
    "com.docker.compose.container-number": "1",
    "com.docker.compose.oneoff": "False",
    "com.docker.compose.config-hash": "abc",
    "com.docker.compose.project.working_dir": "/srv/canistry/deploy",
    "com.docker.compose.version": "1.29.2",
}


def test_a_shard_of_a_compose_hub_is_a_one_off_container_of_the_hubs_service() -> None:
    assert compose_labels(HUB_UNDER_COMPOSE) == {
        "com.docker.compose.project": "canistry",
        "com.docker.compose.service": "hub",
        "com.docker.compose.oneoff": "True",
        "com.docker.compose.project.working_dir": "/srv/canistry/deploy",
        "com.docker.compose.version": "1.29.2",
    }


def test_a_hub_not_run_by_compose_adds_no_compose_label() -> None:
    assert compose_labels({}) == {}
    assert compose_labels({"org.opencontainers.image.title": "canistry"}) == {}


def test_shard_labels_carry_the_compose_labels_and_its_own() -> None:
    spawner = DockerSpawner(
        DockerSettings(image="sha256:feed", network="canistry"),
        ShardTemplate(
            content_address="content:7000",
            hub_address=lambda: "hub:7000",
            daily_attempt_limit=50,
            daily_token_limit=1000,
            base_allowance=10_000,
        ),
        image="docker:sha256:feed",
        tls=None,
        client=object(),
    )
    spawner._compose = compose_labels(HUB_UNDER_COMPOSE)
    labels = spawner.labels(hub_pb2.ShardRecord(shard_id="shard-0001"))
    assert labels["com.docker.compose.oneoff"] == "True"
    assert labels[LABEL_SHARD] == "shard-0001" and labels[LABEL_CLUSTER] == "canistry"


def test_docker_and_swarm_hubs_read_the_same_environment() -> None:
    from hub.swarm_spawner import SwarmSettings

    env = {"CANISTRY_SHARD_IMAGE": "r/c:1", "CANISTRY_DOCKER_NETWORK": "net",
           "CANISTRY_CLUSTER_ID": "k", "CANISTRY_HUB_ADDRESS": "hub:7001"}  # fmt: skip
    for s in (DockerSettings.from_env(env), SwarmSettings.from_env(env)):
        got = (s.image, s.network, s.cluster_id, s.hub_address)
        assert got == ("r/c:1", "net", "k", "hub:7001")
