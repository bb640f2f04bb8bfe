import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import introspect_pb2, introspect_pb2_grpc
from runtime import rpc
from runtime.errors import DailyLimitExceeded, Unavailable


async def test_server_serves_health_and_counts_calls() -> None:
    async with rpc.Server("t", rpc.ServerConfig(), []) as server:
        await rpc.wait_healthy(server.address, timeout_s=5)
        async with rpc.make_channel(server.address) as ch:
            stub = introspect_pb2_grpc.IntrospectStub(ch)
            await stub.GetRpcCounts(introspect_pb2.GetRpcCountsRequest())
            counts = await stub.GetRpcCounts(introspect_pb2.GetRpcCountsRequest())
        assert counts.calls["/canistry.runtime.v1.Introspect/GetRpcCounts"] == 2
    # stop is idempotent
    await server.stop()


async def test_domain_errors_cross_the_wire_as_themselves() -> None:
    class Boom(introspect_pb2_grpc.IntrospectServicer):
        async def GetRpcCounts(self, request, context):
            raise DailyLimitExceeded("20 attempts today")

    class Crash(health_pb2_grpc.HealthServicer):
        async def Check(self, request, context):
            raise RuntimeError("secret detail")

    # Use a bare binding to register a servicer that raises.
    server = rpc.Server("t", rpc.ServerConfig(), [])
    server._server = grpc.aio.server(interceptors=[rpc._Edge("test", server.rpc_counts)])
    introspect_pb2_grpc.add_IntrospectServicer_to_server(Boom(), server._server)
    health_pb2_grpc.add_HealthServicer_to_server(Crash(), server._server)
    port = server._server.add_insecure_port("127.0.0.1:0")
    await server._server.start()
    try:
        async with rpc.make_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(DailyLimitExceeded, match="20 attempts"):
                async with rpc.rpc_errors("t"):
                    await introspect_pb2_grpc.IntrospectStub(ch).GetRpcCounts(
                        introspect_pb2.GetRpcCountsRequest()
                    )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert info.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in (info.value.details() or "")
    finally:
        await server._server.stop(0)


async def test_unreachable_peer_is_unavailable() -> None:
    from runtime.net import free_port

    async with rpc.make_channel(f"127.0.0.1:{free_port()}") as ch:
        with pytest.raises(Unavailable):
            async with rpc.rpc_errors("nobody"):
                await introspect_pb2_grpc.IntrospectStub(ch).GetRpcCounts(
                    introspect_pb2.GetRpcCountsRequest(), timeout=2
                )


async def test_only_a_peer_that_could_not_be_reached_is_peer_unreachable() -> None:
    from runtime.errors import PeerUnreachable
    from runtime.net import free_port

    async with rpc.make_channel(f"127.0.0.1:{free_port()}") as ch:
        with pytest.raises(PeerUnreachable, match="nobody"):
            async with rpc.rpc_errors("nobody"):
                await introspect_pb2_grpc.IntrospectStub(ch).GetRpcCounts(
                    introspect_pb2.GetRpcCountsRequest(), timeout=2
                )

    class DownstreamGone(introspect_pb2_grpc.IntrospectServicer):
        async def GetRpcCounts(self, request, context):
            raise PeerUnreachable("content service is unavailable")

    # A peer that answers "my own peer is unreachable" was reached: the
    # caller sees Unavailable, not PeerUnreachable (no retry, no route refresh).
    server = rpc.Server("t", rpc.ServerConfig(), [])
    server._server = grpc.aio.server(interceptors=[rpc._Edge("test", server.rpc_counts)])
    introspect_pb2_grpc.add_IntrospectServicer_to_server(DownstreamGone(), server._server)
    port = server._server.add_insecure_port("127.0.0.1:0")
    await server._server.start()
    try:
        async with rpc.make_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(Unavailable) as info:
                async with rpc.rpc_errors("t"):
                    await introspect_pb2_grpc.IntrospectStub(ch).GetRpcCounts(
                        introspect_pb2.GetRpcCountsRequest()
                    )
            assert not isinstance(info.value, PeerUnreachable)
    finally:
        await server._server.stop(0)


async def test_a_call_the_server_cancelled_while_stopping_is_unavailable_not_internal() -> None:
    # A shard drained for a restart (an upgrade) may cancel a call it just took: the
    # caller should try again (503), not report an internal error (500).
    cancelled = grpc.aio.AioRpcError(
        grpc.StatusCode.CANCELLED, grpc.aio.Metadata(), grpc.aio.Metadata(), details="stopping"
    )
    with pytest.raises(Unavailable, match="restarting") as caught:
        async with rpc.rpc_errors("shard-0001"):
            raise cancelled
    assert type(caught.value) is Unavailable
