"""Nudging the hub to check capacity, without ever making a caller wait.

:meth:`HubPoker.poke` only sets an event; one owned task sends
``EnsureCapacity`` and coalesces every poke that arrives meanwhile into the
next call. A hub that is down or slow is logged and forgotten: the hub also
checks on its own timer, so a lost poke delays a spawn, never loses one.
"""

from __future__ import annotations

import asyncio

import grpc

from protos import hub_pb2, hub_pb2_grpc
from runtime import logs
from runtime.errors import CanistryError
from runtime.lifecycle import BackgroundTasks
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role, TLSConfig

__all__ = ["HubPoker"]

log = logs.get_logger(__name__)


class HubPoker:
    """Sends coalesced ``EnsureCapacity`` calls to ``hub_address`` in the background.

    With ``hub_address`` None every poke is a no-op. ``tls`` is the
    registry's own certificate (None: plain text, tests only).
    """

    def __init__(
        self, hub_address: str | None, *, tls: TLSConfig | None = None, timeout_s: float = 30.0
    ) -> None:
        self.hub_address = hub_address
        self.tls = tls
        self.timeout_s = timeout_s
        self.pokes = 0
        """Pokes asked for (before coalescing)."""
        self.calls = 0
        """``EnsureCapacity`` calls sent, answered or not."""
        self._wanted = asyncio.Event()
        self._loops = BackgroundTasks()
        self._channel: grpc.aio.Channel | None = None

    async def start(self) -> None:
        if self.hub_address is None or self._channel is not None:
            return
        self._channel = make_channel(self.hub_address, self.tls, server_role=Role.HUB)
        self._loops.spawn(self._run(), name="registry-hub-poker")

    async def stop(self) -> None:
        await self._loops.stop()
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()

    def poke(self, reason: str) -> None:
        """Ask for a capacity check soon. Never blocks, never raises."""
        if self.hub_address is None:
            return
        self.pokes += 1
        log.info("hub_poke", reason=reason)
        self._wanted.set()

    async def _run(self) -> None:
        assert self._channel is not None
        stub = hub_pb2_grpc.HubStub(self._channel)
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            self.calls += 1
            try:
                async with rpc_errors("hub"):
                    reply = await stub.EnsureCapacity(
                        hub_pb2.EnsureCapacityRequest(), timeout=self.timeout_s
                    )
            except CanistryError as exc:
                log.warning("hub_poke_failed", error=exc.code, detail=exc.message)
            else:
                log.info("hub_poked", action=reply.action, shard_id=reply.shard_id)
