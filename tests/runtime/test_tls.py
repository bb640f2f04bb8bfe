"""The cluster CA and the certificates it issues."""

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509

from runtime.tls import (
    CLUSTER_HOST,
    ClusterCA,
    Identity,
    Role,
    TLSConfig,
    TLSError,
    identity_of,
    server_host,
)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_issue_writes_a_certificate_that_names_its_holder(tmp_path: Path) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    tls = ca.issue(Identity(Role.SHARD, "shard-0007"), tmp_path / "s7")
    assert tls == TLSConfig.from_dir(tmp_path / "s7")
    assert tls.key.stat().st_mode & 0o777 == 0o600
    assert tls.ca_cert.read_bytes() == (tmp_path / "ca" / "ca.pem").read_bytes()
    assert tls.identity() == Identity(Role.SHARD, "shard-0007")

    cert = load(tls.cert)
    assert ca.signed(cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "canistry://shard/shard-0007"
    ]
    assert san.get_values_for_type(x509.DNSName) == [CLUSTER_HOST, server_host(Role.SHARD)]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    now = dt.datetime.now(dt.UTC)
    assert cert.not_valid_before_utc <= now
    assert dt.timedelta(days=300) < cert.not_valid_after_utc - now <= dt.timedelta(days=366)
    ca_cert = load(tmp_path / "ca" / "ca.pem")
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc <= ca_cert.not_valid_after_utc


def test_identities_parse_only_from_canistry_uris() -> None:
    assert Identity.from_uri("canistry://hub/hub") == Identity(Role.HUB, "hub")
    assert Identity.from_uri("canistry://gateway/gw-1").uri == "canistry://gateway/gw-1"
    for bad in ("https://hub/hub", "canistry://admin/root", "canistry://hub", "canistry://hub/"):
        assert Identity.from_uri(bad) is None, bad
    with pytest.raises(ValueError):
        Identity(Role.SHARD, "../etc")
    assert str(Identity(Role.SHARD, "shard-0001")) == "shard/shard-0001"


def test_ensure_keeps_a_good_certificate_and_replaces_a_stale_or_foreign_one(
    tmp_path: Path,
) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    me = Identity(Role.REGISTRY, "registry")
    first = ca.ensure(me, tmp_path / "r").cert.read_bytes()
    assert ca.ensure(me, tmp_path / "r").cert.read_bytes() == first, "kept"
    assert ClusterCA.open(tmp_path / "ca").ensure(me, tmp_path / "r").cert.read_bytes() == first

    renewed = ca.ensure(me, tmp_path / "r", renew_within=dt.timedelta(days=400))
    assert renewed.cert.read_bytes() != first, "near its end: issued again"

    other = ClusterCA.open(tmp_path / "other-ca")
    moved = other.ensure(me, tmp_path / "r")
    assert other.signed(load(moved.cert)) and not ca.signed(load(moved.cert))

    ca.issue(Identity(Role.GATEWAY, "gateway"), tmp_path / "g")
    assert ca.ensure(me, tmp_path / "g").identity() == me, "another identity: issued again"


def test_missing_or_mismatched_files_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(TLSError, match=r"missing ca\.pem, cert\.pem, key\.pem"):
        TLSConfig.from_dir(tmp_path / "nothing")
    with pytest.raises(TLSError, match="no usable cluster CA"):
        ClusterCA.load(tmp_path / "nothing")
    ClusterCA.open(tmp_path / "a")
    ClusterCA.open(tmp_path / "b")
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    with pytest.raises(TLSError, match="does not belong"):
        ClusterCA.load(tmp_path / "a")


def test_a_certificate_without_exactly_one_identity_has_none(tmp_path: Path) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    assert identity_of(ca.cert) is None  # the CA itself names no holder
