"""Idempotent replies are pruned after their retention, by a sweeper that never dies."""

import asyncio
from pathlib import Path

import pytest

from protos import shard_pb2
from runtime.errors import StoreFull
from runtime.store import Store, StoreConfig, put_msg
from tests.clocks import WallClock
from tests.polling import eventually
from tests.user_shard.conftest import Client, shard_config
from tests.user_shard.fakes import RIGHT, WRONG, FakeContent, FakeHub
from user_shard import ShardConfig, ShardService
from user_shard.store import ShardStore, idem_key
from user_shard.sweeper import ReplySweeper

DAY_MS = 24 * 3600 * 1000


async def test_replies_past_the_retention_are_pruned_and_recent_ones_replay(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    clock = WallClock()
    cfg = shard_config(
        tmp_path,
        hub,
        content.server.address,
        idempotency_retention_s=2 * 24 * 3600,
        idempotency_sweep_interval_s=3600,
        idempotency_sweep_batch=2,
    )
    async with ShardService(cfg, clock=clock) as svc:
        client = Client(svc.address)
        try:
            await client.create("alice")
            for i in range(5):
                await client.submit("alice", f"u{i}", WRONG, key=f"old-{i}")
            clock.now_ms += DAY_MS
            fresh = await client.submit("alice", "u1", RIGHT, key="fresh")
            assert svc.store.stored_replies() == 6
            # One day on, nothing is old enough yet.
            assert await svc.sweeper.sweep() == 0
            clock.now_ms += DAY_MS + 1
            # Five old replies, two per transaction: three small transactions.
            assert await svc.sweeper.sweep() == 5
            assert svc.store.stored_replies() == 1
            assert svc.store.stored_reply(b"alice", "old-0") is None
            # The recent key still replays its first reply, changing nothing.
            again = await client.submit("alice", "u1", RIGHT, key="fresh")
            assert again == fresh
            assert svc.counters.replays == 1
            # The expiry index went with the replies: nothing is left to scan.
            with svc.store.store.read() as txn:
                assert txn.stat(svc.store.store.db("idem_exp"))["entries"] == 1
        finally:
            await client.close()


async def test_retention_below_a_day_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="24 h"):
        ShardConfig(
            shard_id="s1",
            data_dir=tmp_path,
            hub_address="127.0.0.1:1",
            content_address="127.0.0.1:2",
            idempotency_retention_s=3600,
        )


async def test_replies_stored_before_the_index_existed_are_indexed_and_pruned(
    tmp_path: Path,
) -> None:
    old = Store(StoreConfig(path=tmp_path, databases=("users", "idem", "pending")))
    with old.write() as txn:
        for i in range(3):
            stored = shard_pb2.StoredReply(fingerprint=b"f", at_ms=1000 + i)
            put_msg(txn, old.db("idem"), idem_key(b"alice", f"k{i}"), stored)
    old.close()
    store = ShardStore(tmp_path, durable=False)
    await store.start()
    try:
        assert store.store.schema_version == 2
        assert await store.prune_replies(before_ms=1002, limit=10) == 2
        assert store.stored_replies() == 1
        assert store.stored_reply(b"alice", "k2") is not None
    finally:
        await store.stop()


class FlakyStore:
    """Fails its first prune as a full store would, then prunes."""

    def __init__(self) -> None:
        self.calls = 0

    async def prune_replies(self, before_ms: int, limit: int) -> int:
        self.calls += 1
        if self.calls == 1:
            raise StoreFull("store shard is full")
        if self.calls == 2:
            raise RuntimeError("a bug")
        return 1 if self.calls == 3 else 0


async def test_the_sweeper_survives_any_error() -> None:
    store = FlakyStore()
    sweeper = ReplySweeper(store, retention_ms=DAY_MS, interval_s=0.01, batch=10, clock=WallClock())
    task = asyncio.create_task(sweeper.run())
    try:
        await eventually(lambda: sweeper.pruned == 1, 10, "a sweep after two failures")
        assert sweeper.failures == 2
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
