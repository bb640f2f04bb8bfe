"""deploy/stack.yml on a single-node Docker Swarm: it scales, heals, re-adopts, keeps data.

One stack for the module (soft limit 3, hard limit 6), the tests in order:
users register through the gateway (published in host mode) until a shard
*service* appears by itself and serves; a killed shard task is healed; a
restarted hub service re-adopts every shard service (none created again);
``docker stack rm`` then a new deploy keeps every user and balance.

Needs a Docker engine, Debian's ``docker-registry`` (the image goes to a
registry on 127.0.0.1:5000 and is pinned by digest) and the base image; each
missing part skips the module saying so. A swarm this module initialised
(``--advertise-addr 127.0.0.1``) is left in teardown; one that was there is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from canistry.client import Client, Identity
from canistry.loadtest._answers import AnswerBook
from tests.deploy.conftest import BASE_IMAGE, ROOT, SOCKET, free_port
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

STACK_FILE = ROOT / "deploy" / "stack.yml"
LOCAL_TAG = "canistry:swarm-test"
REGISTRY = "127.0.0.1:5000"
USERS: list[tuple[Identity, str]] = []
FIGURES: dict[str, Any] = {}


def _registry_up() -> bool:
    try:
        return httpx.get(f"http://{REGISTRY}/v2/", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def swarm(engine: Any) -> Iterator[Any]:
    state = engine.info().get("Swarm", {}).get("LocalNodeState")
    made = False
    if state != "active":
        try:
            engine.swarm.init(advertise_addr="127.0.0.1")
        except Exception as exc:  # docker.errors.APIError: say why swarm cannot work here
            pytest.skip(f"docker swarm init failed here: {exc}")
        made = True
    try:
        yield engine
    finally:
        if made:
            engine.swarm.leave(force=True)


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    """A registry on 127.0.0.1:5000: the one running, or Debian's docker-registry started here."""
    if _registry_up():
        yield REGISTRY
        return
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("no registry on 127.0.0.1:5000 and no docker-registry (apt install it)")
    root = Path(tempfile.mkdtemp(prefix="canistry-registry-"))
    (root / "config.yml").write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: {REGISTRY}}}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(root / "config.yml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _registry_up():
            assert proc.poll() is None and time.monotonic() < deadline, "docker-registry died"
            time.sleep(0.2)
        yield REGISTRY
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def pushed(swarm: Any, registry: str) -> str:
    """This checkout's image, built once and pushed; its name in the registry."""
    import docker.errors

    try:
        swarm.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"no base image {BASE_IMAGE}; run ../shared/docker/ensure-docker")
    if not any((ROOT / "deploy" / "wheels").glob("*.whl")):
        made = subprocess.run([str(ROOT / "deploy" / "wheels.sh")], cwd=ROOT, capture_output=True)
        if made.returncode != 0:
            pytest.skip("deploy/wheels.sh could not fetch the wheels")
    subprocess.run(
        ["docker", "build", "--quiet", "--network", "none", "--build-arg",
         f"BASE_IMAGE={BASE_IMAGE}", "-f", "deploy/Dockerfile", "-t", LOCAL_TAG, "."],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    name = f"{registry}/canistry:swarm-test"
    subprocess.run(["docker", "tag", LOCAL_TAG, name], check=True)
    subprocess.run(["docker", "push", "--quiet", name], check=True, stdout=subprocess.DEVNULL)
    return name


class Stack:
    """One stack on the swarm, and how to reach it from here."""

    def __init__(self, engine: Any, name: str, env: dict[str, str], port: int) -> None:
        self.engine, self.name, self.env, self.port = engine, name, env, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args],
            env=self.env,
            check=check,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def deploy(self) -> None:
        self.docker("stack", "deploy", "--resolve-image", "never", "-c", str(STACK_FILE), self.name)

    def shard_services(self) -> dict[str, Any]:
        found = self.engine.services.list(filters={"label": f"io.canistry.cluster={self.name}"})
        return {s.attrs["Spec"]["Labels"]["io.canistry.shard"]: s for s in found}

    def containers(self, service: str) -> list[Any]:
        return list(
            self.engine.containers.list(
                filters={"label": f"com.docker.swarm.service.name={service}"}
            )
        )

    def hub_logs(self, since: int = 0) -> str:
        return "".join(c.logs(since=since).decode() for c in self.containers(f"{self.name}_hub"))

    def remove_shards(self) -> None:
        """The README's first two steps: the hub to 0 (waiting, as the CLI does), then its shards.

        Scaling with ``--detach`` would leave a hub running while its shard
        services go, and it would heal them by creating them again.
        """
        self.docker("service", "scale", f"{self.name}_hub=0", check=False)
        self._remove_shard_services()

    def _remove_shard_services(self) -> None:
        import docker.errors

        for service in self.shard_services().values():
            try:
                service.remove()
            except docker.errors.NotFound:
                pass

    def rm(self) -> None:
        """The operator's full stop: the hub to 0 replicas, its shard services, the stack."""
        self.remove_shards()
        self.docker("stack", "rm", self.name, check=False)

        def left() -> dict[str, int]:
            # The low-level list: no inspection of each one, which races with its removal.
            stack = self.engine.api.containers(
                all=True, filters={"label": f"com.docker.stack.namespace={self.name}"}
            )
            shards = self.engine.api.containers(
                all=True, filters={"label": f"io.canistry.cluster={self.name}"}
            )
            nets = self.engine.networks.list(names=[self.env["CANISTRY_NETWORK"]])
            services = self.shard_services()
            return {"stack containers": len(stack), "shard containers": len(shards),
                    "networks": len(nets), "shard services": len(services)}  # fmt: skip

        deadline = time.monotonic() + 120
        while any((remaining := left()).values()):
            assert time.monotonic() < deadline, f"the stack was not removed in 120 s: {remaining}"
            if remaining["shard services"]:
                self._remove_shard_services()
            time.sleep(0.5)

    def teardown(self) -> None:
        try:
            self.rm()
        finally:
            for label in (
                f"com.docker.stack.namespace={self.name}",
                f"io.canistry.cluster={self.name}",
            ):
                for volume in self.engine.volumes.list(filters={"label": label}):
                    volume.remove(force=True)
                for secret in self.engine.secrets.list(filters={"label": label}):
                    secret.remove()


