"""Governed rolling upgrades of `swarm` shards, on a single-node swarm and a local registry.

As tests/deploy/test_docker_upgrade.py, with what a swarm adds: the images
derived from the stack's image (one whose canistry says it is NEW, one
whose entrypoint exits at once) are pushed to the registry, and a proposal
names a tag there, which the hub pins by its registry digest. An adopted
upgrade moves both shards' services onto that digest, one at a time, over
their volumes (the user's balance is still there); one to the image that
cannot start rolls the first shard back onto the digest it ran, which
serves again, and the proposal fails with that shard's result. Two shards,
so that the gateway stays ready (an active shard answers) while one moves:
swarm replaces a gateway whose health check fails. A tag the registry does not hold is refused
when proposed (400). Skips as tests/deploy/test_swarm.py does.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from canistry import __version__ as OLD
from canistry.client import ApiError, Client, Identity, Proposal
from canistry.loadtest._answers import AnswerBook
from tests.deploy.conftest import SOCKET, free_port
from tests.deploy.test_docker_upgrade import BROKEN, BUMPED, NEW, STAKE_UNITS
from tests.deploy.test_swarm import Stack, pushed, registry, swarm  # noqa: F401 (fixtures)
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def stack(swarm: Any, pushed: str) -> Iterator[Stack]:  # noqa: F811 (the imported fixtures)
    """Two shards, and a start deadline short enough for the broken image's rollback."""
    name = f"canswup{uuid.uuid4().hex[:6]}"
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
        "CANISTRY_SHARD_START_TIMEOUT": "45",
        "CANISTRY_MIN_SHARDS": "2",
    }
    s = Stack(swarm, name, env, port)
    try:
        s.deploy()
        yield s
    finally:
        s.teardown()


@pytest.fixture(scope="module")
def upgrade_tags(swarm: Any, pushed: str) -> Iterator[dict[str, str]]:  # noqa: F811
    """The bumped and the broken image, pushed next to the stack's (local tags removed after)."""
    repository = pushed.rsplit(":", 1)[0]
    tag = f"upgrade-{uuid.uuid4().hex[:8]}"
    made: list[str] = []

    def build(dockerfile: str, name: str) -> str:
        built, _ = swarm.images.build(
            fileobj=io.BytesIO(dockerfile.encode()), tag=name, network_mode="none", rm=True
        )
        made.append(name)
        subprocess.run(["docker", "push", "--quiet", name], check=True, stdout=subprocess.DEVNULL)
        return str(built.id)

    try:
        base = swarm.images.get(pushed).id
        bumped = build(BUMPED.format(base=base, version=NEW), f"{repository}:{tag}-v2")
        build(BROKEN.format(base=bumped), f"{repository}:{tag}-broken")
        yield {"bumped": f"{repository}:{tag}-v2", "broken": f"{repository}:{tag}-broken"}
    finally:
        for name in made:
            try:
                swarm.images.remove(name)
            except Exception as exc:  # reported: a leftover tag is no failure of the test
                print(f"could not remove {name}: {exc}")


def client(stack: Stack, identity: Identity) -> Client:
    return Client(stack.url, identity, timeout_s=20, retry_unavailable_s=90)


def ready(stack: Stack) -> bool:
    return httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200


def images(stack: Stack) -> dict[str, str]:
    """shard id -> the image its service runs."""
    return {
        k: s.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        for k, s in stack.shard_services().items()
    }


def version_in(stack: Stack, shard_id: str) -> str | None:
    """What ``canistry --version`` says in the shard's running task (None: none runs)."""
    for container in stack.containers(f"{stack.name}-{shard_id}"):
        code, out = container.exec_run(["canistry", "--version"])
        if code == 0:
            return str(out.decode().strip())
    return None


async def carried_out(api: Client, proposal_id: int) -> Proposal:
    def done() -> Proposal | None:
        p = api.proposal(proposal_id)
        return p if p.state in ("executed", "failed") else None

    found: Proposal = await eventually(
        done, 400, f"proposal {proposal_id} carried out", ignore=(httpx.TransportError,)
    )
    return found


async def test_adopted_digest_rolls_through_and_a_broken_one_rolls_back(
    upgrade_tags: dict[str, str], stack: Stack
) -> None:
    engine = stack.engine
    digest = engine.images.get_registry_data(upgrade_tags["bumped"]).id
    repository = upgrade_tags["bumped"].rsplit(":", 1)[0]
    bumped = f"{repository}@{digest}"
    await eventually(lambda: ready(stack), 300, "the gateway ready", ignore=(httpx.HTTPError,))
    book = AnswerBook.sample()
    staker = Identity.generate()
    with client(stack, staker) as api:
        api.register("Staker", "staker@example.org")
        for unit_id in STAKE_UNITS:
            unit = api.unit(unit_id)
            key = book.key_for(unit)
            assert key is not None
            assert api.submit(unit.id, key).passed
        before = api.me()

        def counted() -> bool:
            info = api.cluster()
            return info.total_staked >= before.balance.staked and len(info.shards) == 2

        await eventually(counted, 120, "two shards, and the hub to count the stake")
        old = images(stack)
        assert len(old) == 2 and all("@sha256:" in i for i in old.values()), old
        assert {version_in(stack, k) for k in old} == {f"canistry {OLD}"}
        with pytest.raises(ApiError) as nowhere:
            api.propose("upgrade_shards", "nowhere", template=f"{repository}:no-such-tag")
        assert nowhere.value.status == 400, nowhere.value

        # 1. The bumped image, pinned by its registry digest: the shard's service moves.
        proposal = api.propose("upgrade_shards", "ship 9.1", template=upgrade_tags["bumped"])
        assert proposal.action["template_version"] == f"swarm:{bumped}"
        began = time.monotonic()
        assert api.vote(proposal.id, True).state == "adopted"  # the only staker
        done = await carried_out(api, proposal.id)
        took = time.monotonic() - began
        logs = stack.hub_logs(since=1)[-3000:]  # (0 is refused by the SDK)
        assert done.state == "executed", f"{done}\n{logs}"
        assert sorted((r.shard, r.ok) for r in done.results) == [(k, True) for k in sorted(old)]
        print(f"\nswarm upgrade: 2 shards in {took:.1f}s ({took / 2:.1f}s each)")
        assert images(stack) == {k: bumped for k in old}
        for shard_id in old:
            assert await eventually(
                lambda s=shard_id: version_in(stack, s), 60, f"{shard_id}'s new task"
            ) == (f"canistry {NEW}")
        info = api.cluster()
        assert {s.id: s.template_version for s in info.shards} == {
            k: f"swarm:{bumped}" for k in old
        }
        after = api.me()  # the data survived the move
        assert (after.balance, after.completed_units) == (before.balance, before.completed_units)

        # 2. An image that cannot start: the shard is rolled back onto the digest it ran.
        proposal = api.propose("upgrade_shards", "broken", template=upgrade_tags["broken"])
        assert api.vote(proposal.id, True).state == "adopted"
        failed = await carried_out(api, proposal.id)
        assert failed.state == "failed", failed
        assert [(r.shard, r.ok) for r in failed.results] == [("shard-0001", False)], failed
        assert "rolled back" in failed.results[0].detail, failed.results
        assert images(stack) == {k: bumped for k in old}
        again = api.me()  # served again, on its old image, with its data
        assert (again.balance, again.completed_units) == (before.balance, before.completed_units)
        assert await eventually(
            lambda: version_in(stack, "shard-0001"), 60, "shard-0001 back on its old image"
        ) == (f"canistry {NEW}")
