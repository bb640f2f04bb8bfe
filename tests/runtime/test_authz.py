"""Mutual TLS servers and channels, and per-RPC authorization at the edge."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import content_pb2, content_pb2_grpc, introspect_pb2, introspect_pb2_grpc
from runtime import authz, rpc
from runtime.errors import PermissionDenied, Unavailable
from runtime.tls import ClusterCA, Identity, Role, TLSConfig

CONTENT = content_pb2.DESCRIPTOR.services_by_name["Content"].full_name
RULES: authz.Rules = {
    "ImportPack": {Role.OPERATOR},
    "ListUnits": {Role.GATEWAY},
    "GetUnit": {Role.GATEWAY},
    "VerifyQuiz": {Role.SHARD},
    "VerifyQuizBatch": {Role.SHARD},
    "GetContentStats": {Role.OPERATOR, Role.SHARD},
}


class WhoAmI(content_pb2_grpc.ContentServicer):
    """GetContentStats answers with the caller's identity as its only subject."""

    async def GetContentStats(self, request: Any, context: rpc.Context) -> Any:
        return content_pb2.ContentStats(subjects=[str(authz.caller(context))])


def binding(rules: authz.Rules | None = RULES) -> rpc.ServiceBinding:
    servicer = WhoAmI()
    return rpc.ServiceBinding(
        CONTENT, lambda s: content_pb2_grpc.add_ContentServicer_to_server(servicer, s), rules
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TLSConfig]:
    root = tmp_path_factory.mktemp("certs")
    ca = ClusterCA.open(root / "ca")
    out = {r.value: ca.issue(Identity(r, r.value), root / r.value) for r in Role}
    out["shard-7"] = ca.issue(Identity(Role.SHARD, "shard-7"), root / "shard-7")
    out["stranger"] = ClusterCA.open(root / "ca2").issue(
        Identity(Role.OPERATOR, "operator"), root / "stranger"
    )
    return out


@pytest.fixture
async def server(certs: dict[str, TLSConfig]) -> AsyncIterator[rpc.Server]:
    config = rpc.ServerConfig(tls=certs["content"], grace_s=0)
    async with rpc.Server("content", config, [binding()]) as server:
        yield server


async def stats(server: rpc.Server, tls: TLSConfig | None, **kw: Any) -> list[str]:
    async with rpc.make_channel(server.address, tls, **kw) as ch, rpc.rpc_errors("content"):
        reply = await content_pb2_grpc.ContentStub(ch).GetContentStats(
            content_pb2.GetContentStatsRequest(), timeout=3
        )
    return list(reply.subjects)


async def test_allowed_roles_pass_and_see_who_called(
    server: rpc.Server, certs: dict[str, TLSConfig]
) -> None:
    assert await stats(server, certs["operator"]) == ["operator/operator"]
    assert await stats(server, certs["shard-7"], server_role=Role.CONTENT) == ["shard/shard-7"]
    await rpc.wait_healthy(server.address, tls=certs["gateway"], timeout_s=5)
    async with rpc.make_channel(server.address, certs["gateway"]) as ch:
        counts = await introspect_pb2_grpc.IntrospectStub(ch).GetRpcCounts(
            introspect_pb2.GetRpcCountsRequest()
        )
    assert counts.calls[f"/{CONTENT}/GetContentStats"] == 2


async def test_other_roles_are_denied_before_the_handler(
    server: rpc.Server, certs: dict[str, TLSConfig]
) -> None:
    with pytest.raises(PermissionDenied, match="gateway/gateway may not call"):
        await stats(server, certs["gateway"])
    async with rpc.make_channel(server.address, certs["operator"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await content_pb2_grpc.ContentStub(ch).VerifyQuiz(content_pb2.VerifyQuizRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_strangers_and_plain_text_cannot_connect(
    server: rpc.Server, certs: dict[str, TLSConfig]
) -> None:
    for tls in (certs["stranger"], None):
        with pytest.raises(Unavailable):
            await stats(server, tls)


async def test_a_client_accepts_only_the_server_role_it_expects(
    server: rpc.Server, certs: dict[str, TLSConfig]
) -> None:
    with pytest.raises(Unavailable):
        await stats(server, certs["operator"], server_role=Role.HUB)


async def test_without_tls_nobody_is_checked() -> None:
    async with rpc.Server("plain", rpc.ServerConfig(grace_s=0), [binding(None)]) as server:
        assert await stats(server, None) == ["None"]
        async with rpc.make_channel(server.address) as ch:
            reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_tls_server_needs_rules_for_every_method(certs: dict[str, TLSConfig]) -> None:
    config = rpc.ServerConfig(tls=certs["content"])
    with pytest.raises(ValueError, match="needs access rules"):
        rpc.Server("content", config, [binding(None)])
    partial = {k: v for k, v in RULES.items() if k != "VerifyQuiz"}
    with pytest.raises(ValueError, match=r"missing \['VerifyQuiz'\]"):
        rpc.Server("content", config, [binding(partial)])
    with pytest.raises(ValueError, match=r"unknown \['Nope'\]"):
        rpc.Server("content", config, [binding({**RULES, "Nope": {Role.HUB}})])