@pytest.fixture(scope="module")
def stack(swarm: Any, pushed: str) -> Iterator[Stack]:
    name = f"canswarm{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {
        **os.environ,
        "DOCKER_GID": str(SOCKET.stat().st_gid),
        "CANISTRY_IMAGE": pushed,
        "CANISTRY_NETWORK": f"{name}-net",
        "CANISTRY_CLUSTER": name,
        "CANISTRY_GATEWAY_PORT": str(port),
        "CANISTRY_SOFT_LIMIT": "3",
        "CANISTRY_HARD_LIMIT": "6",
        "CANISTRY_SCALE_INTERVAL": "2",
        "CANISTRY_REGISTER_RATE": "100",
        "CANISTRY_REGISTER_BURST": "100",
    }
    s = Stack(swarm, name, env, port)
    try:
        s.deploy()
        yield s
    finally:
        s.teardown()


def ready(stack: Stack) -> bool:
    return httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200


def client(stack: Stack, identity: Identity) -> Client:
    return Client(stack.url, identity, timeout_s=20, retry_unavailable_s=90)


def register(stack: Stack) -> str:
    identity = Identity.generate()
    with client(stack, identity) as api:
        shard = api.register(f"User {len(USERS)}", f"u{len(USERS)}@example.org").shard
    USERS.append((identity, shard))
    return shard


def earn(stack: Stack, identity: Identity) -> None:
    book = AnswerBook.sample()
    with client(stack, identity) as api:
        unit = api.unit("math-001")
        key = book.key_for(unit)
        assert key is not None
        api.submit(unit.id, key)


