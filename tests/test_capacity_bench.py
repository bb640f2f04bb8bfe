"""bench/capacity.py keeps working, tiny: the bulk-load paths and each measurement's figures.

Not timed (a shared 2-core machine's figures mean nothing here). The shard
measurement runs a real shard process over the bulk-loaded LMDB.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.capacity import (
    bulk_load_shard,
    cache_counters,
    hit_rates,
    measure_assign,
    measure_hub,
    measure_registry,
    measure_shard,
    principals,
)
from user_shard.store import ShardStore


def test_a_bulk_loaded_shard_is_read_by_the_shards_own_store(tmp_path: Path) -> None:
    names = list(principals(300))
    bulk_load_shard(tmp_path / "shard", names)

    async def read() -> None:
        store = ShardStore(tmp_path / "shard", durable=False)
        await store.start()
        try:
            assert store.ledger().users == 300
            user = store.user(names[7].encode())
            assert user is not None and user.principal == names[7]
        finally:
            await store.stop()

    asyncio.run(read())


def test_the_shard_figures_come_from_a_serving_process() -> None:
    f = measure_shard(users=500, reads=50)
    assert f["users"] == 500 and f["reads"] == 50
    assert f["disk"]["allocated_bytes"] > 500 * 200
    assert f["rss_after_reads"]["VmRSS"] > 10_000_000


def test_registry_assign_and_hub_figures() -> None:
    r = measure_registry(2_000, lookups=200)
    assert r["principals"] == 2_000 and r["lookup_p99_ms"] >= r["lookup_p50_ms"] > 0
    a = measure_assign(10, assigns=20)
    assert a["assigns"] == 20 and a["assign_p50_ms"] > 0
    h = measure_hub(20, rounds=3)
    assert h["shards"] == 20 and h["spawned"] == "shard-0021"


def test_cache_counters_are_read_from_the_metrics_text() -> None:
    text = (
        'canistry_gateway_cache_total{cache="route",result="hit"} 30.0\n'
        'canistry_gateway_cache_total{cache="route",result="miss"} 10.0\n'
        'canistry_gateway_cache_total{cache="unit",result="hit"} 5.0\n'
    )
    counters = cache_counters(text)
    assert counters == {"route": {"hit": 30.0, "miss": 10.0}, "unit": {"hit": 5.0}}
    assert hit_rates(counters) == {"route": 0.75, "unit": 1.0}
