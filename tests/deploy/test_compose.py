"""A docker-compose cluster on a real engine: it scales, heals, re-adopts and keeps its data.

One cluster for the module (soft limit 3, hard limit 6, one warm shard), and
the tests run in order on it, as an operator's day would: users register
through the gateway published on 127.0.0.1 until a new shard container
appears by itself and serves; a killed shard container heals; a restarted hub
re-adopts its shard containers (same ids, none new); the full stop and a new
``up`` keep every user and balance; a container on the network without a
hub-issued certificate cannot mint. The figures (capacity decision to a
serving container, cold and warm; heal time; image size) are printed.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from canistry.client import Client, Identity
from canistry.loadtest._answers import AnswerBook
from content_service.service import load_sample_pack
from tests.deploy.conftest import ROOT, Compose
from tests.polling import eventually

pytestmark = pytest.mark.timeout(900)

FIGURES: dict[str, Any] = {}
USERS: list[tuple[Identity, str]] = []
"""(identity, shard) of every user registered here, in order."""

LIST_SHARDS = """
import asyncio, json
from protos import hub_pb2, hub_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import Role, TLSConfig

async def main():
    tls = TLSConfig.from_dir("/op")
    async with make_channel("hub:7000", tls, server_role=Role.HUB) as channel:
        reply = await hub_pb2_grpc.HubStub(channel).ListHubShards(
            hub_pb2.ListHubShardsRequest(), timeout=5)
    print(json.dumps([{"id": s.shard_id, "step": hub_pb2.SpawnStep.Name(s.step),
        "warm": s.warm, "decided": s.decided_at_ms, "registered": s.registered_at_ms}
        for s in reply.shards]))

asyncio.run(main())
"""


def operator(compose: Compose) -> dict[str, Any]:
    return {f"{compose.project}_operator-tls": {"bind": "/op", "mode": "ro"}}


def hub_records(compose: Compose) -> list[dict[str, Any]]:
    """The hub's shard records, asked with the operator certificate from inside the network."""
    records: list[dict[str, Any]] = json.loads(
        compose.in_network("-c", LIST_SHARDS, volumes=operator(compose))
    )
    return records


def import_unit(compose: Compose, unit_id: str, title: str) -> str:
    """``canistry content import`` from a container on the network, as the operator."""
    unit = {**json.loads(load_sample_pack())["units"][0], "id": unit_id, "title": title}
    with tempfile.TemporaryDirectory() as tmp:
        pack = Path(tmp, "pack.json")
        pack.write_text(json.dumps({"units": [unit]}))
        pack.chmod(0o644)
        Path(tmp).chmod(0o755)
        return compose.in_network(
            "-m", "canistry", "content", "import", "/pack.json", "--content-addr",
            "content:7000", "--tls-dir", "/op",
            volumes={**operator(compose), str(pack): {"bind": "/pack.json", "mode": "ro"}},
        )  # fmt: skip


def unit_title(compose: Compose, unit_id: str) -> str:
    got = httpx.get(f"{compose.url}/v1/units/{unit_id}", timeout=10)
    assert got.status_code == 200, got.text
    title: str = got.json()["title"]
    return title


def ready(compose: Compose) -> bool:
    return httpx.get(f"{compose.url}/readyz", timeout=5).status_code == 200


def client(compose: Compose, identity: Identity) -> Client:
    return Client(compose.url, identity, timeout_s=20, retry_unavailable_s=60)


def register(compose: Compose) -> str:
    identity = Identity.generate()
    with client(compose, identity) as api:
        shard = api.register(f"User {len(USERS)}", f"u{len(USERS)}@example.org").shard
    USERS.append((identity, shard))
    return shard


def earn(compose: Compose, identity: Identity) -> None:
    """Pass one unit, so that the user holds a balance worth keeping."""
    book = AnswerBook.sample()
    with client(compose, identity) as api:
        unit = api.unit("math-001")
        key = book.key_for(unit)
        assert key is not None
        api.submit(unit.id, key)


def snapshot(compose: Compose) -> dict[str, tuple[str, int, int, tuple[str, ...]]]:
    out = {}
    for identity, _shard in USERS:
        with client(compose, identity) as api:
            me = api.me()
        out[me.principal] = (me.shard, me.balance.staked, me.balance.pending, me.completed_units)
    return out


