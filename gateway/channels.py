"""Every gRPC channel the gateway opens is made by :func:`open_channel`.

Transport policy (mutual TLS, keepalive, request-id propagation, default
deadlines) lives in :func:`runtime.rpc.make_channel`. With the gateway's
cluster certificate every channel is mutual TLS and accepts only a server of
the expected role; without one (tests) it is plain text. A channel to a
shard also names the shard it is meant for in every call, so a shard that is
not the one the route named refuses the call (``WrongShard``); shard
channels do it without an interceptor (:func:`shard_stub`), for speed. Channels are
long-lived: one per (address, role, shard) for the life of the worker process.
"""

from __future__ import annotations

from typing import cast

import grpc

from protos import shard_pb2_grpc
from runtime.rpc import DirectStub, make_channel
from runtime.tls import Role, TLSConfig

__all__ = ["ChannelPool", "open_channel", "shard_stub"]


def open_channel(
    address: str, tls: TLSConfig | None, role: Role, shard_id: str | None = None
) -> grpc.aio.Channel:
    """A long-lived channel to the ``role`` service at ``address`` (the shard ``shard_id``).

    A shard's channel carries the most calls and has no interceptor: its stubs
    must be :class:`~runtime.rpc.DirectStub` with the same ``shard_id`` (see
    :func:`shard_stub`), which add the request id, the shard and the deadline.
    """
    return make_channel(
        address, tls, server_role=role, shard_id=shard_id, intercept=role is not Role.SHARD
    )


def shard_stub(channel: grpc.aio.Channel, shard_id: str) -> shard_pb2_grpc.UserShardAsyncStub:
    """The stub of a shard's channel from :func:`open_channel`."""
    stub = DirectStub(shard_pb2_grpc.UserShardStub(channel), shard_id)
    return cast("shard_pb2_grpc.UserShardAsyncStub", stub)


class ChannelPool:
    """One channel per (address, role, shard), opened on first use, closed together."""

    def __init__(self, tls: TLSConfig | None) -> None:
        self._tls = tls
        self._channels: dict[tuple[str, Role, str | None], grpc.aio.Channel] = {}

    def get(self, address: str, role: Role, shard_id: str | None = None) -> grpc.aio.Channel:
        key = (address, role, shard_id)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = open_channel(address, self._tls, role, shard_id)
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(grace=None)
