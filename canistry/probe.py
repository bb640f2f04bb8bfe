"""``canistry probe ADDR``: ask a service's standard gRPC health service once.

A container's ``HEALTHCHECK`` runs it (no ``grpc_health_probe`` binary is at
hand). Every cluster server takes only mutual TLS, so the probe presents a
cluster certificate (``--tls-dir``: ``ca.pem``, ``cert.pem``, ``key.pem``;
any role may ask for health) and checks the server's against the cluster CA;
``--insecure`` is for services run with ``--insecure``. Exit status 0 when
the service answers SERVING, 1 when it answers anything else or nothing in
time, 2 when the certificate cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime.rpc import make_channel
from runtime.tls import TLSConfig, TLSError

__all__ = ["add_probe_parser", "probe", "run_probe"]

DEFAULT_TIMEOUT_S = 3.0


def add_probe_parser(sub: Any) -> None:
    p = sub.add_parser(
        "probe",
        help="ask a service's gRPC health service once (container health checks)",
        description="Exit 0 if the service at ADDR answers SERVING to the standard gRPC "
        "health check, 1 if not (or not within --timeout), 2 if the certificate is unusable.",
    )
    p.add_argument("address", metavar="ADDR", help="host:port of the service")
    p.add_argument(
        "--service", default="", help="the health service name to ask about (default: the server)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the answer (default: {DEFAULT_TIMEOUT_S:g})",
    )
    cert = p.add_mutually_exclusive_group(required=True)
    cert.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="a cluster certificate to present (ca.pem, cert.pem, key.pem): mutual TLS",
    )
    cert.add_argument(
        "--insecure", action="store_true", help="plain text, for services run with --insecure"
    )


async def probe(
    address: str, tls: TLSConfig | None, *, service: str = "", timeout_s: float = DEFAULT_TIMEOUT_S
) -> str:
    """The status the service at ``address`` reports (``SERVING``...), or why none came."""
    async with make_channel(address, tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def run_probe(args: argparse.Namespace) -> int:
    try:
        tls = None if args.insecure else TLSConfig.from_dir(args.tls_dir)
        status = asyncio.run(probe(args.address, tls, service=args.service, timeout_s=args.timeout))
    except TLSError as exc:
        print(f"canistry probe: {exc}", file=sys.stderr)
        return 2
    print(f"{args.address}: {status}")
    return 0 if status == "SERVING" else 1
