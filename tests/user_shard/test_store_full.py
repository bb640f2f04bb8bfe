"""A shard whose LMDB map is full: 503-style StoreFull, never a raw LMDB error."""

from pathlib import Path
from typing import Any

import grpc
import lmdb
import pytest

from protos import shard_pb2
from runtime.errors import ERROR_TRAILER, StoreFull, Unavailable
from tests.user_shard.conftest import Client, shard_config
from tests.user_shard.fakes import WRONG, FakeContent, FakeHub
from user_shard import ShardService

SMALL_MAP = 256 * 1024


async def fill(client: Client, limit: int = 5000) -> tuple[int, grpc.aio.AioRpcError]:
    """Create users until the store is full; return how many were made and the error."""
    for i in range(limit):
        request = shard_pb2.CreateUserRequest(
            principal=f"user-{i:05d}", profile=shard_pb2.Profile(name="N" * 100, email="a@b")
        )
        try:
            await client.stub.CreateUser(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return i, exc
    raise AssertionError(f"{limit} users fit in a {SMALL_MAP}-byte map")


async def test_a_full_store_answers_store_full_and_still_reads(
    tmp_path: Path, hub: FakeHub, content: FakeContent
) -> None:
    cfg = shard_config(tmp_path, hub, content.server.address, map_size=SMALL_MAP)
    async with ShardService(cfg) as svc:
        client = Client(svc.address)
        try:
            made, error = await fill(client)
            assert made > 10
            # The gRPC status is UNAVAILABLE with the store-full code: the gateway's 503.
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert (ERROR_TRAILER, "store-full") in tuple(error.trailing_metadata() or ())
            assert "MDB" not in (error.details() or "")
            with pytest.raises(StoreFull):  # a submission storing its reply finds no room either
                for i in range(15):
                    await client.submit("user-00000", "u1", WRONG, key=f"key-{i}-" + "k" * 150)
            # Reads still work, and the status says how full the map is.
            assert (await client.user("user-00000")).profile.name == "N" * 100
            status = await client.status()
            assert status.users == made
            assert status.store_map_size == SMALL_MAP
            assert status.store_bytes_used >= 0.9 * SMALL_MAP
            census = await client.call(
                "Census", shard_pb2.CensusRequest(principals=["user-00001", "nobody"])
            )
            assert list(census.found) == ["user-00001"]
            assert (census.users, census.store_map_size) == (made, SMALL_MAP)
        finally:
            await client.close()


async def test_a_failing_read_is_unavailable_not_internal(
    tmp_path: Path, hub: FakeHub, content: FakeContent, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ShardService(shard_config(tmp_path, hub, content.server.address)) as svc:
        client = Client(svc.address)
        try:
            await client.create("alice")

            def broken(*args: Any, **kwargs: Any) -> Any:
                raise lmdb.ReadersFullError("mdb_txn_begin: MDB_READERS_FULL")

            # What LMDB raises when every reader slot is taken.
            monkeypatch.setattr(svc.store.store, "read", broken)
            with pytest.raises(Unavailable) as caught:
                await client.user("alice")
            assert "READERS" not in caught.value.message
            with pytest.raises(Unavailable):
                await client.status()
        finally:
            await client.close()


async def test_a_full_store_at_start_is_store_full(tmp_path: Path) -> None:
    from user_shard.store import ShardStore

    store = ShardStore(tmp_path, durable=False, map_size=SMALL_MAP)
    await store.start()
    try:
        i = 0
        with pytest.raises(StoreFull):
            while True:
                await store.create_user(
                    f"u{i:06d}".encode(), shard_pb2.Profile(name="N" * 100), now_ms=0
                )
                i += 1
    finally:
        await store.stop()
    smaller = ShardStore(tmp_path / "other", durable=False, map_size=64 * 1024)
    # A map too small for even the empty store fails to open as StoreFull, not MapFullError.
    try:
        await smaller.start()
    except StoreFull:
        pass
    finally:
        await smaller.stop()
