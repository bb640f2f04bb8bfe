"""Principals and identities match an IC library's for the same Ed25519 key."""

from __future__ import annotations

import base64

import pytest
from icp_identity import Identity as IcIdentity
from icp_principal import Principal as IcPrincipal

from canistry.client import Identity, IdentityError
from gateway.principal import der_public_key, parse_principal, principal_bytes, principal_of_key

SEED = bytes(range(32))


def ring_pkcs8_v2_pem(identity: Identity, seed: bytes) -> str:
    """The PEM dfx wrote for Ed25519 identities (ring's PKCS#8 v2, public key embedded)."""
    der = (
        bytes.fromhex("3053020101300506032b657004220420")
        + seed
        + bytes.fromhex("a123032100")
        + identity.public_key
    )
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n"


def test_principal_of_raw_key_matches_icp_py_core() -> None:
    for seed in (SEED, bytes(32), b"\xff" * 32):
        ours = Identity.from_seed(seed)
        theirs = IcIdentity(privkey=seed.hex(), type="ed25519")
        assert theirs.pubkey == ours.public_key.hex()
        assert theirs.der_pubkey == der_public_key(ours.public_key)
        assert ours.principal == theirs.sender().to_str()
        assert (
            principal_of_key(ours.public_key)
            == IcPrincipal.self_authenticating(der_public_key(ours.public_key)).to_str()
        )


@pytest.mark.parametrize("form", ["pkcs8-v1", "dfx-pkcs8-v2"])
def test_dfx_style_pem_gives_the_same_principal_as_icp_py_core(form: str) -> None:
    original = Identity.generate()
    seed_hex = IcIdentity.from_pem(original.to_pem()).privkey
    pem = (
        original.to_pem()
        if form == "pkcs8-v1"
        else ring_pkcs8_v2_pem(original, bytes.fromhex(seed_hex))
    )
    loaded = Identity.from_pem(pem)
    assert loaded.public_key == original.public_key
    assert loaded.principal == IcIdentity.from_pem(pem).sender().to_str()


def test_icp_py_core_pem_loads_here() -> None:
    theirs = IcIdentity(type="ed25519")
    ours = Identity.from_pem(theirs.to_pem())
    assert ours.principal == theirs.sender().to_str()


def test_bad_pems_are_refused_clearly() -> None:
    with pytest.raises(IdentityError, match="no PEM"):
        Identity.from_pem("not a key")
    with pytest.raises(IdentityError, match="EC PRIVATE KEY"):
        Identity.from_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")
    good = Identity.generate()
    other = Identity.generate()
    seed = bytes.fromhex(IcIdentity.from_pem(good.to_pem()).privkey)
    with pytest.raises(IdentityError, match="does not belong"):
        Identity.from_pem(ring_pkcs8_v2_pem(other, seed))
    with pytest.raises(IdentityError):
        Identity.from_pem("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n")


def test_principal_text_round_trips_and_checks_its_crc() -> None:
    text = principal_of_key(Identity.from_seed(SEED).public_key)
    assert parse_principal(text) == principal_bytes(Identity.from_seed(SEED).public_key)
    assert len(principal_bytes(Identity.from_seed(SEED).public_key)) == 29
    assert all(len(g) == 5 for g in text.split("-")[:-1])
    tampered = ("b" if text[0] != "b" else "c") + text[1:]
    with pytest.raises(ValueError):
        parse_principal(tampered)


def test_identity_saves_and_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "id" / "identity.pem"
    first = Identity.load_or_create(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert Identity.load_or_create(path).principal == first.principal
