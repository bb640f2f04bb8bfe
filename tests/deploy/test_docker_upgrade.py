"""Governed rolling upgrades of `docker` shards, on a real engine and a compose cluster.

Two images are derived from the test image, offline: one whose canistry
says it is version NEW (so the test sees which image a shard really runs),
and one whose entrypoint exits at once. A staker proposes and adopts an
upgrade through the gateway: every shard container is recreated on the new
image ID over its own volume (the user's balance is still there), the hub's
records and ``/v1/cluster`` name the new template, a restarted hub re-adopts
the upgraded containers (it does not put them back on the image pinned at
init), and a shard spawned after it runs it too. An upgrade to the image
that cannot start rolls the first shard back onto the image it ran, which
serves again, and the proposal fails with that shard's result. A template
that is not on the engine is refused when proposed (400).
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from canistry import __version__ as OLD
from canistry.client import ApiError, Client, Identity, Proposal
from canistry.loadtest._answers import AnswerBook
from tests.deploy.conftest import Compose
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

NEW = "9.1.0"
#: Units whose rewards (40 + 45 + 50) pass the hub's default minimum stake to propose (100).
STAKE_UNITS = ("math-001", "math-007", "math-008")

BUMPED = """\
FROM {base}
USER root
RUN sed -i 's/^Version: .*/Version: {version}/' \\
    /opt/canistry/lib/python3*/site-packages/canistry-*.dist-info/METADATA
USER canistry
"""
BROKEN = """\
FROM {base}
ENTRYPOINT ["false"]
"""

RECORDS = """
import asyncio, json
from protos import hub_pb2, hub_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import Role, TLSConfig

