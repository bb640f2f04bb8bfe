import asyncio
from pathlib import Path

import pytest

from runtime.errors import InvalidArgument, StoreFull
from runtime.store import GroupCommitter, SchemaTooNew, Store, StoreConfig


def make_store(path: Path, **kw: object) -> Store:
    return Store(StoreConfig(path=path, databases=("kv",), **kw))  # type: ignore[arg-type]


async def test_group_commit_batches_and_isolates_failures(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s")
    committer = GroupCommitter(store)
    await committer.start()

    def put(i: int):
        def fn(txn):
            if i == 3:
                txn.put(b"bad", b"x", db=store.db("kv"))
                raise InvalidArgument("three is bad")
            txn.put(str(i).encode(), b"v", db=store.db("kv"))
            return i

        return fn

    results = await asyncio.gather(
        *(committer.submit(put(i)) for i in range(50)), return_exceptions=True
    )
    await committer.stop()
    assert isinstance(results[3], InvalidArgument)
    assert [r for i, r in enumerate(results) if i != 3] == [i for i in range(50) if i != 3]
    assert committer.batches < 50, "concurrent jobs should share commits"
    with store.read() as txn:
        assert txn.get(b"bad", db=store.db("kv")) is None
        assert txn.get(b"49", db=store.db("kv")) == b"v"
    store.close()
    reopened = make_store(tmp_path / "s")
    with reopened.read() as txn:
        assert txn.get(b"0", db=reopened.db("kv")) == b"v"


async def test_per_request_mode_commits_each_job_alone(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s")
    committer = GroupCommitter(store, group=False)
    await committer.start()
    await asyncio.gather(*(committer.submit(lambda txn: None) for _ in range(10)))
    await committer.stop()
    assert committer.batches == 10


def test_migrations_run_in_order_and_newer_schema_is_refused(tmp_path: Path) -> None:
    make_store(tmp_path / "s").close()
    seen = []

    def m1(store, txn):
        seen.append(1)
        txn.put(b"migrated", b"1", db=store.db("kv"))

    def m2(store, txn):
        seen.append(2)

    store = make_store(tmp_path / "s", schema_version=3, migrations={1: m1, 2: m2})
    assert seen == [1, 2] and store.schema_version == 3
    store.close()
    with pytest.raises(SchemaTooNew):
        make_store(tmp_path / "s", schema_version=2)


async def test_a_full_map_fails_writes_as_store_full_and_reads_still_work(tmp_path: Path) -> None:
    store = Store(StoreConfig(path=tmp_path / "s", databases=("data",), map_size=256 * 1024))
    committer = GroupCommitter(store)
    await committer.start()
    await committer.submit(lambda txn: txn.put(b"kept", b"v", db=store.db("data")))
    used_before, size = store.usage()
    assert 0 < used_before <= size == 256 * 1024

    def fill(txn: object) -> None:
        for i in range(10_000):
            txn.put(b"k%06d" % i, b"x" * 1000, db=store.db("data"))  # type: ignore[attr-defined]

    with pytest.raises(StoreFull) as info:
        await committer.submit(fill)
    assert "MapFull" not in info.value.message  # the cause is logged, never sent
    with store.read() as txn:  # the failed job undid only itself
        assert txn.get(b"kept", db=store.db("data")) == b"v"
        assert txn.get(b"k000000", db=store.db("data")) is None
    await committer.submit(lambda txn: txn.put(b"small", b"v", db=store.db("data")))
    await committer.stop()
    store.close()