def snapshot(stack: Stack) -> dict[str, tuple[str, int, int, tuple[str, ...]]]:
    out = {}
    for identity, _shard in USERS:
        with client(stack, identity) as api:
            me = api.me()
        out[me.principal] = (me.shard, me.balance.staked, me.balance.pending, me.completed_units)
    return out


async def test_the_stack_scales_with_a_shard_service_of_its_own(stack: Stack) -> None:
    t0 = time.monotonic()
    await eventually(lambda: ready(stack), 300, "the gateway ready", ignore=(httpx.HTTPError,))
    FIGURES["deploy_to_ready_s"] = round(time.monotonic() - t0, 1)
    first = register(stack)
    for _ in range(8):  # past the soft limit (3): the hub makes a new shard service
        if register(stack) != first:
            break
    newest = USERS[-1][1]
    assert newest != first, f"every user stayed on {first}\n{stack.hub_logs()[-3000:]}"
    service = stack.shard_services()[newest]
    spec = service.attrs["Spec"]
    assert spec["Labels"]["io.canistry.managed-by"] == "canistry-hub"
    assert spec["Mode"] == {"Replicated": {"Replicas": 1}}
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    task = spec["TaskTemplate"]
    assert task["RestartPolicy"]["Condition"] == "on-failure"
    assert "@sha256:" in task["ContainerSpec"]["Image"], "image pinned by registry digest"
    node = stack.engine.info()["Swarm"]["NodeID"]
    assert task["Placement"]["Constraints"] == [f"node.id=={node}"]
    assert task["ContainerSpec"]["Mounts"][0]["Source"] == f"{stack.name}-{newest}-data"
    earn(stack, USERS[0][0])
    earn(stack, USERS[-1][0])  # the new shard serves: the user passes a unit on it
    with client(stack, USERS[-1][0]) as api:
        assert api.me().shard == newest


async def test_a_killed_shard_task_is_healed(stack: Stack) -> None:
    identity, shard = USERS[0]
    (container,) = stack.containers(f"{stack.name}-{shard}")
    killed_at = time.monotonic()
    container.kill()

    def serves() -> bool:
        with Client(stack.url, identity, timeout_s=5) as api:
            return api.me().shard == shard

    await eventually(serves, 180, f"{shard} serving again", ignore=(Exception,))
    FIGURES["kill_to_serving_s"] = round(time.monotonic() - killed_at, 1)
    (again,) = stack.containers(f"{stack.name}-{shard}")
    assert again.id != container.id  # a new task, by the swarm, on the same volume


async def test_a_restarted_hub_service_re_adopts_every_shard(stack: Stack) -> None:
    before = {sid: s.id for sid, s in stack.shard_services().items()}
    since = int(time.time())
    stack.docker("service", "update", "--detach", "--force", f"{stack.name}_hub")

    def reconciled() -> str:
        logs = stack.hub_logs(since)
        return logs if "hub_started" in logs else ""

    logs = await eventually(reconciled, 180, "the restarted hub reconciled its shards")
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    adopted = {e["shard_id"] for e in events if e["event"] == "shard_service_adopted"}
    assert adopted == set(before), (adopted, before)
    after = {sid: s.id for sid, s in stack.shard_services().items()}
    assert {sid: after[sid] for sid in before} == before  # the same services


async def test_stack_rm_and_deploy_again_keep_every_user_and_balance(stack: Stack) -> None:
    kept = snapshot(stack)
    assert any(staked + pending for _s, staked, pending, _c in kept.values())
    stack.rm()
    stack.deploy()
    await eventually(lambda: ready(stack), 300, "the gateway ready", ignore=(httpx.HTTPError,))
    again = await eventually(
        lambda: snapshot(stack), 240, "every user answering", ignore=(Exception,)
    )
    assert again == kept
    print(f"\nswarm figures: {json.dumps(FIGURES)}")
