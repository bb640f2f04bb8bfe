"""The registry's operations: the rule, the store and the hub poke together."""

from __future__ import annotations

import time
from collections.abc import Callable

from protos import registry_pb2
from registry import assignment
from registry.config import RegistryConfig
from registry.poker import HubPoker
from registry.store import RegistryStore
from runtime import logs
from runtime.errors import InvalidArgument, NoCapacity, UnknownUser
from runtime.principals import check_principal

__all__ = ["Registry", "wall_clock_ms"]

log = logs.get_logger(__name__)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Registry:
    """Assign, look up and register, over an open :class:`RegistryStore`.

    ``clock`` returns wall time in ms; tests pass a fake one.
    """

    def __init__(
        self,
        config: RegistryConfig,
        store: RegistryStore,
        poker: HubPoker,
        *,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.config = config
        self.store = store
        self.poker = poker
        self.clock = clock

    async def assign(self, principal: str) -> registry_pb2.Assignment:
        """The principal's shard, assigning one if it has none.

        Raises :class:`InvalidArgument` for a bad principal and
        :class:`NoCapacity` (after poking the hub) when every shard is full.
        """
        check_principal(principal)
        known = self.store.lookup(principal)
        if known is not None and not self.store.is_pending(principal):
            return _assignment(principal, known, newly=False)
        try:  # new, or pending: the write renews the lease
            result = await self.store.assign(
                principal,
                soft_limit=self.config.soft_limit,
                hard_limit=self.config.hard_limit,
                now_ms=self.clock(),
            )
        except NoCapacity:
            self.poker.poke("no capacity")
            raise
        if result.reached_soft:
            self.poker.poke(f"{result.shard.shard_id} reached the soft limit")
        if result.became_full:
            log.info("shard_full", shard_id=result.shard.shard_id, users=result.shard.users)
            self.poker.poke(f"{result.shard.shard_id} is full")
        return _assignment(principal, result.shard, newly=result.newly_assigned)

    def lookup(self, principal: str) -> registry_pb2.Assignment:
        """The principal's shard. Raises :class:`UnknownUser` if it has none."""
        check_principal(principal)
        shard = self.store.lookup(principal)
        if shard is None:
            raise UnknownUser(f"principal {principal} has no shard")
        return _assignment(principal, shard, newly=False)

    async def register_shard(self, shard_id: str, address: str) -> registry_pb2.ShardInfo:
        """Add a shard or update a known one's address (idempotent)."""
        assignment.validate_shard_id(shard_id)
        assignment.validate_address(address)
        info = await self.store.register(shard_id, address, now_ms=self.clock())
        log.info("shard_registered", shard_id=shard_id, address=address, users=info.users)
        return self._with_limit(info)

    async def set_shard_state(self, shard_id: str, *, disabled: bool) -> registry_pb2.ShardInfo:
        """Disable a shard (it gets no new users) or enable it again (idempotent).

        Only the hub calls this, carrying out an adopted proposal. Raises
        :class:`InvalidArgument` for an unknown shard.
        """
        assignment.validate_shard_id(shard_id)
        info = await self.store.set_disabled(
            shard_id, disabled=disabled, hard_limit=self.config.hard_limit
        )
        if info is None:
            raise InvalidArgument(f"no shard {shard_id!r} in the directory")
        log.info("shard_state_set", shard_id=shard_id, disabled=disabled)
        return self._with_limit(info)

    def list_shards(self) -> registry_pb2.ShardDirectory:
        return registry_pb2.ShardDirectory(
            shards=[self._with_limit(s) for s in self.store.shards()],
            soft_limit=self.config.soft_limit,
            hard_limit=self.config.hard_limit,
        )

    def _with_limit(self, info: registry_pb2.ShardInfo) -> registry_pb2.ShardInfo:
        info.hard_limit = self.config.hard_limit
        return info


def _assignment(
    principal: str, shard: registry_pb2.ShardInfo, *, newly: bool
) -> registry_pb2.Assignment:
    return registry_pb2.Assignment(
        principal=principal,
        shard_id=shard.shard_id,
        address=shard.address,
        newly_assigned=newly,
    )
