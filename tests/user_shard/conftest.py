from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from protos import shard_pb2, shard_pb2_grpc
from runtime import rpc
from runtime.store import get_msg
from tests.user_shard.fakes import FakeContent, FakeHub
from user_shard import ShardConfig, ShardService


@pytest.fixture
async def content() -> AsyncIterator[FakeContent]:
    fake = FakeContent()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    fake = FakeHub()
    await fake.start()
    yield fake
    await fake.stop()


def shard_config(
    tmp_path: Path, hub: FakeHub, content_address: str, **overrides: Any
) -> ShardConfig:
    fields: dict[str, Any] = {
        "shard_id": "s1",
        "data_dir": tmp_path / "shard",
        "hub_address": hub.address,
        "content_address": content_address,
        "hub_retry_max_s": 0.2,
    }
    fields.update(overrides)
    return ShardConfig(**fields)


class Client:
    """A shard stub whose calls raise domain errors, like a real peer sees them."""

    def __init__(self, address: str) -> None:
        self.channel = rpc.make_channel(address)
        self.stub = shard_pb2_grpc.UserShardStub(self.channel)

    async def call(self, method: str, request: Any) -> Any:
        async with rpc.rpc_errors("shard"):
            return await getattr(self.stub, method)(request, timeout=10)

    async def create(self, principal: str, name: str = "Ada") -> shard_pb2.UserReply:
        return await self.call(
            "CreateUser",
            shard_pb2.CreateUserRequest(
                principal=principal, profile=shard_pb2.Profile(name=name, email="a@b.c")
            ),
        )

    async def submit(
        self, principal: str, unit_id: str, answers: dict[str, str], key: str = ""
    ) -> shard_pb2.SubmitQuizReply:
        return await self.call(
            "SubmitQuiz",
            shard_pb2.SubmitQuizRequest(
                principal=principal, unit_id=unit_id, answers=answers, idempotency_key=key
            ),
        )

    async def user(self, principal: str) -> shard_pb2.UserRecord:
        reply = await self.call("GetUser", shard_pb2.GetUserRequest(principal=principal))
        return reply.user

    async def status(self) -> shard_pb2.ShardStatus:
        return await self.call("GetShardStatus", shard_pb2.GetShardStatusRequest())

    async def close(self) -> None:
        await self.channel.close()


def assert_books_balance(svc: ShardService) -> None:
    """Invariant 2, plus: the ledger's totals equal the sums over users."""
    ledger = svc.store.ledger()
    assert ledger.granted_total == ledger.allowance_remaining + ledger.credited_total
    store = svc.store.store
    staked = pending = 0
    with store.read() as txn:
        for key, _ in txn.cursor(db=store.db("users")):
            user = get_msg(txn, store.db("users"), bytes(key), shard_pb2.UserRecord)
            assert user is not None
            staked += user.staked
            pending += user.pending
    assert staked == ledger.credited_total
    assert pending == ledger.pending_total
