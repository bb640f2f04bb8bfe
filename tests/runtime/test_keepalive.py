"""One keepalive policy on both ends: idle pings never cost a connection (issue 1)."""

from __future__ import annotations

import asyncio

import grpc

from protos import introspect_pb2, introspect_pb2_grpc
from runtime import rpc

# gRPC sends an idle client's pings at most once a second, whatever the policy.
FAST = rpc.Keepalive(ping_interval_ms=1_000, ping_timeout_ms=2_000)
COUNTS = introspect_pb2.GetRpcCountsRequest()


async def _states_while_idle(
    channel: grpc.aio.Channel, seconds: float
) -> list[grpc.ChannelConnectivity]:
    """Every connectivity state ``channel`` passes through in ``seconds`` without calls."""
    seen = [channel.get_state()]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            await asyncio.wait_for(channel.wait_for_state_change(seen[-1]), left)
        except TimeoutError:
            break
        seen.append(channel.get_state())
    return seen


async def test_idle_pings_at_the_policy_rate_keep_the_connection() -> None:
    # A ping a second for 6 s on an idle connection: gRPC's default server
    # policy (one idle ping per 5 minutes, two strikes) answers the fourth
    # with GOAWAY too_many_pings, about 3 s in, and the channel drops out of
    # READY (the server-side failure users saw); with the shared policy it
    # never does.
    config = rpc.ServerConfig(grace_s=0, keepalive=FAST)
    async with rpc.Server("t", config, []) as server:
        async with rpc.make_channel(server.address, keepalive=FAST) as channel:
            stub = introspect_pb2_grpc.IntrospectStub(channel)
            await stub.GetRpcCounts(COUNTS)
            assert channel.get_state() == grpc.ChannelConnectivity.READY
            states = await _states_while_idle(channel, 6.0)
            assert states == [grpc.ChannelConnectivity.READY], states
            await stub.GetRpcCounts(COUNTS)  # the same connection still serves
            assert channel.get_state() == grpc.ChannelConnectivity.READY


def test_the_server_accepts_pings_at_least_as_often_as_clients_send_them() -> None:
    for policy in (rpc.KEEPALIVE, FAST):
        client = dict(policy.client_options())
        server = dict(policy.server_options())
        interval = client["grpc.keepalive_time_ms"]
        assert client["grpc.keepalive_permit_without_calls"] == 1
        assert server["grpc.keepalive_permit_without_calls"] == 1
        assert server["grpc.http2.min_recv_ping_interval_without_data_ms"] <= interval
        assert server["grpc.http2.min_ping_interval_without_data_ms"] <= interval
        assert server["grpc.http2.max_pings_without_data"] == 0
    assert rpc.ServerConfig().keepalive == rpc.KEEPALIVE
