"""``Idempotency-Key`` rules for the gateway's own writes. Pure.

``POST /v1/users`` and ``PATCH /v1/me`` keep their replies in the gateway's
LMDB, keyed by (principal, key): the first request *claims* the key, runs,
and on a 2xx stores its status and body; a replay gets exactly those back and
changes nothing. A failed request releases its claim, so a retry may run
again. A claim older than ``claim_ms`` belongs to a worker that died and may
be taken over. Submissions do not come here: the shard stores their replies
in the same transaction as the submission (see ``user_shard``).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from gateway.errors import IdempotencyKeyInFlight, IdempotencyKeyTooLong
from runtime.errors import IdempotencyKeyReused, InvalidArgument

__all__ = [
    "HEADER",
    "MAX_KEY",
    "Record",
    "check_key",
    "decide",
    "decode",
    "encode",
    "fingerprint",
    "store_key",
]

HEADER = "Idempotency-Key"
#: Longest key kept: a key is stored with every reply for 24 h, so it is kept short.
MAX_KEY = 64
_KEY = re.compile(r"[\x21-\x7e]+")
_PENDING, _DONE = b"P", b"D"
_HEAD = struct.Struct(">c32sQH")


@dataclass(frozen=True)
class Record:
    done: bool
    fingerprint: bytes
    at_ms: int
    status: int = 0
    body: bytes = b""


def check_key(key: str) -> str:
    """The key if it is 1 to :data:`MAX_KEY` visible ASCII characters.

    Raises :class:`IdempotencyKeyTooLong` (400) beyond, else InvalidArgument.
    """
    if len(key) > MAX_KEY:
        raise IdempotencyKeyTooLong(f"{HEADER} must be at most {MAX_KEY} characters")
    if not _KEY.fullmatch(key):
        raise InvalidArgument(f"{HEADER} must be 1 to {MAX_KEY} visible ASCII characters")
    return key


def store_key(principal: str, key: str) -> bytes:
    return principal.encode() + b"\x00" + key.encode()


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    """What a replay must match: the same method, path and body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def encode(record: Record) -> bytes:
    kind = _DONE if record.done else _PENDING
    return _HEAD.pack(kind, record.fingerprint, record.at_ms, record.status) + record.body


def decode(raw: bytes) -> Record:
    kind, fp, at_ms, status = _HEAD.unpack_from(raw)
    return Record(kind == _DONE, fp, at_ms, status, bytes(raw[_HEAD.size :]))


def decide(
    existing: Record | None, fp: bytes, *, now_ms: int, ttl_ms: int, claim_ms: int
) -> Record | None:
    """What a request with key state ``existing`` may do.

    Returns the stored reply to replay, or None when the request may claim
    the key and run. Raises :class:`IdempotencyKeyReused` when the key came
    with a different request, :class:`IdempotencyKeyInFlight` when the same
    request is still running elsewhere.
    """
    if existing is None:
        return None
    age = now_ms - existing.at_ms
    if existing.done:
        if age >= ttl_ms:
            return None
        if existing.fingerprint != fp:
            raise IdempotencyKeyReused("this idempotency key was used for a different request")
        return existing
    if age >= claim_ms:
        return None  # its holder died mid-request
    if existing.fingerprint != fp:
        raise IdempotencyKeyReused("this idempotency key was used for a different request")
    raise IdempotencyKeyInFlight("a request with this idempotency key is still running; retry")
