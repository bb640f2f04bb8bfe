"""The allowance rule, pure: how much a shard is granted, exactly once.

A shard asks with a sequence number. The first request with a given
``(shard_id, seq)`` is granted ``min(amount, max_grant, cap - total_granted)``
and recorded; any retry of that seq gets the recorded grant back and changes
nothing, so a shard that lost a reply can ask again safely. A seq below the
shard's last one that was never granted is a conflict (the shard's ledger and
the hub disagree). The total granted never exceeds the cap.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos import hub_pb2
from runtime.errors import Conflict, InvalidArgument, PermissionDenied
from runtime.tls import Identity, Role

__all__ = [
    "Ask",
    "GrantOutcome",
    "NotThisShard",
    "StaleSequence",
    "UnknownShard",
    "check_caller",
    "grant",
]


class UnknownShard(PermissionDenied):
    code = "unknown-shard"


class NotThisShard(PermissionDenied):
    """A shard asked for allowance in another shard's name."""

    code = "not-this-shard"


class StaleSequence(Conflict):
    code = "stale-sequence"


@dataclass(frozen=True)
class Ask:
    """One allowance request."""

    shard_id: str
    seq: int
    amount: int
    staked_delta: int

    def __post_init__(self) -> None:
        if not self.shard_id:
            raise InvalidArgument("shard_id is required")
        if self.seq < 0 or self.amount < 0 or self.staked_delta < 0:
            raise InvalidArgument("seq, amount and staked_delta must be >= 0")


@dataclass(frozen=True)
class GrantOutcome:
    """The answer, and the state to store when ``new``."""

    grant: hub_pb2.GrantRecord
    shard: hub_pb2.ShardGrant
    totals: hub_pb2.Treasury
    new: bool
    """False for a replayed seq: only ``totals.allowance_calls`` moved."""


def check_caller(caller: Identity | None, shard_id: str) -> None:
    """Only a shard asks, and only in its own name: its certificate must name ``shard_id``.

    ``caller`` None means no identity was checked (no TLS: tests only).
    Raises :class:`NotThisShard`.
    """
    if caller is not None and (caller.role is not Role.SHARD or caller.name != shard_id):
        raise NotThisShard(f"{caller} may not ask in the name of {shard_id!r}")


def grant(
    ask: Ask,
    *,
    cap: int,
    max_grant: int,
    known_shard: bool,
    totals: hub_pb2.Treasury,
    shard: hub_pb2.ShardGrant | None,
    stored: hub_pb2.GrantRecord | None,
    now_ms: int,
) -> GrantOutcome:
    """Decide one request.

    ``totals`` holds the treasury's running figures (``shards`` unused),
    ``shard`` the asking shard's account (None before its first grant) and
    ``stored`` the grant already recorded for ``(shard_id, seq)``, if any.
    Raises :class:`UnknownShard` for a shard this hub did not create and
    :class:`StaleSequence` for an old seq that was never granted.
    """
    if not known_shard:
        raise UnknownShard(f"{ask.shard_id} is not a shard of this hub")
    account = hub_pb2.ShardGrant(shard_id=ask.shard_id)
    if shard is not None:
        account.CopyFrom(shard)
    after = hub_pb2.Treasury()
    after.CopyFrom(totals)
    after.allowance_calls += 1
    if stored is not None:
        return GrantOutcome(grant=stored, shard=account, totals=after, new=False)
    if shard is not None and ask.seq < shard.last_seq:
        raise StaleSequence(
            f"{ask.shard_id}: seq {ask.seq} is below the last granted seq {shard.last_seq}"
        )
    granted = max(0, min(ask.amount, max_grant, cap - totals.total_granted))
    record = hub_pb2.GrantRecord(
        seq=ask.seq,
        granted=granted,
        amount=ask.amount,
        staked_delta=ask.staked_delta,
        at_ms=now_ms,
    )
    account.granted += granted
    account.staked += ask.staked_delta
    account.last_seq = ask.seq
    after.total_granted += granted
    after.total_staked += ask.staked_delta
    return GrantOutcome(grant=record, shard=account, totals=after, new=True)
