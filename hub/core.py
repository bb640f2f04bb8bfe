"""The hub's operations behind its RPCs: the treasury and the capacity rounds."""

from __future__ import annotations

from hub import treasury
from hub.clock import Clock, wall_clock_ms
from hub.rounds import CapacityRounds
from hub.store import HubStore
from protos import hub_pb2
from runtime import logs
from runtime.tls import Identity

__all__ = ["Hub"]

log = logs.get_logger(__name__)


class Hub:
    """What the servicer calls. ``policy`` is the stored init config."""

    def __init__(
        self,
        store: HubStore,
        policy: hub_pb2.HubConfig,
        rounds: CapacityRounds,
        *,
        registry_address: str,
        content_address: str,
        clock: Clock = wall_clock_ms,
    ) -> None:
        """``clock`` stamps each grant (wall ms)."""
        self.store = store
        self.policy = policy
        self.rounds = rounds
        self.registry_address = registry_address
        self.content_address = content_address
        self.clock = clock

    async def request_allowance(
        self, request: hub_pb2.AllowanceRequest, caller: Identity | None = None
    ) -> hub_pb2.AllowanceGrant:
        """Grant a shard's allowance request once per seq (see :mod:`hub.treasury`).

        ``caller`` is the requesting shard's verified identity (None only
        without TLS). Raises ``InvalidArgument``, ``NotThisShard`` or
        ``UnknownShard`` (PERMISSION_DENIED), or ``StaleSequence``
        (FAILED_PRECONDITION).
        """
        treasury.check_caller(caller, request.shard_id)
        ask = treasury.Ask(
            shard_id=request.shard_id,
            seq=request.seq,
            amount=request.amount,
            staked_delta=request.staked_delta,
        )
        outcome = await self.store.request_allowance(
            ask,
            cap=self.policy.cap,
            max_grant=self.policy.max_grant,
            now_ms=self.clock(),
        )
        log.info(
            "allowance",
            shard_id=ask.shard_id,
            seq=ask.seq,
            asked=ask.amount,
            granted=outcome.grant.granted,
            replay=not outcome.new,
            total_granted=outcome.totals.total_granted,
        )
        return hub_pb2.AllowanceGrant(
            shard_id=ask.shard_id,
            seq=ask.seq,
            granted=outcome.grant.granted,
            total_granted_to_shard=outcome.shard.granted,
        )

    async def ensure_capacity(self) -> hub_pb2.EnsureCapacityReply:
        return await self.rounds.ensure()

    def treasury(self) -> hub_pb2.Treasury:
        return self.store.treasury(self.policy.cap)

    def shards(self) -> hub_pb2.HubShards:
        return hub_pb2.HubShards(shards=self.store.shards())

    def config(self) -> hub_pb2.HubConfig:
        """The stored init config, with where the registry and content service are now."""
        reply = hub_pb2.HubConfig()
        reply.CopyFrom(self.policy)
        reply.registry_address = self.registry_address
        reply.content_address = self.content_address
        return reply
