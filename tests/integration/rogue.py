"""A rogue process: it tries to mint tokens from the hub without a hub-issued identity.

Run as ``python -m tests.integration.rogue --hub ADDR --ca CA_PEM --shard-id ID``.
It knows everything public: the hub's address, the cluster CA certificate
(to trust the hub) and a real shard's id. It makes its own CA, named exactly
like the cluster's, and a certificate claiming to be that shard, with every
name a real shard certificate carries; then a bare self-signed one; then it
tries without a client certificate, and in plain text. Each time it asks the
hub for allowance in the shard's name, and prints one JSON object: attempt
-> the status code it got ("OK" if it was granted anything).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protos import hub_pb2, hub_pb2_grpc


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    shard_id: str = "",
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if shard_id:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.UniformResourceIdentifier(f"canistry://shard/{shard_id}"),
                    x509.DNSName("canistry.internal"),
                    x509.DNSName("shard.canistry.internal"),
                ]
            ),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def forged_identities(cluster_ca: bytes, shard_id: str) -> dict[str, tuple[bytes, bytes]]:
    """(key PEM, certificate chain PEM) of each identity the rogue makes for itself."""
    real_ca = x509.load_pem_x509_certificate(cluster_ca)
    leaf_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Canistry"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"shard/{shard_id}"),
        ]
    )
    # A CA of its own, under the cluster CA's very name.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    fake_ca = _cert(real_ca.subject, real_ca.subject, ca_key, ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert(leaf_name, real_ca.subject, leaf_key, ca_key, ca=False, shard_id=shard_id)
    chain = leaf.public_bytes(serialization.Encoding.PEM) + fake_ca.public_bytes(
        serialization.Encoding.PEM
    )
    # And a bare self-signed certificate claiming the same identity.
    self_key = ec.generate_private_key(ec.SECP256R1())
    self_signed = _cert(leaf_name, leaf_name, self_key, self_key, ca=False, shard_id=shard_id)
    return {
        "forged-ca": (_pem(leaf_key), chain),
        "self-signed": (_pem(self_key), self_signed.public_bytes(serialization.Encoding.PEM)),
    }


async def _ask(channel: grpc.aio.Channel, shard_id: str) -> str:
    request = hub_pb2.AllowanceRequest(shard_id=shard_id, seq=10**9, amount=10**9)
    try:
        reply = await hub_pb2_grpc.HubStub(channel).RequestAllowance(request, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return str(exc.code().name)
    return "OK" if reply.granted >= 0 else "?"


async def attack(hub: str, cluster_ca: bytes, shard_id: str) -> dict[str, str]:
    options = [("grpc.ssl_target_name_override", "hub.canistry.internal")]
    results: dict[str, str] = {}
    for name, (key, chain) in forged_identities(cluster_ca, shard_id).items():
        creds = grpc.ssl_channel_credentials(cluster_ca, key, chain)
        async with grpc.aio.secure_channel(hub, creds, options=options) as ch:
            results[name] = await _ask(ch, shard_id)
    creds = grpc.ssl_channel_credentials(cluster_ca)
    async with grpc.aio.secure_channel(hub, creds, options=options) as ch:
        results["no-client-cert"] = await _ask(ch, shard_id)
    async with grpc.aio.insecure_channel(hub) as ch:
        results["plaintext"] = await _ask(ch, shard_id)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hub", required=True)
    parser.add_argument("--ca", required=True, help="the cluster CA certificate (public)")
    parser.add_argument("--shard-id", required=True)
    args = parser.parse_args()
    with open(args.ca, "rb") as fh:
        cluster_ca = fh.read()
    print(json.dumps(asyncio.run(attack(args.hub, cluster_ca, args.shard_id))))


if __name__ == "__main__":
    main()
