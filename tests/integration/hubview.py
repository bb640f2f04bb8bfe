"""What the hub's tests look at on a real cluster: its records, its log, the processes.

Killing and restarting the hub goes through ``cluster.children["hub"]``, the
same child ``canistry up`` supervises, so a restarted hub runs with the same
argv, port and data as before (or, to hold its spawns after a step, the same
``serve hub`` argv through the test launcher ``held_hub.py``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from canistry.up import Cluster
from hub.spawner import pid_runs_shard
from protos import hub_pb2
from tests.integration.direct import Direct

STEP = hub_pb2.SpawnStep
#: Runs ``canistry serve hub`` with spawns held after a step (a hook, not a flag).
HELD_HUB = str(Path(__file__).resolve().parent / "held_hub.py")


async def hub_records(direct: Direct) -> dict[str, hub_pb2.ShardRecord]:
    """The hub's shard records by id (``ListHubShards``)."""
    reply = await direct.hub.ListHubShards(hub_pb2.ListHubShardsRequest(), timeout=5)
    return {r.shard_id: r for r in reply.shards}


async def record_of(direct: Direct, shard_id: str) -> hub_pb2.ShardRecord | None:
    return (await hub_records(direct)).get(shard_id)


def step_name(record: hub_pb2.ShardRecord | None) -> str:
    return "-" if record is None else STEP.Name(record.step).removeprefix("SPAWN_STEP_")


def shard_processes(cluster: Cluster, shard_id: str) -> list[int]:
    """Every live process on this machine running ``shard_id`` of ``cluster``.

    A process counts if its arguments name the shard and its data directory
    (other clusters on this machine have a ``shard-0001`` too).
    """
    data_dir = str(cluster.layout.shards_dir.resolve() / shard_id).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not pid_runs_shard(int(entry.name), shard_id):
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if data_dir in args:
            pids.append(int(entry.name))
    return sorted(pids)


def kill_hub(cluster: Cluster) -> None:
    """SIGKILL the hub process and reap it; its shards run on."""
    cluster.children["hub"].kill()


async def restart_hub(cluster: Cluster, *, pause_after: str | None = None) -> str:
    """Start the hub again (same port and data), optionally holding spawns after a step.

    Returns its address once it serves.
    """
    child = cluster.children["hub"]
    serve = child.argv[child.argv.index("serve") :]  # from either launcher
    if pause_after is None:
        child.argv = [sys.executable, "-m", "canistry", *serve]
    else:
        child.argv = [sys.executable, HELD_HUB, pause_after, *serve]
    child.start()
    return await asyncio.to_thread(child.wait_ready, 30.0)


def hub_log_size(cluster: Cluster) -> int:
    path = cluster.layout.log_file("hub")
    return path.stat().st_size if path.exists() else 0


def hub_events(cluster: Cluster, event: str, *, since: int = 0) -> list[dict[str, Any]]:
    """The hub's JSON log lines for ``event``, from byte offset ``since`` on."""
    with open(cluster.layout.log_file("hub"), "rb") as fh:
        fh.seek(since)
        lines = fh.read().decode(errors="replace").splitlines()
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event:
            out.append(entry)
    return out