async def main():
    tls = TLSConfig.from_dir("/op")
    async with make_channel("hub:7000", tls, server_role=Role.HUB) as channel:
        reply = await hub_pb2_grpc.HubStub(channel).ListHubShards(
            hub_pb2.ListHubShardsRequest(), timeout=5)
    print(json.dumps({s.shard_id: {"step": hub_pb2.SpawnStep.Name(s.step),
        "template_version": s.template_version, "previous": s.previous_template_version}
        for s in reply.shards}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def upgrade_images(engine: Any, image: str) -> Iterator[dict[str, str]]:
    """Tags of the bumped and the broken image (removed after the module's cluster)."""
    tag = f"canistry-upgrade-test:{uuid.uuid4().hex[:8]}"
    made: list[str] = []

    def build(dockerfile: str, name: str) -> str:
        built, _ = engine.images.build(
            fileobj=io.BytesIO(dockerfile.encode()),
            tag=name,
            network_mode="none",
            rm=True,
            labels={"io.canistry.test": tag},
        )
        made.append(name)
        return str(built.id)

    try:
        base = engine.images.get(image).id
        bumped = build(BUMPED.format(base=base, version=NEW), f"{tag}-v2")
        build(BROKEN.format(base=bumped), f"{tag}-broken")
        yield {"bumped": f"{tag}-v2", "broken": f"{tag}-broken"}
    finally:
        for name in made:
            try:
                engine.images.remove(name, noprune=False)
            except Exception as exc:  # reported: a leftover tag is no failure of the test
                print(f"could not remove {name}: {exc}")


def records(compose: Compose) -> dict[str, dict[str, str]]:
    """The hub's shard records, asked with the operator certificate from inside the network."""
    volumes = {f"{compose.project}_operator-tls": {"bind": "/op", "mode": "ro"}}
    found: dict[str, dict[str, str]] = json.loads(
        compose.in_network("-c", RECORDS, volumes=volumes)
    )
    return found


def client(compose: Compose, identity: Identity) -> Client:
    return Client(compose.url, identity, timeout_s=20, retry_unavailable_s=60)


def ready(compose: Compose) -> bool:
    return httpx.get(f"{compose.url}/readyz", timeout=5).status_code == 200


def running_on(compose: Compose) -> dict[str, str]:
    """shard id -> the image ID its running container runs."""
    return {k: c.attrs["Image"] for k, c in compose.shards().items() if c.status == "running"}


def version_in(container: Any) -> str:
    code, out = container.exec_run(["canistry", "--version"])
    assert code == 0, out
    return str(out.decode().strip())


async def carried_out(api: Client, proposal_id: int) -> Proposal:
    def done() -> Proposal | None:
        p = api.proposal(proposal_id)
        return p if p.state in ("executed", "failed") else None

    found: Proposal = await eventually(done, 400, f"proposal {proposal_id} carried out")
    return found


async def test_adopted_image_rolls_through_and_a_broken_one_rolls_back(
    upgrade_images: dict[str, str], compose: Compose, engine: Any
) -> None:
    bumped_id = engine.images.get(upgrade_images["bumped"]).id
    await eventually(lambda: ready(compose), 240, "the gateway ready", ignore=(httpx.HTTPError,))
    book = AnswerBook.sample()
    staker = Identity.generate()
    with client(compose, staker) as api:
        api.register("Staker", "staker@example.org")
        for unit_id in STAKE_UNITS:
            unit = api.unit(unit_id)
            key = book.key_for(unit)
            assert key is not None
            assert api.submit(unit.id, key).passed
        before = api.me()
    assert before.balance.staked >= 100, before
    home = before.shard

    # The warm shard too: both are up and recorded before the vote.
    def settled() -> dict[str, dict[str, str]] | None:
        found = records(compose)
        steps = {r["step"] for r in found.values()}
        return (
            found
            if len(found) == 2 and steps <= {"SPAWN_STEP_REGISTERED", "SPAWN_STEP_WARM"}
            else None
        )

    old = await eventually(settled, 180, "a registered and a warm shard", ignore=(Exception,))
    old_images = running_on(compose)
    assert set(old_images) == set(old) and len(set(old_images.values())) == 1, old_images
    old_image = next(iter(old_images.values()))
    assert {r["template_version"] for r in old.values()} == {f"docker:{old_image}"}
    volumes = {k: [m["Name"] for m in c.attrs["Mounts"]] for k, c in compose.shards().items()}

    with client(compose, staker) as api:

        def counted() -> bool:
            return api.cluster().total_staked >= before.balance.staked

        await eventually(counted, 60, "the hub to count the stake")

        # A template that is not on the hub's engine is refused when proposed.
        with pytest.raises(ApiError) as nowhere:
            api.propose("upgrade_shards", "nowhere", template=f"{upgrade_images['bumped']}-nope")
        assert nowhere.value.status == 400, nowhere.value

        # 1. The bumped image: every shard moves, over its own volume.
        proposal = api.propose("upgrade_shards", "ship 9.1", template=upgrade_images["bumped"])
        assert proposal.action["template_version"] == f"docker:{bumped_id}"
        began = time.monotonic()
        assert api.vote(proposal.id, True).state == "adopted"  # the only staker
        done = await carried_out(api, proposal.id)
        took = time.monotonic() - began
        assert done.state == "executed", f"{done}\n{compose.hub_warnings()}"
        assert {(r.shard, r.ok) for r in done.results} == {(k, True) for k in old}, done
        print(f"\ndocker upgrade: {len(old)} shards in {took:.1f}s ({took / len(old):.1f}s each)")

        on = running_on(compose)
        assert on == {k: bumped_id for k in old}, on
        shards = compose.shards()
        for shard_id, container in shards.items():
            assert version_in(container) == f"canistry {NEW}" != f"canistry {OLD}"
            assert [m["Name"] for m in container.attrs["Mounts"]] == volumes[shard_id]
        now = records(compose)
        assert {r["template_version"] for r in now.values()} == {f"docker:{bumped_id}"}, now
        assert {r["previous"] for r in now.values()} == {f"docker:{old_image}"}, now
        info = api.cluster()
        assert {s.id: s.template_version for s in info.shards}[home] == f"docker:{bumped_id}"
        after = api.me()  # the data survived the move
        assert (after.shard, after.balance, after.completed_units) == (
            before.shard, before.balance, before.completed_units,
        )  # fmt: skip

    # A restarted hub reconciles each container with its own record: it re-adopts the
    # upgraded containers rather than recreating them on the image pinned at init.
    before_restart = {k: c.id for k, c in compose.shards().items()}
    hub = compose.container("hub")
    since = int(time.time())
    hub.restart(timeout=10)

    def reconciled() -> str:
        logs: str = hub.logs(since=since).decode()
        return logs if "hub_started" in logs else ""

    logs = await eventually(reconciled, 120, "the restarted hub reconciled its shards")
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    adopted = {e["shard_id"] for e in events if e["event"] == "shard_container_adopted"}
    assert adopted == set(before_restart), f"{adopted}\n{compose.hub_warnings()}"
    assert {k: c.id for k, c in compose.shards().items()} == before_restart
    assert running_on(compose) == {k: bumped_id for k in old}

    # A shard spawned from now on runs the adopted image: past the soft limit (3) the
    # warm shard is promoted and a new warm one made.
    for n in range(3):
        with client(compose, Identity.generate()) as api:
            api.register(f"User {n}", f"u{n}@example.org")

    def third() -> str | None:
        return running_on(compose).get("shard-0003")

    assert await eventually(third, 180, "shard-0003 spawned", ignore=(Exception,)) == bumped_id

    # 2. An image that cannot start: the first shard is rolled back and the rollout stops.
    with client(compose, staker) as api:
        proposal = api.propose("upgrade_shards", "broken", template=upgrade_images["broken"])
        assert api.vote(proposal.id, True).state == "adopted"
        failed = await carried_out(api, proposal.id)
        assert failed.state == "failed", failed
        assert [(r.shard, r.ok) for r in failed.results] == [("shard-0001", False)], failed
        assert "rolled back" in failed.results[0].detail, failed.results
        assert failed.results[0].template_version == f"docker:{bumped_id}"
        assert set(running_on(compose).values()) == {bumped_id}
        assert version_in(compose.shards()["shard-0001"]) == f"canistry {NEW}"
        assert {r["template_version"] for r in records(compose).values()} == {f"docker:{bumped_id}"}
        again = api.me()  # served again, on its old image, with its data
        assert (again.balance, again.completed_units) == (before.balance, before.completed_units)
