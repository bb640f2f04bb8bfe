"""``canistry init-certs``: the cluster CA and the core services' certificates.

What ``canistry up`` does for itself (:meth:`canistry.up.Cluster.certificates`),
for deployments where each service has its own volume: docker-compose runs it
once, as a one-shot service, before anything else starts. It makes the CA in
``--ca-dir`` (the hub's volume: only the hub reads it afterwards) unless one is
there, and for each ``NAME=DIR`` keeps the certificate in ``DIR`` if it is
still good, else issues one (``ca.pem``, ``cert.pem``, ``key.pem``). Running
it again changes nothing until a certificate nears its end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from canistry.layout import CERTIFIED
from runtime.tls import ClusterCA, Identity, Role, TLSError

__all__ = ["add_init_certs_parser", "init_certs", "run_init_certs"]


def add_init_certs_parser(sub: Any) -> None:
    p = sub.add_parser(
        "init-certs",
        help="make the cluster CA and core certificates (once; for container deployments)",
        description="Make the cluster CA in --ca-dir (or keep the one there) and, for each "
        "NAME=DIR, the certificate of NAME in DIR (kept while still good). NAME is one of: "
        f"{', '.join(CERTIFIED)}.",
    )
    p.add_argument(
        "--ca-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="the cluster CA's directory (ca.pem, ca.key); the hub's, afterwards",
    )
    p.add_argument(
        "holders", nargs="+", metavar="NAME=DIR", help="who gets a certificate, and where"
    )


def init_certs(ca_dir: Path, holders: dict[str, Path]) -> list[str]:
    """Make or keep the CA and each holder's certificate; one line per holder."""
    ca = ClusterCA.open(ca_dir)
    lines = []
    for name, directory in holders.items():
        tls = ca.ensure(Identity(Role(name), name), directory)
        lines.append(f"{name}: {tls.cert}")
    return lines


def _holders(specs: list[str]) -> dict[str, Path]:
    holders: dict[str, Path] = {}
    for spec in specs:
        name, sep, directory = spec.partition("=")
        if not sep or not directory or name not in CERTIFIED:
            raise ValueError(f"expected NAME=DIR with NAME one of {', '.join(CERTIFIED)}: {spec!r}")
        holders[name] = Path(directory)
    return holders


def run_init_certs(args: argparse.Namespace) -> int:
    try:
        lines = init_certs(args.ca_dir, _holders(args.holders))
    except (OSError, TLSError, ValueError) as exc:
        print(f"canistry init-certs: {exc}", file=sys.stderr)
        return 2
    print(f"canistry init-certs: cluster CA in {args.ca_dir}")
    for line in lines:
        print(f"  {line}")
    return 0
