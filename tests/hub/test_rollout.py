"""The rolling upgrade over the in-memory spawner: a few at a time, rollback on failure,
and a rollout a restarted hub resumes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.registry_client import RegistryClient
from hub.rollout import Rollout
from hub.store import HubStore
from hub.supervisor import Supervisor
from protos import hub_pb2
from runtime import rpc
from runtime.net import free_port
from tests.hub.fake_spawner import FakeSpawner

BAD = "/venvs/broken/bin/python"
GOOD = "/venvs/new/bin/python"


class Spawner(FakeSpawner):
    """Shards started on the broken template never answer healthy."""

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        self.healthy = record.python != BAD
        return await super().start(record)


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[tuple[HubStore, Spawner, Rollout]]:
    store = HubStore(tmp_path / "hub", durable=False)
    await store.start()
    spawner = Spawner()
    registry = RegistryClient("127.0.0.1:1")
    for n in (1, 2, 3):
        port = free_port("127.0.0.1")
        record = hub_pb2.ShardRecord(
            shard_id=f"shard-000{n}", step=hub_pb2.SPAWN_STEP_REGISTERED, port=port,
            address=f"127.0.0.1:{port}", data_dir=str(tmp_path / f"s{n}"),
            template_version="canistry==0.1.0",
        )  # fmt: skip
        record.pid = await spawner.start(record)
        await store.put_shard(record)

    async def healthy(record: hub_pb2.ShardRecord) -> None:
        await rpc.wait_healthy(record.address, timeout_s=1.0)

    supervisor = Supervisor(store, spawner, registry)
    rollout = Rollout(store, spawner, supervisor, healthy, registry, concurrency=2)
    yield store, spawner, rollout
    await registry.close()
    await spawner.close()
    await store.stop()


def _upgrade(python: str, version: str) -> hub_pb2.Proposal:
    action = hub_pb2.ProposalAction(kind="upgrade_shards", template=python,
                                    template_version=version)  # fmt: skip
    return hub_pb2.Proposal(id=7, action=action)


async def test_every_shard_moves_and_new_shards_follow(
    parts: tuple[HubStore, Spawner, Rollout],
) -> None:
    store, spawner, rollout = parts
    ok, results, _ = await rollout(_upgrade(GOOD, "canistry==0.2.0"))
    assert ok and [(r.shard_id, r.ok) for r in results] == [
        ("shard-0001", True), ("shard-0002", True), ("shard-0003", True)
    ]  # fmt: skip
    for record in store.shards():
        assert (record.python, record.template_version) == (GOOD, "canistry==0.2.0")
        assert record.previous_template_version == "canistry==0.1.0"
        assert spawner.is_alive(record)
    adopted = store.adopted_template()
    assert adopted is not None and (adopted.python, adopted.proposal_id) == (GOOD, 7)
    # Again (a hub that restarted after it finished): nothing is restarted.
    starts = len(spawner.starts)
    ok, results, _ = await rollout(_upgrade(GOOD, "canistry==0.2.0"))
    assert ok and len(spawner.starts) == starts


async def test_a_shard_that_fails_its_health_check_rolls_back_and_stops_the_rollout(
    parts: tuple[HubStore, Spawner, Rollout],
) -> None:
    store, spawner, rollout = parts
    ok, results, detail = await rollout(_upgrade(BAD, "canistry==9.9.9"))
    assert not ok and "rollout stopped (1 shards not tried)" in detail
    # The first batch (concurrency 2) was tried, each rolled back; the third never touched.
    assert [(r.shard_id, r.ok) for r in results] == [("shard-0001", False), ("shard-0002", False)]
    assert all("rolled back to canistry==0.1.0" in r.detail for r in results)
    for record in store.shards():
        assert (record.python, record.template_version) == ("", "canistry==0.1.0")
        assert spawner.is_alive(record)
    assert store.adopted_template() is None
    assert "shard-0003" not in spawner.stops


async def test_a_rollout_resumed_after_a_hub_restart_still_rolls_back(
    parts: tuple[HubStore, Spawner, Rollout],
) -> None:
    store, spawner, rollout = parts
    # The last hub moved shard-0001 to the broken template, then died before it checked.
    record = store.shard("shard-0001")
    assert record is not None
    await spawner.stop(record)

    def moved(r: hub_pb2.ShardRecord) -> None:
        r.python, r.template_version = BAD, "canistry==9.9.9"
        r.previous_python, r.previous_template_version = "", "canistry==0.1.0"

    record = await store.update_shard("shard-0001", moved)
    record.pid = await spawner.start(record)  # the new hub's supervisor started it so
    await store.put_shard(record)
    ok, results, _ = await rollout(_upgrade(BAD, "canistry==9.9.9"))
    assert not ok and (results[0].shard_id, results[0].ok) == ("shard-0001", False)
    back = store.shard("shard-0001")
    assert back is not None and (back.python, back.template_version) == ("", "canistry==0.1.0")
    assert spawner.is_alive(back)
