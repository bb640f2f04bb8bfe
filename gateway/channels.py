"""Every gRPC channel the gateway opens is made by :func:`open_channel`.

Transport policy (mutual TLS, keepalive, request-id propagation, default
deadlines) lives in :func:`runtime.rpc.make_channel`. With the gateway's
cluster certificate every channel is mutual TLS and accepts only a server of
the expected role; without one (tests) it is plain text. Channels are
long-lived: one per peer address for the life of the worker process.
"""

from __future__ import annotations

import grpc

from runtime.rpc import make_channel
from runtime.tls import Role, TLSConfig

__all__ = ["ChannelPool", "open_channel"]


def open_channel(address: str, tls: TLSConfig | None, role: Role) -> grpc.aio.Channel:
    """A long-lived channel to the ``role`` service at ``address``."""
    return make_channel(address, tls, server_role=role)


class ChannelPool:
    """One channel per (address, role), opened on first use, closed together."""

    def __init__(self, tls: TLSConfig | None) -> None:
        self._tls = tls
        self._channels: dict[tuple[str, Role], grpc.aio.Channel] = {}

    def get(self, address: str, role: Role) -> grpc.aio.Channel:
        channel = self._channels.get((address, role))
        if channel is None:
            channel = self._channels[address, role] = open_channel(address, self._tls, role)
        return channel

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close(grace=None)
