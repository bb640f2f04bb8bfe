"""``canistry content import PACK``: into a data dir, or through a running content service."""

from __future__ import annotations

import argparse
import asyncio
import sys

from canistry.layout import DEFAULT_DATA_DIR, ClusterLayout, operator_tls
from content_service.pack import read_pack
from protos import content_pb2, content_pb2_grpc
from runtime.errors import CanistryError
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role, TLSConfig, TLSError

__all__ = ["import_pack"]


async def _import_remote(
    address: str, tls: TLSConfig | None, text: str
) -> content_pb2.ImportPackReply:
    async with (
        make_channel(address, tls, server_role=Role.CONTENT) as ch,
        rpc_errors("content service"),
    ):
        reply: content_pb2.ImportPackReply = await content_pb2_grpc.ContentStub(ch).ImportPack(
            content_pb2.ImportPackRequest(pack_json=text), timeout=30
        )
        return reply


def import_pack(args: argparse.Namespace) -> int:
    try:
        text = read_pack(args.pack)
    except OSError as exc:
        print(f"canistry content import: cannot read {args.pack}: {exc}", file=sys.stderr)
        return 2
    except CanistryError as exc:
        print(f"canistry content import: {exc.message}", file=sys.stderr)
        return 2
    try:
        if args.content_addr:
            try:
                tls = operator_tls(tls_dir=args.tls_dir, data_dir=None, insecure=args.insecure)
            except TLSError as exc:
                print(f"canistry content import: {exc}", file=sys.stderr)
                return 2
            r = asyncio.run(_import_remote(args.content_addr, tls, text))
            added, changed, unchanged, total = r.added, r.changed, r.unchanged, r.total_units
        else:
            from content_service.service import import_pack_text

            layout = ClusterLayout(args.data_dir or DEFAULT_DATA_DIR)
            if not layout.cluster_file.is_file():
                print(
                    f"canistry content import: no cluster at {layout.data_dir} "
                    "(no cluster.json); give --data-dir of a cluster that `canistry up` "
                    "made, or --content-addr of a running content service",
                    file=sys.stderr,
                )
                return 2
            s = import_pack_text(layout.service_dir("content"), text)
            added, changed, unchanged, total = s.added, s.changed, s.unchanged, s.total_units
    except CanistryError as exc:
        print(f"canistry content import: {args.pack}: {exc.message}", file=sys.stderr)
        return 2
    print(
        f"imported {args.pack}: {added} added, {changed} changed, {unchanged} unchanged; "
        f"{total} units in all"
    )
    return 0
