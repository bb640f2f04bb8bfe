"""The gateway's own errors, each a subclass of one in :mod:`runtime.errors`.

Like every Canistry error, each has a stable ``code``; the problem document's
``type`` is built from it (:mod:`gateway.problems`).

    PermissionDenied
    └── Unauthenticated            401  the request is not signed as docs/design.md §5 says
        ├── MissingAuthorization        no Authorization header
        ├── BadAuthorization            not the Canistry scheme, or a garbled field
        ├── BadSignature                the signature does not verify for this request
        ├── StaleTimestamp              ts is more than the allowed skew off our clock
        └── NonceReused                 this key used this nonce within the window
    LimitExceeded
    ├── IdempotencyQuotaExceeded   429  this principal keeps too many stored replies
    └── RateLimited                429  too many registrations from this address; Retry-After
    Unavailable
    └── Overloaded                 503  the worker holds its most connections or requests
    UnknownUser
    └── NotRegistered              404  the signed principal has no account yet
    Conflict
    └── IdempotencyKeyInFlight     409  a request with this key is still running
    InvalidArgument
    ├── RequestInvalid             422  the body, query or path fails its schema
    ├── BodyTooLarge               413
    ├── RequestTimeout             408  the body did not arrive in time
    ├── MalformedRequest           400  not HTTP/1.1 the parser can read
    ├── IdempotencyKeyTooLong      400  an Idempotency-Key over 64 characters
    └── MethodNotAllowed           405
    NotFound
    └── NoSuchRoute                404
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runtime.errors import (
    Conflict,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    PermissionDenied,
    Unavailable,
    UnknownUser,
)

__all__ = [
    "BadAuthorization",
    "BadSignature",
    "BodyTooLarge",
    "HeadersTooLarge",
    "IdempotencyKeyInFlight",
    "IdempotencyKeyTooLong",
    "IdempotencyQuotaExceeded",
    "MalformedRequest",
    "MethodNotAllowed",
    "MissingAuthorization",
    "NoSuchRoute",
    "NonceReused",
    "NotRegistered",
    "Overloaded",
    "RateLimited",
    "RequestInvalid",
    "RequestTimeout",
    "StaleTimestamp",
    "Unauthenticated",
]


class Unauthenticated(PermissionDenied):
    code = "unauthenticated"


class MissingAuthorization(Unauthenticated):
    code = "missing-authorization"


class BadAuthorization(Unauthenticated):
    code = "bad-authorization"


class BadSignature(Unauthenticated):
    code = "bad-signature"


class StaleTimestamp(Unauthenticated):
    code = "stale-timestamp"


class NonceReused(Unauthenticated):
    code = "nonce-reused"


class NotRegistered(UnknownUser):
    code = "not-registered"


class IdempotencyKeyInFlight(Conflict):
    code = "idempotency-key-in-flight"


class RequestInvalid(InvalidArgument):
    """The request does not match its schema; ``errors`` lists where and why."""

    code = "validation-error"

    def __init__(self, message: str, errors: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors = list(errors)


class BodyTooLarge(InvalidArgument):
    code = "body-too-large"


class MethodNotAllowed(InvalidArgument):
    code = "method-not-allowed"


class NoSuchRoute(NotFound):
    code = "no-such-route"


class IdempotencyQuotaExceeded(LimitExceeded):
    code = "idempotency-quota"


class RateLimited(LimitExceeded):
    """Too many requests from one client address; ``retry_after_s`` says when to try again."""

    code = "rate-limited"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Overloaded(Unavailable):
    code = "overloaded"


class RequestTimeout(InvalidArgument):
    code = "request-timeout"


class HeadersTooLarge(InvalidArgument):
    code = "headers-too-large"


class MalformedRequest(InvalidArgument):
    code = "malformed-request"


class IdempotencyKeyTooLong(InvalidArgument):
    code = "idempotency-key-too-long"
