"""The hub's config is fixed at init: `canistry up` on existing data keeps it and says so."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from canistry.layout import ClusterLayout
from protos import hub_pb2, hub_pb2_grpc, registry_pb2, registry_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import Role, TLSConfig

pytestmark = pytest.mark.timeout(180)


def start_up(data_dir: Path, *flags: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Run `canistry up` until it says the cluster is up; return it and what it printed."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "canistry",
            "up",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            *flags,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "cluster is up" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("canistry up did not come up:\n" + "\n".join(lines))


def stop_up(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


async def read_config(data_dir: Path) -> tuple[hub_pb2.HubConfig, registry_pb2.ShardDirectory]:
    layout = ClusterLayout(data_dir)
    tls = TLSConfig.from_dir(layout.tls_dir("operator"))
    hub = layout.hub_address()
    assert hub is not None
    async with make_channel(hub, tls, server_role=Role.HUB) as ch:
        config = await hub_pb2_grpc.HubStub(ch).GetHubConfig(hub_pb2.GetHubConfigRequest())
    async with make_channel(config.registry_address, tls, server_role=Role.REGISTRY) as ch:
        directory = await registry_pb2_grpc.RegistryStub(ch).ListShards(
            registry_pb2.ListShardsRequest()
        )
    return config, directory


def test_up_on_existing_data_keeps_the_stored_config_and_says_so(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, lines = start_up(data_dir, "--scale-interval", "1")
    try:
        assert not any("keeping the stored config" in line for line in lines)
    finally:
        stop_up(proc)

    asked = ("--scale-interval", "1", "--soft-limit", "5", "--hard-limit", "50", "--warm-pool", "1")
    proc, lines = start_up(data_dir, *asked)
    try:
        [note] = [line for line in lines if "keeping the stored config" in line]
        assert "soft_limit 90000 (asked 5)" in note
        assert "hard_limit 100000 (asked 50)" in note
        assert "warm_pool 0 (asked 1)" in note
        assert "scale_interval_s" not in note, "only what differs"
        config, directory = asyncio.run(read_config(data_dir))
        assert (config.soft_limit, config.hard_limit, config.warm_pool) == (90_000, 100_000, 0)
        # Every service runs with the stored limits, not only the hub.
        assert (directory.soft_limit, directory.hard_limit) == (90_000, 100_000)
        assert [s.shard_id for s in directory.shards] == ["shard-0001"]
    finally:
        stop_up(proc)
