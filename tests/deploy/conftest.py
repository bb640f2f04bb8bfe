"""A real Docker engine for the deploy tests: the image, built once, and a compose cluster.

Every test here skips, saying why, where no engine answers (CI runs
``../shared/docker/ensure-docker`` first) or no base image is at hand. The
image is built once per session from ``deploy/Dockerfile`` with
``--network none`` (wheels made on this host by ``deploy/wheels.sh``), from
``CANISTRY_TEST_BASE_IMAGE`` (default ``local/python:3.11-bookworm``, what
ensure-docker builds). Everything a test creates carries its own compose
project name, network name and cluster id, and is removed by that name or
label; shard volumes are removed by their cluster label.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"
IMAGE = "canistry:test"
BASE_IMAGE = os.environ.get("CANISTRY_TEST_BASE_IMAGE", "local/python:3.11-bookworm")
SOCKET = Path("/var/run/docker.sock")


def _engine() -> Any:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine answers here ({exc}); run ../shared/docker/ensure-docker")
    return client


@pytest.fixture(scope="session")
def engine() -> Any:
    return _engine()


@pytest.fixture(scope="session")
def image(engine: Any) -> str:
    """The Canistry image, built once per session (layers cached by the engine)."""
    import docker.errors

    try:
        engine.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"no base image {BASE_IMAGE}; run ../shared/docker/ensure-docker")
    if not any((ROOT / "deploy" / "wheels").glob("*.whl")):
        made = subprocess.run(
            [str(ROOT / "deploy" / "wheels.sh")], cwd=ROOT, capture_output=True, text=True
        )
        if made.returncode != 0:  # the image is built offline: no index, no wheels, no image
            pytest.skip(f"deploy/wheels.sh could not fetch the wheels: {made.stderr[-500:]}")
    subprocess.run(
        ["docker", "build", "--quiet", "--network", "none", "--build-arg",
         f"BASE_IMAGE={BASE_IMAGE}", "-f", "deploy/Dockerfile", "-t", IMAGE, "."],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return IMAGE


def free_port() -> int:
    from runtime.net import free_port as pick

    return pick("127.0.0.1")


@dataclass
class Compose:
    """One compose project on this engine, and how to reach it from here."""

    project: str
    env: dict[str, str]
    gateway_port: int
    engine: Any
    created: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def network(self) -> str:
        return self.env["CANISTRY_NETWORK"]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["docker-compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        return subprocess.run(
            argv, env=self.env, check=check, capture_output=True, text=True, timeout=300
        )

    def container(self, service: str) -> Any:
        found = self.engine.containers.list(
            all=True,
            filters={
                "label": [
                    f"com.docker.compose.project={self.project}",
                    f"com.docker.compose.service={service}",
                    "com.docker.compose.oneoff=False",  # the hub's shards are its one-offs
                ]
            },
        )
        assert len(found) == 1, f"{service}: {found}"
        return found[0]

    def shards(self) -> dict[str, Any]:
        """shard id -> its container (running or not), by this cluster's labels."""
        import docker.errors

        rows = self.engine.api.containers(
            all=True, filters={"label": f"io.canistry.cluster={self.project}"}
        )
        found = {}
        for row in rows:  # one the hub removes meanwhile is simply not there
            try:
                found[row["Labels"]["io.canistry.shard"]] = self.engine.containers.get(row["Id"])
            except docker.errors.NotFound:
                pass
        return found

    def hub_warnings(self) -> str:
        """The hub's warnings and errors, for a failing assertion's message."""
        lines = self.container("hub").logs().decode().splitlines()
        return "\n".join(line for line in lines if '"warning"' in line or '"error"' in line)

    def remove_shards(self) -> None:
        for c in self.shards().values():
            c.remove(force=True)

    def in_network(self, *argv: str, volumes: dict[str, Any] | None = None) -> str:
        """Run ``python3 argv...`` in a throwaway container on the cluster's network."""
        out: bytes = self.engine.containers.run(
            IMAGE,
            entrypoint=["python3"],
            command=list(argv),
            network=self.network,
            volumes=volumes or {},
            remove=True,
            labels={"io.canistry.test": self.project},
        )
        return out.decode()

    def stop_all(self, *down_args: str) -> None:
        """The README's full stop: a plain ``down`` (it removes the hub's shard containers)."""
        self.run("down", "--timeout", "10", *down_args)

    def teardown(self) -> None:
        try:
            self.stop_all("--volumes")
        except subprocess.CalledProcessError:
            self.remove_shards()  # what a failed down left
            self.run("down", "--volumes", "--timeout", "5", check=False)
        for volume in self.engine.volumes.list(
            filters={"label": f"io.canistry.cluster={self.project}"}
        ):
            volume.remove(force=True)


@pytest.fixture(scope="module")
def compose(engine: Any, image: str) -> Iterator[Compose]:
    if shutil.which("docker-compose") is None:
        pytest.skip("no docker-compose here; run ../shared/docker/ensure-docker")
    project = f"cantest{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {
        **os.environ,
        "DOCKER_GID": str(SOCKET.stat().st_gid),
        "CANISTRY_IMAGE": image,
        "CANISTRY_NETWORK": f"{project}-net",
        "CANISTRY_CLUSTER": project,
        "CANISTRY_GATEWAY_PORT": str(port),
        "CANISTRY_SOFT_LIMIT": "3",
        "CANISTRY_HARD_LIMIT": "6",
        "CANISTRY_WARM_POOL": "1",
        "CANISTRY_CONTENT_REPLICAS": "2",
        "CANISTRY_SCALE_INTERVAL": "2",
    }
    cluster = Compose(project, env, port, engine)
    try:
        cluster.run("up", "-d")
        yield cluster
    finally:
        cluster.teardown()
