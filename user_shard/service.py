"""The user shard process: builds its parts and runs their lifecycle.

The operations live in ``core`` (:class:`~user_shard.core.Shard`), the peers
in ``peers``, the background loops in ``refiller`` and ``sweeper``, the gRPC
edge in ``grpc_edge``. Start order: store, peers and loops, then the server;
stop order: drain the server, stop the loops, finish queued writes, close.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from runtime import logs
from runtime.lifecycle import BackgroundTasks, Lifecycle
from runtime.metrics import Figure
from runtime.rpc import Server
from user_shard import microbank
from user_shard.config import ShardConfig
from user_shard.core import Shard, ShardCounters
from user_shard.grpc_edge import binding
from user_shard.limits import DailyLimits
from user_shard.peers import ContentClient, HubClient
from user_shard.refiller import Refiller
from user_shard.store import ShardStore
from user_shard.sweeper import ReplySweeper
from user_shard.voting import VoteReporter

__all__ = ["ShardService", "wall_clock_ms"]

log = logs.get_logger(__name__)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class ShardService(Lifecycle):
    """One user shard. Use as ``async with ShardService(cfg) as svc:``.

    ``clock`` returns wall time in ms; tests pass a fake one to cross a UTC day.
    """

    def __init__(self, config: ShardConfig, *, clock: Callable[[], int] = wall_clock_ms) -> None:
        self.config = config
        tls = config.server.tls
        self.store = ShardStore(
            config.data_dir,
            durable=config.durable,
            group_commit=config.group_commit,
            map_size=config.map_size,
        )
        self.content = ContentClient(config.content_address, tls)
        self.hub = HubClient(config.shard_id, config.hub_address, tls)
        policy = microbank.RefillPolicy(
            config.base_allowance, config.low_water_fraction, config.refill_target_s
        )
        mint_rate = microbank.MintRate(window_s=config.refill_target_s)
        self.refiller = Refiller(
            self.store,
            policy,
            mint_rate,
            self.hub.request_allowance,
            retry_max_s=config.hub_retry_max_s,
            report_quiet_s=config.stake_report_quiet_s,
        )
        self.sweeper = ReplySweeper(
            self.store,
            retention_ms=int(config.idempotency_retention_s * 1000),
            interval_s=config.idempotency_sweep_interval_s,
            batch=config.idempotency_sweep_batch,
            clock=clock,
        )
        self.votes = VoteReporter(self.store, self.hub.report_votes)
        self.shard = Shard(
            config.shard_id,
            self.store,
            self.content,
            self.refiller,
            limits=DailyLimits(config.daily_attempt_limit, config.daily_token_limit),
            policy=policy,
            mint_rate=mint_rate,
            clock=clock,
            votes=self.votes,
        )
        # shard_id: the edge refuses calls meant for another shard (a stale
        # route to an address this shard now holds).
        self.server = Server(
            config.shard_id, config.server, [binding(self.shard)], shard_id=config.shard_id
        )
        self._loops = BackgroundTasks()
        self._started = False
        self._stopped = False

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def counters(self) -> ShardCounters:
        return self.shard.counters

    async def start(self) -> None:
        """Open the store, start the refiller and the sweeper, then serve."""
        if self._started:
            return
        self._started = True
        try:
            await self.store.start()
            self._loops.spawn(self.refiller.run(), name="allowance-refill")
            self._loops.spawn(self.sweeper.run(), name="idempotency-sweep")
            self._loops.spawn(self.votes.run(), name="vote-report")
            await self.server.start()
        except BaseException:
            await self.stop()
            raise
        log.info("shard_started", shard_id=self.config.shard_id, address=self.address)

    async def stop(self) -> None:
        """Drain calls, stop the loops, finish queued writes, close. Idempotent."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        await self.server.stop()
        await self._loops.stop()
        await self.votes.close()
        await self.store.stop()
        await self.content.close()
        await self.hub.close()
        log.info("shard_stopped", shard_id=self.config.shard_id)

    def figures(self) -> Iterator[Figure]:
        """What ``/metrics`` reports besides RPCs (read at each scrape)."""
        s = self.shard.status()
        yield "shard_users", "Users with a profile on this shard", s.users
        yield "shard_staked_tokens", "Tokens credited to this shard's users", s.credited_total
        yield "shard_pending_tokens", "Tokens earned, waiting for allowance", s.pending_total
        yield "shard_allowance_tokens", "Minting allowance left", s.allowance_remaining
        yield "shard_granted_tokens", "Allowance the hub granted this shard", s.granted_total
        yield "shard_store_bytes", "Bytes the shard's store uses", s.store_bytes_used
        yield "shard_store_map_bytes", "The store's map size", s.store_map_size
