"""Upgrade templates of the docker and swarm spawners, over a fake engine: what a
proposal's template resolves to, and that each shard runs its own record's image.

tests/deploy/test_docker_upgrade.py runs a governed upgrade on a real engine.
"""

from __future__ import annotations

import functools
from typing import Any

import docker.errors
import pytest
import requests

from hub import swarm_spawner
from hub.docker_spawner import DockerSettings, DockerSpawner, EngineError, resolve_template
from hub.execution import resolve_process_template, template_resolver
from hub.spawner import ShardTemplate
from hub.swarm_spawner import SwarmSettings, SwarmSpawner
from protos import hub_pb2
from runtime.errors import InvalidArgument

OLD = "sha256:" + "0a" * 32
NEW = "sha256:" + "0b" * 32


class Images:
    """An engine that holds one image, under a tag and its ID."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.asked: list[str] = []

    def get(self, reference: str) -> Any:
        self.asked.append(reference)
        if self.fail is not None:
            raise self.fail
        if reference not in ("canistry:v2", NEW, NEW.removeprefix("sha256:")[:12]):
            raise docker.errors.ImageNotFound(f"No such image: {reference}")

        class Image:
            id = NEW

        return Image()


class Engine:
    def __init__(self, fail: Exception | None = None) -> None:
        self.images = Images(fail)


@pytest.mark.parametrize("reference", ["canistry:v2", NEW, NEW[7:19]])
async def test_an_image_on_the_engine_resolves_to_its_pinned_id(reference: str) -> None:
    assert await resolve_template(reference, Engine()) == f"docker:{NEW}"


@pytest.mark.parametrize("reference", ["", " ", "-rm", "a b", "x;rm -rf /", "n" * 300])
async def test_a_malformed_reference_is_refused_before_the_engine_is_asked(
    reference: str,
) -> None:
    engine = Engine()
    with pytest.raises(InvalidArgument, match="not an image reference"):
        await resolve_template(reference, engine)
    assert engine.images.asked == []


async def test_an_image_the_engine_does_not_hold_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="no such image on the hub's engine"):
        await resolve_template("canistry:nowhere", Engine())
    bad = docker.errors.APIError("bad", explanation="invalid reference format")
    bad.response = type("R", (), {"status_code": 400})()  # type: ignore[assignment]
    with pytest.raises(InvalidArgument, match="invalid reference format"):
        await resolve_template("Canistry:V2", Engine(bad))


async def test_an_engine_that_does_not_answer_is_unavailable_not_invalid() -> None:
    down = requests.ConnectionError("connection refused")
    with pytest.raises(EngineError, match="engine unreachable"):
        await resolve_template("canistry:v2", Engine(down))


def test_each_spawner_gets_its_resolver() -> None:
    process = template_resolver(hub_pb2.HubConfig(spawner="process", template_root="/opt/t"))
    assert isinstance(process, functools.partial) and process.func is resolve_process_template
    assert process.keywords == {"root": "/opt/t"}
    assert template_resolver(hub_pb2.HubConfig(spawner="docker")) is resolve_template


async def test_spawners_without_upgrades_refuse_them() -> None:
    resolve = template_resolver(hub_pb2.HubConfig(spawner="kubernetes"))
    with pytest.raises(InvalidArgument, match="'kubernetes' shards are not built yet"):
        await resolve("canistry:v2")


def _spawner() -> DockerSpawner:
    template = ShardTemplate(
        content_address="content:7000",
        hub_address=lambda: "hub:7000",
        daily_attempt_limit=20,
        daily_token_limit=1000,
        base_allowance=1000,
        tls=False,
    )
    settings = DockerSettings(image="canistry:test", network="n", cluster_id="c1")
    return DockerSpawner(settings, template, image=f"docker:{OLD}", tls=None, client=object())


def test_each_shard_runs_the_image_its_record_names() -> None:
    s = _spawner()
    at_init = hub_pb2.ShardRecord(shard_id="shard-0001", template_version=f"docker:{OLD}")
    upgraded = hub_pb2.ShardRecord(shard_id="shard-0001", template_version=f"docker:{NEW}")
    unnamed = hub_pb2.ShardRecord(shard_id="shard-0001")  # a record from before templates
    assert s.image_of(at_init) == s.image_of(unnamed) == OLD
    assert s.image_of(upgraded) == NEW
    # The spec hash (a label) follows the image: reconcile keeps an upgraded container and
    # recreates one whose record was rolled back meanwhile.
    assert s.spec_hash(at_init) == s.spec_hash(unnamed) != s.spec_hash(upgraded)
    assert s.spec(upgraded)["image"] == NEW


class Registry:
    """An engine whose registry holds one repository, with one tag."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail

    def get_registry_data(self, reference: str) -> Any:
        if self.fail is not None:
            raise self.fail
        if reference not in (f"{REPO}:v2", f"{REPO}@{NEW}"):
            raise docker.errors.NotFound(f"manifest unknown: {reference}")

        class Data:
            id = NEW

        return Data()


class SwarmEngine:
    def __init__(self, fail: Exception | None = None) -> None:
        self.images = Registry(fail)


REPO = "127.0.0.1:5000/canistry"


@pytest.mark.parametrize("reference", [f"{REPO}:v2", f"{REPO}@{NEW}"])
async def test_a_swarm_template_resolves_to_its_registry_digest(reference: str) -> None:
    assert await swarm_spawner.resolve_template(reference, SwarmEngine()) == f"swarm:{REPO}@{NEW}"


async def test_a_swarm_template_the_registry_cannot_resolve_is_an_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match="no registry digest"):
        await swarm_spawner.resolve_template(f"{REPO}:nowhere", SwarmEngine())
    no_registry = docker.errors.APIError("Get https://nowhere:5000/v2/: connection refused")
    with pytest.raises(InvalidArgument, match="connection refused"):
        await swarm_spawner.resolve_template("nowhere:5000/c:1", SwarmEngine(no_registry))
    with pytest.raises(InvalidArgument, match="not an image reference"):
        await swarm_spawner.resolve_template("a b", SwarmEngine())
    down = requests.ConnectionError("connection refused")
    with pytest.raises(EngineError, match="engine unreachable"):
        await swarm_spawner.resolve_template(f"{REPO}:v2", SwarmEngine(down))
    resolve = template_resolver(hub_pb2.HubConfig(spawner="swarm"))
    assert resolve is swarm_spawner.resolve_template


def test_each_swarm_shard_runs_the_image_its_record_names() -> None:
    template = ShardTemplate(
        content_address="content:7000",
        hub_address=lambda: "hub:7000",
        daily_attempt_limit=20,
        daily_token_limit=1000,
        base_allowance=1000,
    )
    settings = SwarmSettings(image=f"{REPO}:x", network="n", cluster_id="c1")
    s = SwarmSpawner(settings, template, image=f"swarm:{REPO}@{OLD}", tls=None, client=object())
    at_init = hub_pb2.ShardRecord(shard_id="shard-0001", template_version=f"swarm:{REPO}@{OLD}")
    upgraded = hub_pb2.ShardRecord(shard_id="shard-0001", template_version=f"swarm:{REPO}@{NEW}")
    assert s.image_of(at_init) == s.image_of(hub_pb2.ShardRecord()) == f"{REPO}@{OLD}"
    assert s.image_of(upgraded) == f"{REPO}@{NEW}"
    assert s.spec_hash(at_init, "node-a") != s.spec_hash(upgraded, "node-a")
