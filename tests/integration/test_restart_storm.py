"""A grown cluster stopped cleanly and started again: paced shard starts, serving promptly.

The cluster is grown by registering users (soft and hard limit 1: one user
per shard), stopped as ``canistry up`` stops it, then booted again on the
same data. The hub must start its shards at a bounded rate (newest first),
``up`` must not give up while they come, and a clean resume must not count
as crashes. Short form: 12 shards; ``CANISTRY_LONG=1``: 64 (the reported storm).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path

import pytest

from canistry.up import Cluster, UpConfig
from runtime.errors import NoCapacity, Unavailable
from tests.integration.direct import Direct, new_principal, poll
from tests.integration.hubview import hub_events, hub_log_size, hub_records

LONG = os.environ.get("CANISTRY_LONG") == "1"
SHARDS = 64 if LONG else 12
#: The hub's defaults: at most 4 starts at once, 0.25 s apart at the least.
MOST_PER_SECOND = 4

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800 if LONG else 420)]


def config(data_dir: Path) -> UpConfig:
    return UpConfig(
        data_dir=data_dir,
        port=0,
        gateway_workers=1,
        soft_limit=1,
        hard_limit=1,
        scale_interval_s=1.0,
        max_shards=SHARDS,
    )


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + 1.0) for t in times), default=0)


async def grow(direct: Direct, shards: int) -> list[str]:
    """One user per shard until the hub has ``shards`` of them; returns the users."""
    users: list[str] = []
    while len(users) < shards:
        principal = new_principal()

        async def registered(p: str = principal) -> bool:
            try:
                await direct.register(p)
            except (NoCapacity, Unavailable):
                return False  # the hub is spawning the next shard
            return True

        await poll(registered, timeout_s=60, what=f"user {len(users) + 1} registered")
        users.append(principal)
    return users


async def test_a_grown_cluster_comes_back_paced_and_serves(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    cluster = Cluster(config(data_dir), out=io.StringIO())
    cluster.boot()
    try:
        direct = Direct(cluster)
        users = await grow(direct, SHARDS)
        await poll(
            lambda: len(users) == SHARDS and direct.directory(),
            what="the directory",
        )
        assert len((await direct.directory()).shards) == SHARDS
    finally:
        cluster.stop()
        cluster.close()

    since = hub_log_size(cluster)
    again = Cluster(config(data_dir), out=io.StringIO())
    began = time.monotonic()
    try:
        await asyncio.to_thread(again.boot)
        serving_s = time.monotonic() - began
        direct = Direct(again)
        newest, oldest = users[-1], users[0]

        async def serves(p: str) -> bool:
            try:
                return (await direct.user(p)).user.principal == p
            except Unavailable:
                return False

        await poll(lambda: serves(newest), timeout_s=60, what="the newest shard serving")
        newest_s = time.monotonic() - began

        async def all_back() -> bool:
            try:
                for p in users:
                    await direct.user(p)
            except Unavailable:
                return False
            return True

        await poll(all_back, timeout_s=300, what="every shard serving again")
        all_s = time.monotonic() - began
        assert (await direct.user(oldest)).user.principal == oldest

        # When the hub's pacer let each start begin (its own clock, not the log's).
        starts = [e["at"] for e in hub_events(again, "shard_start_begun", since=since)]
        peak = most_in_a_second(starts)
        span = max(starts) - min(starts) if starts else 0.0
        figures = {
            "shards": SHARDS,
            "shards_started": len(starts),
            "most_started_in_one_second": peak,
            "start_span_s": round(span, 2),
            "gateway_ready_s": round(serving_s, 2),
            "newest_shard_serving_s": round(newest_s, 2),
            "all_shards_serving_s": round(all_s, 2),
        }
        print("\n  restart figures: " + json.dumps(figures))
        if path := os.environ.get("CANISTRY_FIGURES"):
            await asyncio.to_thread(Path(path).write_text, json.dumps(figures) + "\n")

        assert len(starts) == SHARDS, "each shard started once"
        assert peak <= MOST_PER_SECOND, f"{peak} shard starts within one second"
        # A clean stop and resume is no crash.
        assert not hub_events(again, "shard_dead", since=since)
        assert len(hub_events(again, "shard_resumed", since=since)) == SHARDS
        records = await hub_records(direct)
        assert all(r.restarts == 0 for r in records.values()), {
            i: r.restarts for i, r in records.items()
        }
    finally:
        again.stop()
        again.close()
