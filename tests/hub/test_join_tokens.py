"""Join tokens: the pure rules on a fake clock, then :class:`hub.enrollment.Enrollment` on a
real LMDB store (kept across a restart) with a real CA."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub import join_tokens
from hub.enrollment import Enrollment
from hub.join_tokens import JoinRefused
from hub.store import HubStore
from protos import hub_pb2
from runtime.errors import InvalidArgument, PermissionDenied
from runtime.tls import ClusterCA, Identity, Role, identity_of, new_key_and_csr

SHARD_1 = "shard-0001"
TTL_MS = 60_000


class FakeClock:
    """Wall ms that move only when a test says so."""

    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


# ---- the rules -----------------------------------------------------------------------------


def test_a_token_is_good_once_for_its_shard_before_it_expires() -> None:
    token = join_tokens.new_token()
    kept = join_tokens.issue(SHARD_1, token, now_ms=1000, ttl_ms=TTL_MS)
    assert kept.token_sha256 == join_tokens.digest(token) and token.encode() not in (
        kept.SerializeToString()
    )
    used = join_tokens.redeem(kept, SHARD_1, token, now_ms=1000 + TTL_MS - 1)
    assert used.used_at_ms == 1000 + TTL_MS - 1 and not kept.used_at_ms
    with pytest.raises(JoinRefused) as reused:
        join_tokens.redeem(used, SHARD_1, token, now_ms=2000)
    assert reused.value.reason == "used"


def test_an_expired_token_is_refused() -> None:
    token = join_tokens.new_token()
    kept = join_tokens.issue(SHARD_1, token, now_ms=1000, ttl_ms=TTL_MS)
    with pytest.raises(JoinRefused) as late:
        join_tokens.redeem(kept, SHARD_1, token, now_ms=1000 + TTL_MS)
    assert late.value.reason == "expired"


def test_a_wrong_token_and_another_shards_token_are_refused_alike() -> None:
    token, other = join_tokens.new_token(), join_tokens.new_token()
    kept = join_tokens.issue(SHARD_1, token, now_ms=0, ttl_ms=TTL_MS)
    kept_2 = join_tokens.issue("shard-0002", other, now_ms=0, ttl_ms=TTL_MS)
    with pytest.raises(JoinRefused) as wrong:
        join_tokens.redeem(kept, SHARD_1, join_tokens.new_token(), now_ms=1)
    # shard-0002's token presented for shard-0001 (whose record is looked up): no match.
    with pytest.raises(JoinRefused) as foreign:
        join_tokens.redeem(kept, SHARD_1, other, now_ms=1)
    # A record kept under the wrong id is never honoured for another shard.
    with pytest.raises(JoinRefused) as misfiled:
        join_tokens.redeem(kept_2, SHARD_1, other, now_ms=1)
    with pytest.raises(JoinRefused) as unknown:
        join_tokens.redeem(None, SHARD_1, token, now_ms=1)
    assert (wrong.value.reason, foreign.value.reason) == ("wrong-token", "wrong-token")
    assert (misfiled.value.reason, unknown.value.reason) == ("unknown", "unknown")
    # The caller sees one message and one class, whichever rule failed.
    assert {str(e.value) for e in (wrong, misfiled, unknown)} == {"join token refused"}
    assert isinstance(wrong.value, PermissionDenied)


def test_tokens_are_random_and_long() -> None:
    tokens = {join_tokens.new_token() for _ in range(100)}
    assert len(tokens) == 100 and min(len(t) for t in tokens) >= 43
    with pytest.raises(ValueError):
        join_tokens.issue(SHARD_1, "t", now_ms=0, ttl_ms=0)


# ---- Enrollment on a real store ------------------------------------------------------------


@pytest.fixture
def ca(tmp_path: Path) -> ClusterCA:
    return ClusterCA.open(tmp_path / "ca")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[HubStore]:
    s = HubStore(tmp_path / "hub", durable=False)
    await s.start()
    await s.put_shard(hub_pb2.ShardRecord(shard_id=SHARD_1, step=hub_pb2.SPAWN_STEP_STARTED))
    yield s
    await s.stop()


def csr_for(identity: Identity) -> bytes:
    return new_key_and_csr(identity)[1]


SHARD_1_CSR = csr_for(Identity(Role.SHARD, SHARD_1))


async def test_enroll_signs_the_csr_for_the_shard_once(
    store: HubStore, ca: ClusterCA, tmp_path: Path
) -> None:
    clock = FakeClock()
    enrollment = Enrollment(store, ca, ttl_s=60, clock=clock)
    token = await enrollment.issue_token(SHARD_1)
    kept = enrollment.token(SHARD_1)
    assert kept is not None and kept.token_sha256 == join_tokens.digest(token)
    cert_pem, ca_pem = await enrollment.enroll(SHARD_1, token, SHARD_1_CSR)
    cert = x509.load_pem_x509_certificate(cert_pem)
    assert ca_pem == ca.cert_pem and ca.signed(cert)
    assert identity_of(cert) == Identity(Role.SHARD, SHARD_1)
    with pytest.raises(JoinRefused):  # single use
        await enrollment.enroll(SHARD_1, token, SHARD_1_CSR)


async def test_a_restarted_hub_still_honours_a_token_until_it_expires(
    tmp_path: Path, ca: ClusterCA, store: HubStore
) -> None:
    clock = FakeClock()
    token = await Enrollment(store, ca, ttl_s=60, clock=clock).issue_token(SHARD_1)
    late = await Enrollment(store, ca, ttl_s=60, clock=clock).issue_token("shard-0002")
    await store.put_shard(hub_pb2.ShardRecord(shard_id="shard-0002"))
    await store.stop()
    again = HubStore(tmp_path / "hub", durable=False)
    await again.start()
    try:
        enrollment = Enrollment(again, ca, ttl_s=60, clock=clock)
        clock.now_ms += 59_999
        await enrollment.enroll(SHARD_1, token, SHARD_1_CSR)
        clock.now_ms += 1
        with pytest.raises(JoinRefused):
            await enrollment.enroll("shard-0002", late, csr_for(Identity(Role.SHARD, "shard-0002")))
    finally:
        await again.stop()


async def test_a_new_token_voids_the_last_and_an_abandoned_shard_enrols_nobody(
    store: HubStore, ca: ClusterCA
) -> None:
    enrollment = Enrollment(store, ca, ttl_s=60, clock=FakeClock())
    first = await enrollment.issue_token(SHARD_1)
    second = await enrollment.issue_token(SHARD_1)
    with pytest.raises(JoinRefused):
        await enrollment.enroll(SHARD_1, first, SHARD_1_CSR)
    await store.update_shard(SHARD_1, lambda r: setattr(r, "step", hub_pb2.SPAWN_STEP_ABANDONED))
    with pytest.raises(JoinRefused):
        await enrollment.enroll(SHARD_1, second, SHARD_1_CSR)
    with pytest.raises(JoinRefused):  # not even a valid identity name
        await enrollment.enroll("../hub", second, SHARD_1_CSR)


async def test_a_csr_the_ca_will_not_sign_is_refused_and_does_not_use_up_the_token(
    store: HubStore, ca: ClusterCA
) -> None:
    enrollment = Enrollment(store, ca, ttl_s=60, clock=FakeClock())
    token = await enrollment.issue_token(SHARD_1)
    for bad in (
        csr_for(Identity(Role.HUB, "hub")),  # asks to be the hub
        csr_for(Identity(Role.SHARD, "shard-0002")),  # asks to be another shard
        b"not a csr",
        _csr(ec.generate_private_key(ec.SECP256K1()), None),  # a curve we do not take
    ):
        with pytest.raises(InvalidArgument):
            await enrollment.enroll(SHARD_1, token, bad)
    # A request with no names at all is fine: the CA names the certificate itself.
    cert_pem, _ = await enrollment.enroll(
        SHARD_1, token, _csr(ec.generate_private_key(ec.SECP256R1()), None)
    )
    assert identity_of(x509.load_pem_x509_certificate(cert_pem)) == Identity(Role.SHARD, SHARD_1)


def _csr(key: ec.EllipticCurvePrivateKey, common_name: str | None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    names = [] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)