async def test_cluster_scales_with_a_shard_container_of_its_own(compose: Compose) -> None:
    await eventually(lambda: ready(compose), 240, "the gateway ready", ignore=(httpx.HTTPError,))
    first = register(compose)
    # Past the soft limit (3): the hub promotes its warm shard and makes a new warm one.
    for _ in range(8):
        if register(compose) != first:
            break
    shards = {shard for _identity, shard in USERS}
    assert len(shards) >= 2, f"every user stayed on {first}: {USERS}\n{compose.hub_warnings()}"
    newest = USERS[-1][1]
    container = compose.shards()[newest]
    assert container.labels["io.canistry.managed-by"] == "canistry-hub"
    assert container.attrs["Config"]["Image"].startswith("sha256:"), "image pinned by ID"
    assert any(
        m.get("Name") == f"{compose.project}-{newest}-data" for m in container.attrs["Mounts"]
    ), container.attrs["Mounts"]
    earn(compose, USERS[0][0])
    earn(compose, USERS[-1][0])  # the new shard serves: the user passes a unit on it
    with client(compose, USERS[-1][0]) as api:
        assert api.me().shard == newest and api.balance().staked + api.balance().pending > 0

    records = {r["id"]: r for r in hub_records(compose)}
    cold = [r for r in records.values() if not r["warm"] and r["registered"]]
    warm = [r for r in records.values() if r["warm"] and r["registered"]]
    assert cold and warm, f"{records}\n{compose.hub_warnings()}"
    FIGURES["cold_decision_to_serving_ms"] = [r["registered"] - r["decided"] for r in cold]
    FIGURES["warm_decision_to_serving_ms"] = [r["registered"] - r["decided"] for r in warm]


async def test_content_replicas_share_one_container_see_imports_and_heal(
    compose: Compose,
) -> None:
    content = compose.container("content")

    def replica_pids() -> dict[str, str]:
        """replica number -> host pid, from the processes in the content container."""
        top = content.top(ps_args="-eo pid,args")
        found = {}
        for pid, args in top["Processes"]:
            if "--replica " in args:
                found[args.split("--replica ")[1].split()[0]] = pid
        return found

    pids = await eventually(lambda: len(replica_pids()) == 2 and replica_pids(), 60, "replicas")
    assert set(pids) == {"1", "2"}
    # An operator imports a pack through the network; every replica serves it.
    out = import_unit(compose, "compose-unit-1", "New")
    assert "1 added" in out, out
    for _ in range(6):  # the gateway's workers hold connections to both replicas, or one
        assert unit_title(compose, "compose-unit-1") == "New"
    # A replica killed outright is started again inside the container; content serves on.
    os.kill(int(pids["2"]), signal.SIGKILL)  # `docker top` gives host pids; the test is root
    await eventually(
        lambda: replica_pids().get("2") not in (None, pids["2"]), 60, "replica 2 started again"
    )
    assert replica_pids()["1"] == pids["1"]
    assert unit_title(compose, "math-001") == "Adding fractions"


async def test_killed_shard_container_heals(compose: Compose) -> None:
    identity, shard = USERS[0]
    container = compose.shards()[shard]
    killed_at = time.monotonic()
    container.kill()

    def serves() -> bool:
        with Client(compose.url, identity, timeout_s=5) as api:
            return api.me().shard == shard

    def running() -> bool:
        c = compose.shards().get(shard)
        return c is not None and c.status == "running"

    await eventually(running, 120, f"{shard}'s container running again")
    await eventually(serves, 120, f"{shard} serving again", ignore=(Exception,))
    FIGURES["kill_to_serving_s"] = round(time.monotonic() - killed_at, 2)

    def by_hub() -> bool:
        logs = compose.container("hub").logs().decode().splitlines()
        return any('"shard_restarted"' in line and f'"{shard}"' in line for line in logs)

    try:  # the hub logs its restart a moment after the shard answers
        await eventually(by_hub, 10, "the hub's restart")
        FIGURES["kill_healed_by"] = "hub supervisor"
    except AssertionError:
        FIGURES["kill_healed_by"] = "engine restart policy"
    assert compose.shards()[shard].id == container.id  # the same container, on its volume


