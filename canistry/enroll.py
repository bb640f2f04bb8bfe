"""``canistry enroll``: get a shard its certificate from the hub, with a one-time join token.

What a shard's init container runs on Kubernetes (the ``kubernetes``
spawner), before ``canistry serve shard``. If ``--tls-dir`` already holds a
certificate for this shard from the cluster CA (``--ca``) that is more than
30 days from its end, it is kept and nothing is asked. Otherwise a new key
and a certificate signing request are made here (the private key never
leaves this process's directory), and the hub's enrollment port (``--hub``,
server-only TLS; the hub's certificate is checked against ``--ca`` and must
be a hub's) is asked to sign it, with the join token the hub put in the
environment (``CANISTRY_JOIN_TOKEN``). ``ca.pem``, ``cert.pem`` and
``key.pem`` (0600) are then written to ``--tls-dir``.

A hub that cannot be reached yet is asked again until ``--timeout``. Exit
status: 0 with a certificate in place, 1 when the hub refused or never
answered, 2 when the CA certificate or the token is missing. A certificate
that is near its end but still valid is kept (with a warning) when the hub
refuses, since a refused token would otherwise stop a shard that still could
serve.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from protos import enrollment_pb2, enrollment_pb2_grpc
from runtime.errors import CanistryError, Unavailable
from runtime.rpc import make_anonymous_channel, rpc_errors
from runtime.tls import (
    Identity,
    Role,
    TLSError,
    certificate_fits,
    holds_good_certificate,
    new_key_and_csr,
    write_identity,
)

__all__ = ["TOKEN_ENV", "EnrollFailed", "add_enroll_parser", "enroll", "run_enroll"]

#: The environment variable the join token comes in (never a flag: argv is public).
TOKEN_ENV = "CANISTRY_JOIN_TOKEN"
DEFAULT_TIMEOUT_S = 60.0
_ZERO = dt.timedelta(0)


class EnrollFailed(Exception):
    """The hub refused the request, answered with a certificate that does not fit, or never
    answered."""


def add_enroll_parser(sub: Any) -> None:
    p = sub.add_parser(
        "enroll",
        help="get a shard its certificate from the hub with a join token (Kubernetes init)",
        description="Keep the shard's certificate in --tls-dir if it is good for more than 30 "
        f"days; else make a key and ask the hub's enrollment port to certify it, with the join "
        f"token in ${TOKEN_ENV}.",
    )
    p.add_argument("--shard-id", required=True, help="the shard this certificate is for")
    p.add_argument("--hub", required=True, metavar="HOST:PORT", help="the hub's enrollment port")
    p.add_argument(
        "--ca",
        required=True,
        type=Path,
        metavar="PATH",
        help="the cluster CA certificate (ca.pem): the hub must be certified by it",
    )
    p.add_argument(
        "--tls-dir", required=True, type=Path, metavar="DIR", help="where to keep the certificate"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"how long to keep asking a hub that does not answer (default: {DEFAULT_TIMEOUT_S:g})",
    )


async def enroll(
    shard_id: str,
    hub: str,
    *,
    ca_pem: bytes,
    tls_dir: Path,
    token: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Ask the hub at ``hub`` to certify a new key for ``shard_id``; write it to ``tls_dir``.

    Raises :class:`EnrollFailed` if the hub refuses, does not answer within
    ``timeout_s``, or answers with a certificate that is not this shard's
    from ``ca_pem``.
    """
    identity = Identity(Role.SHARD, shard_id)
    key_pem, csr_pem = await asyncio.to_thread(new_key_and_csr, identity)
    request = enrollment_pb2.EnrollShardRequest(shard_id=shard_id, token=token, csr_pem=csr_pem)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay = 0.1
    async with make_anonymous_channel(hub, ca_pem, server_role=Role.HUB) as channel:
        stub = enrollment_pb2_grpc.EnrollmentStub(channel)
        while True:
            left = deadline - loop.time()
            try:
                async with rpc_errors("hub enrollment port"):
                    reply = await stub.EnrollShard(request, timeout=max(0.1, min(10.0, left)))
                break
            except Unavailable as exc:  # not up yet, or restarting: ask again
                if loop.time() + delay >= deadline:
                    raise EnrollFailed(f"no answer from {hub} in {timeout_s:g}s: {exc}") from exc
            except CanistryError as exc:
                raise EnrollFailed(f"{hub} refused: {exc.message}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    # Trust what was mounted, not what came back: the reply must chain to our CA.
    if not certificate_fits(reply.cert_pem, key_pem, ca_pem=ca_pem, identity=identity):
        raise EnrollFailed(f"{hub} answered with a certificate that is not {identity}'s")
    await asyncio.to_thread(
        write_identity, tls_dir, key_pem=key_pem, cert_pem=reply.cert_pem, ca_pem=ca_pem
    )


def run_enroll(args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    env = dict(os.environ) if env is None else env
    try:
        ca_pem = args.ca.read_bytes()
        identity = Identity(Role.SHARD, args.shard_id)
    except (OSError, ValueError) as exc:
        print(f"canistry enroll: {exc}", file=sys.stderr)
        return 2
    if holds_good_certificate(args.tls_dir, identity, ca_pem=ca_pem):
        print(f"canistry enroll: {identity}: the certificate in {args.tls_dir} is kept")
        return 0
    still_valid = holds_good_certificate(args.tls_dir, identity, ca_pem=ca_pem, renew_within=_ZERO)
    token = env.get(TOKEN_ENV, "")
    try:
        if not token:
            raise EnrollFailed(f"no join token in ${TOKEN_ENV}")
        asyncio.run(
            enroll(
                args.shard_id,
                args.hub,
                ca_pem=ca_pem,
                tls_dir=args.tls_dir,
                token=token,
                timeout_s=args.timeout,
            )
        )
    except (EnrollFailed, TLSError, OSError) as exc:
        if still_valid:
            print(
                f"canistry enroll: {exc}; keeping the certificate in {args.tls_dir}, "
                "which is near its end",
                file=sys.stderr,
            )
            return 0
        print(f"canistry enroll: {exc}", file=sys.stderr)
        return 2 if not token else 1
    print(f"canistry enroll: {identity}: certificate written to {args.tls_dir}")
    return 0
