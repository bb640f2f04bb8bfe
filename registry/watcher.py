"""The registry's census of its shards: confirm, release, and see stores fill.

One owned task asks every registered shard, each ``watch_interval_s``, about
the principals still pending on it (``Census``, at most ``MAX_CENSUS`` per
call) and how full its store is; ``registry.reconcile`` holds the rules. A
shard that does not answer is skipped: nothing is released on a guess, only
on the shard's own word that it has no profile. A shard that becomes FULL
by bytes pokes the hub, which then spawns another.

Why the registry asks (rather than the shard telling it): the registry
already knows every shard's address, a shard needs no registry address or
client, and a dead or restarted shard is simply asked again next round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from protos import registry_pb2, shard_pb2, shard_pb2_grpc
from registry import reconcile
from registry.config import RegistryConfig
from registry.poker import HubPoker
from registry.store import RegistryStore
from runtime import logs
from runtime.errors import CanistryError
from runtime.lifecycle import BackgroundTasks
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role

__all__ = ["MAX_CENSUS", "ShardWatcher"]

log = logs.get_logger(__name__)

#: Principals named in one Census call (the shard refuses more).
MAX_CENSUS = 1000


class ShardWatcher:
    """Census rounds over the directory. ``start()``/``stop()`` run :meth:`run` as a task."""

    def __init__(
        self,
        config: RegistryConfig,
        store: RegistryStore,
        poker: HubPoker,
        *,
        clock: Callable[[], int],
    ) -> None:
        self.config = config
        self.store = store
        self.poker = poker
        self.clock = clock
        self.rounds = 0
        self.released = 0
        """Pending assignments released since start."""
        self._channels: dict[tuple[str, str], grpc.aio.Channel] = {}
        self._loops = BackgroundTasks()

    async def start(self) -> None:
        self._loops.spawn(self.run(), name="registry-shard-watcher")

    async def stop(self) -> None:
        await self._loops.stop()
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def run(self) -> None:
        """One round per interval until cancelled; a failed round is logged, never fatal."""
        while True:
            try:
                await self.census_round()
            except Exception:
                log.exception("census_round_failed")
            await asyncio.sleep(self.config.watch_interval_s)

    async def census_round(self) -> None:
        """Ask every registered shard once; a shard that fails is skipped this round."""
        self.rounds += 1
        shards = self.store.shards()
        live = {(s.address, s.shard_id) for s in shards}
        for gone in [key for key in self._channels if key not in live]:
            await self._channels.pop(gone).close()
        for shard in shards:
            try:
                await self.census(shard)
            except CanistryError as exc:
                log.info("census_skipped", shard_id=shard.shard_id, error=exc.code)

    async def census(self, shard: registry_pb2.ShardInfo) -> None:
        """Confirm or release ``shard``'s pending assignments and record its store's size.

        Raises a CanistryError when the shard cannot answer.
        """
        cfg = self.config
        pending = self.store.pending_on(shard.shard_id, MAX_CENSUS)
        async with rpc_errors(f"shard {shard.shard_id}"):
            reply: shard_pb2.CensusReply = await self._stub(shard.address, shard.shard_id).Census(
                shard_pb2.CensusRequest(principals=[p for p, _ in pending]),
                timeout=cfg.shard_timeout_s,
            )
        observed = await self.store.observe_store(
            shard.shard_id,
            used=reply.store_bytes_used,
            size=reply.store_map_size,
            full_fraction=cfg.store_full_fraction,
            hard_limit=cfg.hard_limit,
        )
        if observed is not None and observed[1]:
            log.warning(
                "shard_store_full",
                shard_id=shard.shard_id,
                used=reply.store_bytes_used,
                size=reply.store_map_size,
            )
            self.poker.poke(f"{shard.shard_id}'s store is nearly full")
        if not pending:
            return
        verdict = reconcile.judge(
            pending,
            set(reply.found),
            now_ms=self.clock(),
            timeout_ms=int(cfg.pending_timeout_s * 1000),
        )
        settled = await self.store.settle(
            shard.shard_id,
            confirmed=verdict.confirmed,
            expired=verdict.expired,
            hard_limit=cfg.hard_limit,
        )
        if settled is not None and settled[1]:
            self.released += len(settled[1])
            log.info(
                "assignments_released",
                shard_id=shard.shard_id,
                principals=len(settled[1]),
                users=settled[0].users,
            )

    def _stub(self, address: str, shard_id: str) -> shard_pb2_grpc.UserShardAsyncStub:
        """A stub whose calls name ``shard_id``: whatever else now listens at ``address``
        refuses them (WrongShard), so its answer never releases this shard's users."""
        channel = self._channels.get((address, shard_id))
        if channel is None:
            channel = self._channels[(address, shard_id)] = make_channel(
                address, self.config.server.tls, server_role=Role.SHARD, shard_id=shard_id
            )
        return shard_pb2_grpc.UserShardStub(channel)