async def test_stopped_shard_container_is_restarted_by_the_hub(compose: Compose) -> None:
    """The engine's restart policy skips a container stopped by hand; the hub's supervisor not."""
    identity, shard = USERS[0]
    container = compose.shards()[shard]
    stopped_at = time.monotonic()
    container.stop(timeout=10)

    def serves() -> bool:
        with Client(compose.url, identity, timeout_s=5) as api:
            return api.me().shard == shard

    await eventually(serves, 120, f"{shard} serving again", ignore=(Exception,))
    FIGURES["stop_to_serving_s"] = round(time.monotonic() - stopped_at, 2)

    def restarted_by_hub() -> bool:
        logs = compose.container("hub").logs().decode().splitlines()
        return any('"shard_restarted"' in line and f'"{shard}"' in line for line in logs)

    await eventually(restarted_by_hub, 30, f"the hub logging that it restarted {shard}")
    logs = [line for line in compose.container("hub").logs().decode().splitlines() if shard in line]
    assert compose.shards()[shard].id == container.id, "\n".join(logs[-12:])


async def test_restarted_hub_readopts_its_shard_containers(compose: Compose) -> None:
    # A spawn under way when the hub restarts is rightly finished (started) by the new
    # hub: restart it only once every spawn is over, and every shard container runs.
    def settled() -> bool:
        steps = {r["step"] for r in hub_records(compose)}
        running = all(c.status == "running" for c in compose.shards().values())
        return steps <= {"SPAWN_STEP_REGISTERED", "SPAWN_STEP_WARM"} and running

    await eventually(settled, 120, "every spawn over, every shard running", ignore=(Exception,))
    before = {sid: c.id for sid, c in compose.shards().items()}
    hub = compose.container("hub")
    since = int(time.time())
    hub.restart(timeout=10)
    await eventually(lambda: hub_records(compose), 120, "the hub answering", ignore=(Exception,))

    def reconciled() -> str:
        logs: str = hub.logs(since=since).decode()
        return logs if "hub_started" in logs else ""

    logs = await eventually(reconciled, 120, "the restarted hub reconciled its shards")
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    adopted = {e["shard_id"] for e in events if e["event"] == "shard_container_adopted"}
    assert adopted == set(before), (adopted, before)
    # Nothing it had was started again (a new shard a capacity round asks for may start).
    started = [e for e in events if e["event"] == "shard_container_started"]
    assert not [e for e in started if e["shard_id"] in before], started
    register(compose)  # the cluster still takes users
    after = {sid: c.id for sid, c in compose.shards().items()}
    new = set(after) - set(before)
    assert {sid: after[sid] for sid in before} == before
    # A new container may only be one the new registration asked for (a warm refill).
    assert all(sid > max(before) for sid in new), (before, after)


async def test_down_and_up_keep_every_user_and_balance(compose: Compose) -> None:
    kept = snapshot(compose)
    assert any(staked + pending for _s, staked, pending, _c in kept.values())
    compose.stop_all()  # a plain `docker-compose down`
    assert not compose.shards(), "down removes the hub's shard containers"
    compose.run("up", "-d")
    await eventually(lambda: ready(compose), 240, "the gateway ready", ignore=(httpx.HTTPError,))
    again = await eventually(
        lambda: snapshot(compose), 180, "every user answering", ignore=(Exception,)
    )
    assert again == kept


async def test_container_without_hub_certificate_cannot_mint(compose: Compose) -> None:
    rogue = ROOT / "tests" / "integration" / "rogue.py"
    volumes = {**operator(compose), str(rogue): {"bind": "/rogue.py", "mode": "ro"}}
    out = compose.in_network(
        "/rogue.py", "--hub", "hub:7000", "--ca", "/op/ca.pem", "--shard-id", USERS[0][1],
        volumes=volumes,
    )  # fmt: skip
    attempts = json.loads(out.strip().splitlines()[-1])
    assert attempts and "OK" not in attempts.values(), attempts


def test_figures(compose: Compose, image: str) -> None:
    FIGURES["image_bytes"] = compose.engine.images.get(image).attrs["Size"]
    Path(ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "deploy.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
    print(f"\ndeploy figures: {json.dumps(FIGURES)}")
