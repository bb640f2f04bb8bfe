"""The docs/design.md §5 signature: header parsing, skew, signature, both sides. Pure."""

from __future__ import annotations

import hashlib

import pytest

from canistry.client import Identity
from gateway import signing
from gateway.errors import BadAuthorization, BadSignature, StaleTimestamp

NOW = 1_800_000_000_000
SKEW = 300_000


def header_for(identity: Identity, method: str = "GET", path: str = "/v1/me", body: bytes = b"",
               ts: int = NOW, nonce: bytes = b"n" * 16) -> str:  # fmt: skip
    return identity.authorization(method, path, body, ts_ms=ts, nonce=nonce)


def check(value: str, method: str = "GET", path: str = "/v1/me", body: bytes = b"") -> str:
    return signing.verify(
        signing.parse_authorization(value), method=method, path=path, body=body,
        now_ms=NOW, max_skew_ms=SKEW,
    )  # fmt: skip


def test_canonical_message_is_exactly_the_design_text() -> None:
    msg = signing.canonical_message("post", "/v1/units?x=1", "123", "bm9uY2U", b"{}")
    assert msg == (
        b"canistry-v1\nPOST\n/v1/units?x=1\n123\nbm9uY2U\n"
        + hashlib.sha256(b"{}").hexdigest().encode()
    )
    empty = signing.canonical_message("GET", "/", "1", "n", b"")
    assert empty.endswith(b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_a_signed_request_verifies_to_the_principal() -> None:
    me = Identity.generate()
    assert check(header_for(me)) == me.principal
    body = b'{"answers":{"q1":"a"}}'
    value = header_for(me, "POST", "/v1/units/u/submissions?x=1", body)
    assert check(value, "POST", "/v1/units/u/submissions?x=1", body) == me.principal


def test_padded_base64url_is_accepted() -> None:
    me = Identity.generate()
    parsed = signing.parse_authorization(header_for(me))
    padded = (
        f"Canistry key={signing.b64url_encode(parsed.public_key)}=, ts={parsed.ts}, "
        f"nonce={parsed.nonce}, sig={signing.b64url_encode(parsed.signature)}=="
    )
    assert signing.parse_authorization(padded).public_key == me.public_key


@pytest.mark.parametrize(
    "change",
    [
        {"method": "POST"},
        {"path": "/v1/me/balance"},
        {"path": "/v1/me?x=1"},
        {"body": b"x"},
    ],
)
def test_any_change_to_the_request_breaks_the_signature(change: dict[str, object]) -> None:
    value = header_for(Identity.generate())
    args: dict[str, object] = {"method": "GET", "path": "/v1/me", "body": b""} | change
    with pytest.raises(BadSignature):
        check(value, **args)  # type: ignore[arg-type]


def test_another_keys_signature_does_not_verify() -> None:
    a, b = Identity.generate(), Identity.generate()
    sig_a = signing.parse_authorization(header_for(a))
    b_fields = signing.parse_authorization(header_for(b))
    forged = (
        f"Canistry key={signing.b64url_encode(b_fields.public_key)}, ts={sig_a.ts}, "
        f"nonce={sig_a.nonce}, sig={signing.b64url_encode(sig_a.signature)}"
    )
    with pytest.raises(BadSignature):
        check(forged)


def test_a_small_order_key_and_its_universal_signature_are_refused() -> None:
    """The identity point as a key, with R = identity and S = 0, "signs" every message
    for a lax verifier (OpenSSL's accepts it); libsodium refuses it."""
    identity_point = bytes([1]) + bytes(31)
    forged = (
        f"Canistry key={signing.b64url_encode(identity_point)}, ts={NOW}, "
        f"nonce={signing.b64url_encode(b'n' * 16)}, "
        f"sig={signing.b64url_encode(identity_point + bytes(32))}"
    )
    with pytest.raises(BadSignature):
        check(forged)


def test_timestamps_beyond_the_skew_are_stale() -> None:
    me = Identity.generate()
    assert check(header_for(me, ts=NOW - SKEW)) == me.principal
    for ts in (NOW - SKEW - 1, NOW + SKEW + 1, 0):
        with pytest.raises(StaleTimestamp):
            check(header_for(me, ts=ts))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Bearer abc",
        "Canistry",
        "Canistry key=abc",
        "Canistry key=a, ts=1, nonce=b, sig=c, extra=d",
        "Canistry key=a, key=a, ts=1, nonce=b",
        "Canistry key=!!!, ts=1, nonce=AAAAAAAAAAA, sig=AAAA",
        "Canistry key=AAAA, ts=1, nonce=AAAAAAAAAAA, sig=AAAA",
        "Canistry key=" + "A" * 43 + ", ts=-1, nonce=AAAAAAAAAAA, sig=" + "A" * 86,
        "Canistry key=" + "A" * 43 + ", ts=1, nonce=AA, sig=" + "A" * 86,
        "Canistry key=" + "A" * 43 + ", ts=1, nonce=AAAAAAAAAAA, sig=" + "A" * 85,
        "Canistry " + "x" * 2000,
        "Canistry key=\udc80",
    ],
)
def test_garbled_headers_are_bad_authorization(value: str) -> None:
    with pytest.raises(BadAuthorization):
        signing.parse_authorization(value)
