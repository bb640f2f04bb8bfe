"""Join tokens: how a shard proves it is the shard the hub started, before it holds a certificate.

As kubeadm joins nodes with a bootstrap token: when the hub starts a shard
whose certificate must be made in the shard's own pod (the ``kubernetes``
spawner), it makes a random token bound to that shard's id with an expiry,
keeps only the token's SHA-256 (:class:`~protos.enrollment_pb2.JoinToken`,
the ``join_tokens`` database, one per shard: issuing another replaces it),
and hands the token to the shard in its pod spec. The shard trades it once,
on the hub's enrollment port, for a certificate of a key it made itself
(:mod:`hub.enrollment`).

These are the pure rules; :func:`redeem` accepts a token only if

- the hub holds a token for that shard id (it issued one, and the shard is
  still one of the hub's),
- the SHA-256 of the token presented equals the one kept (compared in
  constant time), so a token issued for another shard never matches,
- it has not expired, and
- it was not redeemed before (single use).

Every refusal is the same :class:`JoinRefused` to the caller, so a guesser
learns nothing about which rule failed; :attr:`JoinRefused.reason` says it
for the hub's log.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from protos import enrollment_pb2
from runtime.errors import PermissionDenied

__all__ = ["TOKEN_BYTES", "JoinRefused", "digest", "issue", "new_token", "redeem"]

#: Random bytes in a token (URL-safe base64 in text: 43 characters).
TOKEN_BYTES = 32

_NO_HASH = bytes(hashlib.sha256().digest_size)


class JoinRefused(PermissionDenied):
    """A join token was not accepted. The message is the same whatever the rule that failed."""

    code = "join-refused"

    def __init__(self, reason: str) -> None:
        super().__init__("join token refused")
        self.reason = reason
        """Which rule failed (``unknown``, ``wrong-token``, ``expired``, ``used``): for the log."""


def new_token() -> str:
    """A fresh random token, in text fit for an environment variable."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> bytes:
    """What the hub keeps of ``token``: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def issue(shard_id: str, token: str, *, now_ms: int, ttl_ms: int) -> enrollment_pb2.JoinToken:
    """The record to keep for ``token``, bound to ``shard_id``, good for ``ttl_ms`` from ``now_ms``.

    Raises ``ValueError`` if ``ttl_ms`` is not positive.
    """
    if ttl_ms <= 0:
        raise ValueError("a join token's ttl must be > 0")
    return enrollment_pb2.JoinToken(
        shard_id=shard_id,
        token_sha256=digest(token),
        issued_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_ms,
    )


def redeem(
    stored: enrollment_pb2.JoinToken | None, shard_id: str, token: str, *, now_ms: int
) -> enrollment_pb2.JoinToken:
    """The kept record, marked used at ``now_ms``, if ``token`` may enroll ``shard_id`` now.

    ``stored`` is what the hub keeps under ``shard_id`` (None: nothing).
    Raises :class:`JoinRefused` by the rules in the module docstring.
    """
    presented = digest(token)
    # Compare even when nothing is kept, so that timing does not tell the cases apart.
    kept = stored.token_sha256 if stored is not None else _NO_HASH
    matches = hmac.compare_digest(kept, presented)
    if stored is None or stored.shard_id != shard_id:
        raise JoinRefused("unknown")
    if not matches:
        raise JoinRefused("wrong-token")
    if now_ms >= stored.expires_at_ms:
        raise JoinRefused("expired")
    if stored.used_at_ms:
        raise JoinRefused("used")
    used = enrollment_pb2.JoinToken()
    used.CopyFrom(stored)
    used.used_at_ms = max(now_ms, 1)  # 0 would read as "not yet"
    return used
