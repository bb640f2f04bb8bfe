"""A user's identity: an Ed25519 key, its IC principal, and request signing.

Keys load from and save to PKCS#8 PEM as IC tools write them: dfx's
Ed25519 identities (``~/.config/dfx/identity/<name>/identity.pem``) are
PKCS#8 v1 or, from ring-based versions, v2 with the public key embedded;
both load here, and an IC library derives the same principal from them.
"""

from __future__ import annotations

import base64
import os
import re
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import signing
from gateway.principal import principal_of_key

__all__ = ["Identity", "IdentityError"]

_ED25519_OID = bytes.fromhex("06032b6570")  # 1.3.101.112
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.S)


class IdentityError(ValueError):
    """A key that is not an Ed25519 private key we can read."""


class Identity:
    """An Ed25519 key pair that signs requests (docs/design.md §5)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.principal: str = principal_of_key(self.public_key)

    def __repr__(self) -> str:
        return f"Identity({self.principal})"

    # -- making one -------------------------------------------------------------

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """From the 32-byte Ed25519 private key (the RFC 8032 seed)."""
        if len(seed) != 32:
            raise IdentityError("an Ed25519 seed has 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> Identity:
        """From a PKCS#8 PEM private key, v1 or v2 (as dfx writes Ed25519 identities)."""
        text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
        match = _PEM.search(text)
        if match is None:
            raise IdentityError("no PEM block found")
        if match.group(1) != "PRIVATE KEY":
            raise IdentityError(
                f"expected an Ed25519 'PRIVATE KEY' (PKCS#8), got '{match.group(1)}'; "
                "only Ed25519 identities sign Canistry requests"
            )
        try:
            der = base64.b64decode("".join(match.group(2).split()), validate=True)
        except ValueError:
            raise IdentityError("the PEM body is not base64") from None
        seed, public = _parse_pkcs8_ed25519(der)
        identity = cls.from_seed(seed)
        if public is not None and public != identity.public_key:
            raise IdentityError("the PEM's public key does not belong to its private key")
        return identity

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identity:
        return cls.from_pem(Path(path).read_text())

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str]) -> Identity:
        """The identity at ``path``, generated and saved (mode 0600) if there is none."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        identity = cls.generate()
        identity.save(path)
        return identity

    def to_pem(self) -> str:
        """PKCS#8 v1 PEM, which dfx, icp-py-core and OpenSSL all read."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the PEM to a new file (mode 0600); raises FileExistsError if one is there."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.to_pem())

    # -- signing ----------------------------------------------------------------

    def authorization(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        ts_ms: int | None = None,
        nonce: bytes | None = None,
    ) -> str:
        """The ``Authorization`` header for one request; ``path`` includes the query."""
        return signing.sign(
            self._key,
            method=method,
            path=path,
            body=body,
            ts_ms=int(time.time() * 1000) if ts_ms is None else ts_ms,
            nonce=os.urandom(16) if nonce is None else nonce,
        )

    def sign(self, message: bytes) -> bytes:
        """A raw Ed25519 signature of ``message``."""
        return self._key.sign(message)


def _parse_pkcs8_ed25519(der: bytes) -> tuple[bytes, bytes | None]:
    """(seed, embedded public key or None) from PKCS#8 v1/v2 DER; IdentityError otherwise."""
    try:
        body, rest = _tlv(der, 0x30)
        if rest:
            raise IdentityError("trailing data after the key")
        version, body = _tlv(body, 0x02)
        if version not in (b"\x00", b"\x01"):
            raise IdentityError("unknown PKCS#8 version")
        algorithm, body = _tlv(body, 0x30)
        if not algorithm.startswith(_ED25519_OID):
            raise IdentityError("not an Ed25519 key")
        octets, body = _tlv(body, 0x04)
        seed, extra = _tlv(octets, 0x04)
        if extra or len(seed) != 32:
            raise IdentityError("an Ed25519 private key has 32 bytes")
        public = None
        while body:
            tag = body[0]
            value, body = _tlv(body, tag)
            if tag == 0xA1:  # [1] publicKey (v2): a BIT STRING with no unused bits
                bits, _ = _tlv(value, 0x03)
                if len(bits) != 33 or bits[0] != 0:
                    raise IdentityError("malformed embedded public key")
                public = bits[1:]
            elif tag != 0xA0:  # [0] attributes are allowed and ignored
                raise IdentityError("unexpected field in the key")
        return seed, public
    except (IndexError, ValueError) as exc:
        if isinstance(exc, IdentityError):
            raise
        raise IdentityError("malformed PKCS#8 key") from None


def _tlv(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """The value of the DER element at the start of ``data`` (tagged ``tag``), and the rest."""
    if data[0] != tag:
        raise IdentityError(f"expected DER tag {tag:#x}, got {data[0]:#x}")
    length, i = data[1], 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 2:
            raise IdentityError("unsupported DER length")
        length, i = int.from_bytes(data[2 : 2 + n], "big"), 2 + n
    if i + length > len(data):
        raise IdentityError("truncated DER")
    return data[i : i + length], data[i + length :]
