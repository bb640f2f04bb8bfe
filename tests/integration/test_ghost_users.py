"""A registration cut by a SIGKILLed shard leaves no ghost user (real shard processes).

The shard is a real ``canistry serve shard`` process, killed with SIGKILL
between the registry's assignment and the profile's creation, then started
again on its data. The registry runs in process on a fake clock, so the
pending timeout passes without waiting; the hub and content service are
in-process stand-ins (the shard only asks them for allowance and verdicts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from protos import registry_pb2
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime.errors import NoCapacity, Unavailable
from runtime.net import free_port
from tests.clocks import WallClock
from tests.polling import eventually
from tests.user_shard.conftest import Client
from tests.user_shard.fakes import FakeContent, FakeHub

TIMEOUT_S = 600.0
ACTIVE = registry_pb2.SHARD_STATE_ACTIVE


class ShardProcess:
    """One ``canistry serve shard`` child, started and SIGKILLed by pid."""

    def __init__(self, data_dir: Path, port: int, hub: str, content: str) -> None:
        self.data_dir, self.port, self.hub, self.content = data_dir, port, hub, content
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ready_file(self) -> Path:
        return self.data_dir.parent / "shard.ready"

    def start(self) -> None:
        self.ready_file.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "canistry", "serve", "shard", "--insecure", "--no-fsync",
            "--shard-id", "s1", "--data-dir", str(self.data_dir), "--port", str(self.port),
            "--hub", self.hub, "--content", self.content, "--ready-file", str(self.ready_file),
        ]  # fmt: skip
        log = open(self.data_dir.parent / "shard.log", "ab")
        with log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    async def ready(self) -> None:
        await eventually(self.ready_file.exists, 60, "the shard process to serve")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def shard_process(tmp_path: Path) -> Iterator[list[ShardProcess]]:
    made: list[ShardProcess] = []
    yield made
    for process in made:
        process.kill()


async def test_a_registration_cut_by_a_killed_shard_leaves_no_ghost(
    tmp_path: Path, shard_process: list[ShardProcess]
) -> None:
    hub, content = FakeHub(), FakeContent()
    await hub.start()
    await content.start()
    assert content.server is not None
    port = free_port()
    (tmp_path / "shard").mkdir()
    shard = ShardProcess(tmp_path / "shard" / "data", port, hub.address, content.server.address)
    shard_process.append(shard)
    clock = WallClock()
    rcfg = RegistryConfig(
        data_dir=tmp_path / "registry",
        soft_limit=2,
        hard_limit=2,
        durable=False,
        pending_timeout_s=TIMEOUT_S,
        watch_interval_s=3600.0,  # rounds run when the test says
        shard_timeout_s=2.0,
    )
    client = Client(f"127.0.0.1:{port}")
    try:
        shard.start()
        await shard.ready()
        async with RegistryService(rcfg, clock=clock) as reg:
            await reg.registry.register_shard("s1", f"127.0.0.1:{port}")
            assert (await reg.registry.assign("alice")).shard_id == "s1"
            await client.create("alice")

            # The gateway assigns "ghost" a shard, then the shard dies before the profile.
            assert (await reg.registry.assign("ghost")).shard_id == "s1"
            shard.kill()
            with pytest.raises(Unavailable):  # the client's 503; it does not retry
                await client.create("ghost")
            (info,) = reg.registry.list_shards().shards
            assert (info.users, info.pending) == (2, 2)

            # While the shard is down nothing is released, whatever the time.
            clock.advance(TIMEOUT_S + 0.001)
            await reg.watcher.census_round()
            assert reg.store.lookup("ghost") is not None
            with pytest.raises(NoCapacity):  # the ghost holds the last place
                await reg.registry.assign("carol")

            shard.start()  # the supervisor's restart, on the same data
            await shard.ready()

            async def settled() -> bool:
                await reg.watcher.census_round()
                (info,) = reg.registry.list_shards().shards
                return info.users == 1 and info.pending == 0

            await eventually(settled, 30, "the ghost released and alice confirmed")
            status = await client.status()
            (info,) = reg.registry.list_shards().shards
            assert info.users == status.users == 1  # registry users == profiles on the shard
            assert info.state == ACTIVE
            assert reg.store.lookup("ghost") is None
            assert reg.store.lookup("alice") is not None
            # The capacity the ghost held is free again.
            carol = await reg.registry.assign("carol")
            assert (carol.shard_id, carol.newly_assigned) == ("s1", True)
    finally:
        await client.close()
        shard.kill()
        await content.stop()
        await hub.stop()


async def test_a_real_cluster_confirms_profiles_over_mutual_tls(shared_cluster) -> None:  # type: ignore[no-untyped-def]
    """The registry's census reaches hub-spawned shards with its own certificate."""
    from tests.integration.direct import Direct, new_principal

    direct = Direct(shared_cluster)
    principal = new_principal()
    placed = await direct.register(principal)
    assert placed.shard_id

    async def confirmed() -> bool:
        directory = await direct.directory()
        shard = next(s for s in directory.shards if s.shard_id == placed.shard_id)
        return shard.pending == 0 and shard.store_map_size > 0

    await eventually(confirmed, 30, "the profile confirmed by the registry's census")
    statuses = await direct.shard_statuses()
    directory = await direct.directory()
    for s in directory.shards:  # other tests' registrations may still be pending
        assert s.users - s.pending <= statuses[s.shard_id].users <= s.users
