"""The server edge against raw bytes: authorize first, then decode; and the target-shard check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import content_pb2, content_pb2_grpc, shard_pb2, shard_pb2_grpc
from runtime import authz, rpc
from runtime.errors import ERROR_TRAILER, WrongShard
from runtime.tls import ClusterCA, Identity, Role, TLSConfig

CONTENT = content_pb2.DESCRIPTOR.services_by_name["Content"].full_name
SHARD = shard_pb2.DESCRIPTOR.services_by_name["UserShard"].full_name
STATS = f"/{CONTENT}/GetContentStats"
GARBAGE = [b"\xff" * 16, b"\x0a\x7f" + b"x" * 3, b"\x08", b"\x0a\x05abc"]


class Stats(content_pb2_grpc.ContentServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def GetContentStats(self, request: Any, context: rpc.Context) -> Any:
        self.calls += 1
        return content_pb2.ContentStats(subjects=["ok"])


class Users(shard_pb2_grpc.UserShardServicer):
    async def GetUser(self, request: Any, context: rpc.Context) -> Any:
        return shard_pb2.UserReply(user=shard_pb2.UserRecord(principal=request.principal))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TLSConfig]:
    root = tmp_path_factory.mktemp("certs")
    ca = ClusterCA.open(root / "ca")
    return {r.value: ca.issue(Identity(r, r.value), root / r.value) for r in Role}


@pytest.fixture
async def content(certs: dict[str, TLSConfig]) -> AsyncIterator[tuple[rpc.Server, Stats]]:
    servicer = Stats()
    rules: authz.Rules = {
        "ImportPack": {Role.OPERATOR},
        "ListUnits": {Role.GATEWAY},
        "GetUnit": {Role.GATEWAY},
        "VerifyQuiz": {Role.SHARD},
        "VerifyQuizBatch": {Role.SHARD},
        "GetContentStats": {Role.GATEWAY},
    }
    binding = rpc.ServiceBinding(
        CONTENT, lambda s: content_pb2_grpc.add_ContentServicer_to_server(servicer, s), rules
    )
    config = rpc.ServerConfig(tls=certs["content"], grace_s=0, max_receive_bytes=64 * 1024)
    async with rpc.Server("content", config, [binding]) as server:
        yield server, servicer


async def _raw(address: str, tls: TLSConfig, method: str, payload: bytes) -> grpc.aio.AioRpcError:
    """Send ``payload`` as the request of ``method`` unencoded; return the error it got."""
    async with rpc.make_channel(address, tls, server_role=Role.CONTENT) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(payload, timeout=5)
    return info.value


async def test_malformed_bytes_are_invalid_argument_naming_nothing_internal(
    content: tuple[rpc.Server, Stats], certs: dict[str, TLSConfig]
) -> None:
    server, servicer = content
    for payload in GARBAGE:
        err = await _raw(server.address, certs["gateway"], STATS, payload)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (payload, err)
        assert err.details() == rpc.MALFORMED
        assert dict(err.trailing_metadata() or ())[ERROR_TRAILER] == "invalid-argument"
        for internal in ("Decode", "Error", "Exception", "Traceback", "google", "protobuf"):
            assert internal not in (err.details() or "")
    assert servicer.calls == 0
    # Well-formed bytes still reach the handler.
    async with rpc.make_channel(server.address, certs["gateway"], server_role=Role.CONTENT) as ch:
        reply = await ch.unary_unary(STATS, request_serializer=None, response_deserializer=None)(
            content_pb2.GetContentStatsRequest().SerializeToString(), timeout=5
        )
    assert content_pb2.ContentStats.FromString(reply).subjects == ["ok"]


async def test_a_caller_not_allowed_is_denied_before_its_bytes_are_parsed(
    content: tuple[rpc.Server, Stats], certs: dict[str, TLSConfig]
) -> None:
    server, servicer = content
    for role in ("shard", "operator", "hub"):
        err = await _raw(server.address, certs[role], STATS, GARBAGE[0])
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (role, err)
    assert servicer.calls == 0


async def test_an_oversized_request_is_resource_exhausted(
    content: tuple[rpc.Server, Stats], certs: dict[str, TLSConfig]
) -> None:
    server, servicer = content
    err = await _raw(server.address, certs["gateway"], STATS, b"\x00" * (65 * 1024))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert servicer.calls == 0


async def test_a_shard_refuses_calls_meant_for_another_shard() -> None:
    binding = rpc.ServiceBinding(
        SHARD, lambda s: shard_pb2_grpc.add_UserShardServicer_to_server(Users(), s)
    )
    config = rpc.ServerConfig(grace_s=0)
    request = shard_pb2.GetUserRequest(principal="ada")
    async with rpc.Server("shard-a", config, [binding], shard_id="a") as server:
        async with rpc.make_channel(server.address, shard_id="b") as ch:
            with pytest.raises(WrongShard, match="not b"):
                async with rpc.rpc_errors("b"):
                    await shard_pb2_grpc.UserShardStub(ch).GetUser(request)
        for target in ("a", None):
            async with rpc.make_channel(server.address, shard_id=target) as ch:
                reply = await shard_pb2_grpc.UserShardStub(ch).GetUser(request)
                assert reply.user.principal == "ada"
    assert server.rpc_counts[f"/{SHARD}/GetUser"] == 3


async def test_a_method_nobody_implemented_is_unimplemented_not_internal() -> None:
    # grpc's aio HealthServicer inherits List from the generated base, which
    # raises NotImplementedError (the gRPC fuzz campaign found it INTERNAL).
    async with rpc.Server("t", rpc.ServerConfig(grace_s=0), []) as server:
        async with rpc.make_channel(server.address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await health_pb2_grpc.HealthStub(ch).List(health_pb2.HealthListRequest())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
