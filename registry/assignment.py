"""The assignment rule, pure: which shard takes a new principal.

A new principal goes to the newest (latest registered) ACTIVE shard that is
below the hard limit, so older shards stop growing once a newer one exists
and each shard fills to its limit in turn. The admission that brings a shard
to the hard limit marks it FULL. A new assignment is *pending* until the shard
confirms the profile (``registry.reconcile``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from protos import registry_pb2
from runtime.errors import InvalidArgument, NoCapacity

__all__ = [
    "Admission",
    "admit",
    "choose_shard",
    "is_open",
    "register",
    "validate_address",
    "validate_shard_id",
]

ACTIVE = registry_pb2.SHARD_STATE_ACTIVE
FULL = registry_pb2.SHARD_STATE_FULL

_SHARD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Admission:
    """The shard after taking one more user, and what that crossed."""

    shard: registry_pb2.ShardInfo
    reached_soft: bool
    """This admission brought the shard to the soft limit."""
    became_full: bool
    """This admission brought the shard to the hard limit."""


def is_open(shard: registry_pb2.ShardInfo, hard_limit: int) -> bool:
    """Whether ``shard`` takes new users."""
    return shard.state == ACTIVE and shard.users < hard_limit and not shard.store_full


def choose_shard(
    shards: Iterable[registry_pb2.ShardInfo], hard_limit: int
) -> registry_pb2.ShardInfo:
    """The newest open shard. Raises :class:`NoCapacity` when there is none."""
    candidates = [s for s in shards if is_open(s, hard_limit)]
    if not candidates:
        raise NoCapacity("every shard is full")
    return max(candidates, key=lambda s: (s.registration_seq, s.registered_at_ms, s.shard_id))


def admit(shard: registry_pb2.ShardInfo, *, soft_limit: int, hard_limit: int) -> Admission:
    """``shard`` with one more (pending) user; FULL once it reaches ``hard_limit``."""
    updated = registry_pb2.ShardInfo()
    updated.CopyFrom(shard)
    updated.users += 1
    updated.pending += 1
    became_full = updated.users >= hard_limit and shard.state != FULL
    if updated.users >= hard_limit:
        updated.state = FULL
    return Admission(
        shard=updated,
        reached_soft=shard.users < soft_limit <= updated.users,
        became_full=became_full,
    )


def register(
    existing: registry_pb2.ShardInfo | None,
    *,
    shard_id: str,
    address: str,
    now_ms: int,
    registration_seq: int,
) -> registry_pb2.ShardInfo:
    """The directory entry after (re)registering a shard.

    A known shard keeps its users, state and place in the order; only its
    address changes. A new one starts ACTIVE and empty, newest of all.
    """
    info = registry_pb2.ShardInfo()
    if existing is not None:
        info.CopyFrom(existing)
        info.address = address
        return info
    info.shard_id = shard_id
    info.address = address
    info.state = ACTIVE
    info.users = 0
    info.registered_at_ms = now_ms
    info.registration_seq = registration_seq
    return info


def validate_shard_id(shard_id: str) -> str:
    if not _SHARD_ID.match(shard_id):
        raise InvalidArgument(
            "shard_id must be 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return shard_id


def validate_address(address: str) -> str:
    """Accept ``host:port`` with a port in 1..65535."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidArgument(f"address must be host:port, got {address!r}")
    if any(c.isspace() for c in address):
        raise InvalidArgument("address holds whitespace")
    return address
