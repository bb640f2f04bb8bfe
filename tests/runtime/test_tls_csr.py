"""The CA signs certificate requests (shard enrollment) for the identity it chooses only."""

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from runtime.errors import InvalidArgument
from runtime.tls import (
    BadCertificateRequest,
    ClusterCA,
    Identity,
    Role,
    certificate_fits,
    holds_good_certificate,
    identity_of,
    new_key_and_csr,
    server_host,
    write_identity,
)

SHARD = Identity(Role.SHARD, "shard-0003")


def csr(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, *names: x509.GeneralName) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_shards_own_request_gives_the_certificate_issue_would(tmp_path: Path) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    key_pem, csr_pem = new_key_and_csr(SHARD)
    cert_pem = ca.sign_csr(csr_pem, SHARD)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert ca.signed(cert) and identity_of(cert) == SHARD
    assert certificate_fits(cert_pem, key_pem, ca_pem=ca.cert_pem, identity=SHARD)
    assert not certificate_fits(
        cert_pem, new_key_and_csr(SHARD)[0], ca_pem=ca.cert_pem, identity=SHARD
    )  # another key
    tls = write_identity(tmp_path / "s", key_pem=key_pem, cert_pem=cert_pem, ca_pem=ca.cert_pem)
    assert tls.key.stat().st_mode & 0o777 == 0o600 and tls.identity() == SHARD
    assert holds_good_certificate(tmp_path / "s", SHARD, ca_pem=ca.cert_pem)
    # Not from this CA, not this shard, or near its end: not worth keeping.
    other = ClusterCA.open(tmp_path / "other-ca")
    assert not holds_good_certificate(tmp_path / "s", SHARD, ca_pem=other.cert_pem)
    assert not holds_good_certificate(
        tmp_path / "s", Identity(Role.SHARD, "shard-0004"), ca_pem=ca.cert_pem
    )
    assert not holds_good_certificate(
        tmp_path / "s", SHARD, ca_pem=ca.cert_pem, renew_within=dt.timedelta(days=400)
    )
    assert not holds_good_certificate(tmp_path / "nothing", SHARD, ca_pem=ca.cert_pem)


def test_rsa_keys_of_2048_bits_are_signed_and_smaller_ones_refused(tmp_path: Path) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = x509.load_pem_x509_certificate(ca.sign_csr(csr(good), SHARD))
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and identity_of(cert) == SHARD
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(BadCertificateRequest, match="2048"):
        ca.sign_csr(csr(weak), SHARD)


@pytest.mark.parametrize(
    "name",
    [
        x509.UniformResourceIdentifier("canistry://hub/hub"),
        x509.UniformResourceIdentifier("canistry://shard/shard-0004"),
        x509.DNSName(server_host(Role.HUB)),
        x509.DNSName("example.org"),
    ],
)
def test_a_request_naming_anything_else_is_refused(tmp_path: Path, name: x509.GeneralName) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(BadCertificateRequest):
        ca.sign_csr(csr(key, x509.UniformResourceIdentifier(SHARD.uri), name), SHARD)


def test_a_request_that_does_not_prove_its_key_or_parse_is_refused(tmp_path: Path) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    with pytest.raises(InvalidArgument):
        ca.sign_csr(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", SHARD)
    named = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hub/hub")]))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(BadCertificateRequest, match="hub/hub"):
        ca.sign_csr(named, SHARD)
    # Tamper with the signed body: the signature no longer proves the key.
    der = x509.load_pem_x509_csr(new_key_and_csr(SHARD)[1]).public_bytes(serialization.Encoding.DER)
    marker = SHARD.uri.encode()
    forged = der.replace(marker, marker[:-1] + b"4")
    pem = x509.load_der_x509_csr(forged).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(BadCertificateRequest, match="signature"):
        ca.sign_csr(pem, SHARD)
