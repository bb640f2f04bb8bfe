"""The process spawner with real child processes.

A stand-in shard (a tiny health-only gRPC server started with the same kind
of argv) exercises sessions, pid files, /proc adoption, restarts and
stop_shards without depending on the real shard; the last test runs the
real ``canistry serve shard`` once it exists.
"""

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.service import HubService
from hub.spawner import ProcessSpawner, ShardTemplate, pid_runs_shard, stop_shards
from protos import hub_pb2
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime import rpc
from runtime.net import free_port
from runtime.rpc import ServerConfig
from tests.hub._support import hub_settings, shards_up
from tests.polling import eventually

STAND_IN = """
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

async def main():
    port = int(sys.argv[sys.argv.index("--port") + 1])
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()

asyncio.run(main())
"""


class StandInSpawner(ProcessSpawner):
    def argv(self, record: hub_pb2.ShardRecord) -> list[str]:
        return [
            sys.executable,
            "-c",
            STAND_IN,
            "--shard-id",
            record.shard_id,
            "--port",
            str(record.port),
        ]


def stand_in(hub_address: str = "127.0.0.1:1") -> StandInSpawner:
    template = ShardTemplate(
        content_address="127.0.0.1:1",
        hub_address=lambda: hub_address,
        daily_attempt_limit=20,
        daily_token_limit=1000,
        base_allowance=100,
    )
    return StandInSpawner(template, stop_timeout_s=5)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryService]:
    cfg = RegistryConfig(data_dir=tmp_path / "registry", soft_limit=2, hard_limit=3, durable=False)
    async with RegistryService(cfg) as svc:
        yield svc


def record_of(hub: HubService) -> hub_pb2.ShardRecord:
    [record] = hub.store.shards()
    return record


async def test_shards_are_restarted_outlive_the_hub_are_adopted_and_stopped(
    tmp_path: Path, registry: RegistryService
) -> None:
    shards_dir = tmp_path / "shards"
    settings = hub_settings(tmp_path, registry.address, spawner="process", shard_start_timeout_s=20)
    try:
        async with HubService(settings, spawner=stand_in()) as hub:
            await shards_up(hub, registry, 1, 20)
            first = record_of(hub)
            assert pid_runs_shard(first.pid, "shard-0001")
            assert (shards_dir / "shard-0001" / "shard.pid").read_text().strip() == str(first.pid)
            assert os.getsid(first.pid) != os.getsid(0), "a shard runs in its own session"
            os.kill(first.pid, signal.SIGKILL)
            second = await eventually(
                lambda: record_of(hub).restarts == 1 and record_of(hub),
                timeout_s=20,
                what="restart",
            )
            assert second.pid != first.pid and second.port == first.port
            await rpc.wait_healthy(second.address, timeout_s=20)
        assert pid_runs_shard(second.pid, "shard-0001"), "the hub's stop leaves shards running"
        async with HubService(settings, spawner=stand_in()) as hub:
            assert hub.supervisor is not None
            ticks = hub.supervisor.ticks
            await eventually(lambda: hub.supervisor.ticks >= ticks + 3)
            again = record_of(hub)
            assert (again.pid, again.restarts) == (second.pid, 1), "adopted, not restarted"
    finally:
        stopped = await asyncio.to_thread(stop_shards, shards_dir, timeout_s=5)
    assert stopped == 1
    assert not pid_runs_shard(second.pid, "shard-0001")
    assert await asyncio.to_thread(stop_shards, shards_dir) == 0
    assert stop_shards(tmp_path / "missing") == 0


def test_argv_is_the_shard_command(tmp_path: Path) -> None:
    spawner = ProcessSpawner(
        ShardTemplate(
            content_address="127.0.0.1:2",
            hub_address=lambda: "127.0.0.1:3",
            daily_attempt_limit=20,
            daily_token_limit=1000,
            base_allowance=500,
        )
    )
    record = hub_pb2.ShardRecord(shard_id="shard-0007", port=4321, data_dir=str(tmp_path))
    assert spawner.argv(record) == [
        sys.executable, "-m", "canistry", "serve", "shard",
        "--shard-id", "shard-0007", "--data-dir", str(tmp_path), "--port", "4321",
        "--hub", "127.0.0.1:3", "--content", "127.0.0.1:2",
        "--daily-attempt-limit", "20", "--daily-token-limit", "1000", "--base-allowance", "500",
        "--tls-dir", str(tmp_path / "tls"),
    ]  # fmt: skip
    plain = ProcessSpawner(dataclasses.replace(spawner.template, tls=False))
    assert plain.argv(record)[-1] == "--insecure"


async def test_real_shard_process(tmp_path: Path, registry: RegistryService) -> None:
    pytest.importorskip("canistry.cli")
    pytest.importorskip("user_shard.service")
    hub_port = free_port()
    settings = hub_settings(
        tmp_path,
        registry.address,
        spawner="process",
        server=ServerConfig(port=hub_port),
        shard_start_timeout_s=30,
    )
    shards_dir = tmp_path / "shards"
    try:
        async with HubService(settings) as hub:
            try:
                await shards_up(hub, registry, 1, 40)
            except AssertionError:
                log = shards_dir / "shard-0001" / "shard.log"
                print(log.read_text() if log.exists() else "no shard log")
                raise
            record = record_of(hub)
            assert record.step == hub_pb2.SPAWN_STEP_REGISTERED
            assert pid_runs_shard(record.pid, "shard-0001")
    finally:
        assert await asyncio.to_thread(stop_shards, shards_dir, timeout_s=10) == 1
