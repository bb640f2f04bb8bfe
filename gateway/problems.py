"""Domain errors to RFC 9457 problem documents: the only place statuses are chosen. Pure.

Each :class:`~runtime.errors.CanistryError` has a stable ``code``; its
problem ``type`` is ``https://canistry.dev/problems/<code>``. The status comes
from the nearest class in the error's MRO that :data:`STATUS` names. Anything
that is not a known domain error becomes a bare 500 that says nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import (
    BodyTooLarge,
    HeadersTooLarge,
    IdempotencyKeyInFlight,
    MethodNotAllowed,
    RateLimited,
    RequestInvalid,
    RequestTimeout,
    Unauthenticated,
)
from gateway.signing import SCHEME
from runtime.errors import (
    CanistryError,
    Conflict,
    DailyLimitExceeded,
    DeadlineExceeded,
    IdempotencyKeyReused,
    InvalidArgument,
    LimitExceeded,
    NoCapacity,
    NotFound,
    PermissionDenied,
    Unavailable,
    WrongShard,
)

__all__ = ["MEDIA_TYPE", "PROBLEM_BASE", "STATUS", "Problem", "problem_for", "problem_type"]

PROBLEM_BASE = "https://canistry.dev/problems/"
MEDIA_TYPE = "application/problem+json"

#: HTTP status per error class; the most specific class in an error's MRO wins.
STATUS: dict[type[CanistryError], int] = {
    InvalidArgument: 400,
    RequestInvalid: 422,
    BodyTooLarge: 413,
    RequestTimeout: 408,
    HeadersTooLarge: 431,
    MethodNotAllowed: 405,
    Unauthenticated: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    IdempotencyKeyReused: 422,
    IdempotencyKeyInFlight: 409,
    # The shard still says "not mine" after the gateway refreshed its route.
    WrongShard: 503,
    LimitExceeded: 429,
    NoCapacity: 503,
    Unavailable: 503,
    DeadlineExceeded: 503,
}

_TITLES = {
    "bad-authorization": "Malformed Authorization header",
    "missing-authorization": "Authorization required",
    "bad-signature": "Bad signature",
    "stale-timestamp": "Timestamp out of range",
    "nonce-reused": "Nonce already used",
    "not-registered": "Not registered",
    "unknown-unit": "Unknown unit",
    "no-such-route": "Not found",
    "validation-error": "Invalid request",
    "idempotency-key-reused": "Idempotency key reused with a different request",
    "idempotency-key-in-flight": "A request with this idempotency key is in progress",
    "daily-limit-exceeded": "Daily limit reached",
    "no-capacity": "No capacity yet",
    "unavailable": "Service unavailable",
    "deadline-exceeded": "Upstream timed out",
    "wrong-shard": "Routing in flux",
    "internal": "Internal server error",
    "idempotency-quota": "Too many stored idempotent replies",
    "rate-limited": "Too many requests",
    "overloaded": "Server overloaded",
    "request-timeout": "Request not received in time",
    "headers-too-large": "Request headers too large",
    "malformed-request": "Malformed HTTP request",
    "store-full": "Storage full",
    "shard-disabled": "Shard disabled by governance",
    "not-enough-stake": "Not enough stake",
    "already-voted": "Already voted",
    "proposal-decided": "Proposal already decided",
    "unknown-proposal": "Unknown proposal",
}

_DAY_S = 86_400


def problem_type(code: str) -> str:
    return PROBLEM_BASE + code


@dataclass(frozen=True)
class Problem:
    """One problem document, before the request's ``instance`` and id are added."""

    code: str
    status: int
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return problem_type(self.code)

    def document(self, *, instance: str, request_id: str | None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if request_id is not None:
            doc["request_id"] = request_id
        doc.update(self.extra)
        return doc


INTERNAL = Problem("internal", 500, _TITLES["internal"], "internal error")


def _status_of(exc: CanistryError) -> int | None:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return None


def problem_for(exc: BaseException, *, retry_after_s: int, now_s: float) -> Problem:
    """The problem document for ``exc``; a bare 500 for anything not a known domain error.

    503s carry ``Retry-After: retry_after_s``; a daily limit carries the
    seconds until the next UTC day, when the limits reset.
    """
    if not isinstance(exc, CanistryError):
        return INTERNAL
    status = _status_of(exc)
    if status is None:  # a plain CanistryError: a peer failed without a reason we know
        return INTERNAL
    headers: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if status == 503:
        headers["Retry-After"] = str(retry_after_s)
    elif isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, exc.retry_after_s))
    elif isinstance(exc, DailyLimitExceeded):
        headers["Retry-After"] = str(max(1, _DAY_S - int(now_s) % _DAY_S))
    elif status == 401:
        headers["WWW-Authenticate"] = SCHEME
    if isinstance(exc, RequestInvalid) and exc.errors:
        extra["errors"] = exc.errors
    title = _TITLES.get(exc.code) or exc.code.replace("-", " ").capitalize()
    return Problem(exc.code, status, title, exc.message, headers, extra)
