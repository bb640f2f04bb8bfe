"""Internet Computer principals of Ed25519 keys (docs/design.md §5). Pure.

A self-authenticating principal is the SHA-224 of the key's DER
SubjectPublicKeyInfo followed by the byte ``0x02``. Its text form is the
base32 (RFC 4648, lower case, no padding) of the big-endian CRC32 of those
bytes followed by the bytes, in dash-separated groups of five. An IC tool
(dfx, agent-js, icp-py-core) derives the same text from the same key.
"""

from __future__ import annotations

import base64
import hashlib
import zlib

__all__ = [
    "ED25519_SPKI_PREFIX",
    "der_public_key",
    "parse_principal",
    "principal_bytes",
    "principal_of_key",
    "principal_text",
]

#: DER of ``SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING (32 bytes) }`` up to the key.
ED25519_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")

_SELF_AUTHENTICATING = b"\x02"
_MAX_PRINCIPAL_BYTES = 29


def der_public_key(raw_key: bytes) -> bytes:
    """The DER SubjectPublicKeyInfo of a raw 32-byte Ed25519 public key."""
    if len(raw_key) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(raw_key)}")
    return ED25519_SPKI_PREFIX + raw_key


def principal_bytes(raw_key: bytes) -> bytes:
    """The 29 bytes of the self-authenticating principal of ``raw_key``."""
    return hashlib.sha224(der_public_key(raw_key)).digest() + _SELF_AUTHENTICATING


def principal_text(data: bytes) -> str:
    """The textual form of a principal's bytes."""
    if len(data) > _MAX_PRINCIPAL_BYTES:
        raise ValueError(f"a principal has at most {_MAX_PRINCIPAL_BYTES} bytes")
    checked = zlib.crc32(data).to_bytes(4, "big") + data
    text = base64.b32encode(checked).decode("ascii").lower().rstrip("=")
    return "-".join(text[i : i + 5] for i in range(0, len(text), 5))


def principal_of_key(raw_key: bytes) -> str:
    """The principal text of a raw Ed25519 public key."""
    return principal_text(principal_bytes(raw_key))


def parse_principal(text: str) -> bytes:
    """The bytes of a principal's text; raises ValueError if it is malformed or its CRC is wrong."""
    compact = text.replace("-", "")
    if not compact or not compact.isascii() or compact != compact.lower():
        raise ValueError("a principal's text is lower-case base32 in groups of five")
    try:
        checked = base64.b32decode(compact.upper() + "=" * (-len(compact) % 8))
    except ValueError:
        raise ValueError("a principal's text is lower-case base32 in groups of five") from None
    if len(checked) < 4:
        raise ValueError("principal text too short")
    data = checked[4:]
    if principal_text(data) != text:
        raise ValueError("principal text has a wrong checksum or grouping")
    return data
