"""The one rooted error hierarchy every Canistry service raises.

Domain code raises these; only the edges translate them. A servicer's error
becomes a gRPC status plus a stable ``canistry-error`` trailer (see
``runtime.rpc``), and a client turns a ``grpc.aio.AioRpcError`` back into the
same class with :func:`from_rpc_error`, so a caller one hop away can catch
``DailyLimitExceeded`` rather than parse status strings.

    CanistryError
    ├── InvalidArgument          INVALID_ARGUMENT     bad input of any kind
    │   └── BadContentPack       INVALID_ARGUMENT     a pack rejected whole
    ├── NotFound                 NOT_FOUND
    │   ├── UnknownUnit
    │   ├── UnknownUser
    │   └── UnknownProposal
    ├── Conflict                 FAILED_PRECONDITION  state forbids it
    │   ├── IdempotencyKeyReused  same key, different request
    │   ├── WrongShard           the user lives on another shard
    │   ├── AlreadyVoted         one vote per (proposal, principal)
    │   └── ProposalDecided      the vote came after the decision
    ├── LimitExceeded            RESOURCE_EXHAUSTED
    │   ├── DailyLimitExceeded
    │   └── NoCapacity           every shard is full
    ├── PermissionDenied         PERMISSION_DENIED
    │   └── NotEnoughStake       no stake to vote, or too little to propose
    ├── Unavailable              UNAVAILABLE          a dependency is down
    │   ├── PeerUnreachable       the peer could not be reached at all
    │   ├── StoreFull            a store's map is full: writes wait, reads work
    │   └── ShardDisabled        disabled by governance: reads work, no minting
    └── DeadlineExceeded         DEADLINE_EXCEEDED

Anything else is a bug: the edge logs it whole and answers ``INTERNAL`` with
nothing leaked.
"""

from __future__ import annotations

from typing import ClassVar

import grpc

__all__ = [
    "ERROR_TRAILER",
    "AlreadyVoted",
    "BadContentPack",
    "CanistryError",
    "Conflict",
    "DailyLimitExceeded",
    "DeadlineExceeded",
    "IdempotencyKeyReused",
    "InvalidArgument",
    "LimitExceeded",
    "NoCapacity",
    "NotEnoughStake",
    "NotFound",
    "PeerUnreachable",
    "PermissionDenied",
    "ProposalDecided",
    "ShardDisabled",
    "StoreFull",
    "Unavailable",
    "UnknownProposal",
    "UnknownUnit",
    "UnknownUser",
    "WrongShard",
    "answered",
    "from_code",
    "from_rpc_error",
    "remote_error",
]

#: Trailing-metadata key that carries the stable error code across a hop.
ERROR_TRAILER = "canistry-error"


class CanistryError(Exception):
    """Root of every error Canistry raises on purpose.

    ``code`` is stable and machine-readable (the gateway builds problem
    ``type`` URIs from it); the message is for humans.
    """

    code: ClassVar[str] = "error"
    status: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.replace("-", " "))
        self.message = message or self.code.replace("-", " ")


class InvalidArgument(CanistryError):
    code = "invalid-argument"
    status = grpc.StatusCode.INVALID_ARGUMENT


class BadContentPack(InvalidArgument):
    code = "bad-content-pack"


class NotFound(CanistryError):
    code = "not-found"
    status = grpc.StatusCode.NOT_FOUND


class UnknownUnit(NotFound):
    code = "unknown-unit"


class UnknownUser(NotFound):
    code = "unknown-user"


class UnknownProposal(NotFound):
    code = "unknown-proposal"


class Conflict(CanistryError):
    code = "conflict"
    status = grpc.StatusCode.FAILED_PRECONDITION


class IdempotencyKeyReused(Conflict):
    code = "idempotency-key-reused"


class WrongShard(Conflict):
    code = "wrong-shard"


class AlreadyVoted(Conflict):
    code = "already-voted"


class ProposalDecided(Conflict):
    code = "proposal-decided"


class LimitExceeded(CanistryError):
    code = "limit-exceeded"
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class DailyLimitExceeded(LimitExceeded):
    code = "daily-limit-exceeded"


class NoCapacity(LimitExceeded):
    code = "no-capacity"


class PermissionDenied(CanistryError):
    code = "permission-denied"
    status = grpc.StatusCode.PERMISSION_DENIED


class NotEnoughStake(PermissionDenied):
    """Voting needs a staked balance, and proposing at least the hub's minimum."""

    code = "not-enough-stake"


class Unavailable(CanistryError):
    code = "unavailable"
    status = grpc.StatusCode.UNAVAILABLE


class PeerUnreachable(Unavailable):
    """The call never reached a handler (connection refused, reset or dropped).

    Raised only by :func:`runtime.rpc.rpc_errors`. A peer that answered
    ``UNAVAILABLE`` on purpose raises plain :class:`Unavailable` instead.
    """

    code = "peer-unreachable"


class StoreFull(Unavailable):
    """A store has no room for this write. Reads still work; writes resume once room is made."""

    code = "store-full"


class ShardDisabled(Unavailable):
    """An adopted proposal disabled this shard: its users read, but it mints nothing."""

    code = "shard-disabled"


class DeadlineExceeded(CanistryError):
    code = "deadline-exceeded"
    status = grpc.StatusCode.DEADLINE_EXCEEDED


def _all_subclasses(cls: type[CanistryError]) -> list[type[CanistryError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE: dict[str, type[CanistryError]] = {c.code: c for c in _all_subclasses(CanistryError)}
_BY_STATUS: dict[grpc.StatusCode, type[CanistryError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceeded,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
}


def from_code(code: str, message: str) -> CanistryError:
    """The error whose stable ``code`` this is (a plain :class:`CanistryError` if unknown).

    For errors that travel inside a reply rather than as a call's status,
    such as one item of a batch.
    """
    return _BY_CODE.get(code, CanistryError)(message)


def remote_error(code: str, message: str) -> CanistryError:
    """:func:`from_code` for an error a peer reported, as its caller must see it.

    A peer that reports *its* peer unreachable did answer: that arrives as
    plain :class:`Unavailable`, so that only the hop that failed to connect
    sees :class:`PeerUnreachable` (and retries elsewhere).
    """
    return answered(from_code(code, message))


def answered(error: CanistryError) -> CanistryError:
    """``error`` as reported by a peer that answered (see :func:`remote_error`)."""
    return Unavailable(error.message) if isinstance(error, PeerUnreachable) else error


def from_rpc_error(exc: grpc.aio.AioRpcError) -> CanistryError:
    """Turn a failed call back into the domain error the server raised.

    The ``canistry-error`` trailer wins; without it the status code picks a
    base class. An ``INTERNAL`` or unknown status becomes a plain
    :class:`CanistryError`, so callers never see raw gRPC errors.
    """
    code = None
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_TRAILER:
            code = value if isinstance(value, str) else value.decode()
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(exc.code(), CanistryError)
    return cls(exc.details() or "")
