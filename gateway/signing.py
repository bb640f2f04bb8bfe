"""The request signature of docs/design.md §5, both sides. Pure (no I/O, no clock of its own).

A signed request carries::

    Authorization: Canistry key=<b64url 32-byte Ed25519 public key>, ts=<unix ms>,
                   nonce=<b64url>, sig=<b64url 64-byte signature>

``sig`` signs the UTF-8 of :func:`canonical_message`. b64url is base64url
without padding (RFC 4648 §5); padded values are accepted too. The gateway
checks the header (:func:`parse_authorization`), the clock skew and the
signature (:func:`verify`); the nonce store (:mod:`gateway.store`) rejects a
nonce seen before. The client builds the header with :func:`sign`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from gateway.errors import BadAuthorization, BadSignature, StaleTimestamp
from gateway.principal import principal_of_key

__all__ = [
    "DOMAIN",
    "MAX_NONCE_BYTES",
    "MIN_NONCE_BYTES",
    "SCHEME",
    "SignedHeader",
    "b64url_decode",
    "b64url_encode",
    "canonical_message",
    "last_accepted_ms",
    "parse_authorization",
    "sign",
    "verify",
]

SCHEME = "Canistry"
DOMAIN = "canistry-v1"
MIN_NONCE_BYTES = 8
MAX_NONCE_BYTES = 64
_MAX_HEADER = 1024
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_TS = re.compile(r"[0-9]{1,16}")
_FIELDS = ("key", "ts", "nonce", "sig")
#: Signers remembered (their parsed key and principal), most recent first.
_SIGNERS = 4096


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str) -> bytes:
    """Decode base64url, padded or not; raises ValueError on anything else."""
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    bare = text.rstrip("=")
    if len(bare) % 4 == 1:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(bare + "=" * (-len(bare) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def canonical_message(method: str, path: str, ts: str, nonce: str, body: bytes) -> bytes:
    """What ``sig`` signs. ``path`` includes the query (``/v1/units?limit=5``) as sent;
    ``ts`` and ``nonce`` are the header's text."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{DOMAIN}\n{method.upper()}\n{path}\n{ts}\n{nonce}\n{digest}".encode()


@dataclass(frozen=True)
class SignedHeader:
    """A parsed ``Authorization: Canistry ...`` header (not yet verified)."""

    public_key: bytes
    ts: str
    nonce: str
    nonce_bytes: bytes
    signature: bytes

    @property
    def ts_ms(self) -> int:
        return int(self.ts)


def parse_authorization(value: str | None) -> SignedHeader:
    """Parse the header. Raises :class:`BadAuthorization` naming what is wrong."""
    if value is None or not value.strip():
        raise BadAuthorization("the Authorization header is empty")
    if len(value) > _MAX_HEADER:
        raise BadAuthorization("the Authorization header is too long")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != SCHEME.lower():
        raise BadAuthorization(f"use the {SCHEME} authorization scheme (docs/design.md §5)")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, text = part.strip().partition("=")
        name = name.strip().lower()
        if not eq or name not in _FIELDS:
            raise BadAuthorization(f"expected the fields {', '.join(_FIELDS)} as name=value")
        if name in fields:
            raise BadAuthorization(f"field {name} given twice")
        fields[name] = text.strip()
    missing = [f for f in _FIELDS if f not in fields]
    if missing:
        raise BadAuthorization(f"missing field(s): {', '.join(missing)}")
    key = _decode(fields, "key")
    if len(key) != 32:
        raise BadAuthorization("key must be a 32-byte Ed25519 public key")
    if not _TS.fullmatch(fields["ts"]):
        raise BadAuthorization("ts must be unix milliseconds")
    nonce = _decode(fields, "nonce")
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise BadAuthorization(f"nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes")
    sig = _decode(fields, "sig")
    if len(sig) != 64:
        raise BadAuthorization("sig must be a 64-byte Ed25519 signature")
    return SignedHeader(key, fields["ts"], fields["nonce"], nonce, sig)


def _decode(fields: dict[str, str], name: str) -> bytes:
    try:
        return b64url_decode(fields[name])
    except ValueError:
        raise BadAuthorization(f"{name} must be base64url") from None


def verify(
    header: SignedHeader,
    *,
    method: str,
    path: str,
    body: bytes,
    now_ms: int,
    max_skew_ms: int,
) -> str:
    """Check the clock skew and the signature; return the signer's principal text.

    A timestamp is accepted while ``|now_ms - ts| <= max_skew_ms``, so last at
    :func:`last_accepted_ms`. Raises :class:`StaleTimestamp` or
    :class:`BadSignature`. The nonce is not checked here: that needs the
    shared store.
    """
    if abs(now_ms - header.ts_ms) > max_skew_ms:
        raise StaleTimestamp(
            f"ts is {abs(now_ms - header.ts_ms) / 1000:.0f} s off the gateway's clock; "
            f"at most {max_skew_ms / 1000:.0f} s is allowed"
        )
    message = canonical_message(method, path, header.ts, header.nonce, body)
    try:
        key, principal = _signer(header.public_key)
        key.verify(message, header.signature)
    except (CryptoError, ValueError, TypeError):
        raise BadSignature("the signature does not match this request and key") from None
    return principal


@functools.lru_cache(maxsize=_SIGNERS)
def _signer(public_key: bytes) -> tuple[VerifyKey, str]:
    """The parsed key and the principal of a raw public key; a user signs every request
    with the same key, so both are worked out once. Raises ValueError for a bad key
    (not remembered).

    Verification is libsodium's (PyNaCl): it takes half the CPU of OpenSSL's
    through ``cryptography`` (55 against 105 µs here), and it is the gateway's
    largest cost per signed request. It is also strict: a non-canonical
    signature or a small-order key is refused, so a signature cannot be
    reshaped into another valid one.
    """
    return VerifyKey(public_key), principal_of_key(public_key)


def last_accepted_ms(ts_ms: int, max_skew_ms: int) -> int:
    """The last clock reading at which :func:`verify` accepts ``ts_ms``; a nonce must be
    remembered at least until then, or its request could be replayed."""
    return ts_ms + max_skew_ms


def sign(
    private_key: Ed25519PrivateKey,
    *,
    method: str,
    path: str,
    body: bytes,
    ts_ms: int,
    nonce: bytes,
) -> str:
    """The ``Authorization`` header value for one request."""
    public = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    ts, nonce_text = str(ts_ms), b64url_encode(nonce)
    sig = private_key.sign(canonical_message(method, path, ts, nonce_text, body))
    return (
        f"{SCHEME} key={b64url_encode(public)}, ts={ts}, nonce={nonce_text}, "
        f"sig={b64url_encode(sig)}"
    )
