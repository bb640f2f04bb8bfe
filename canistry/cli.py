"""The ``canistry`` command line (DESIGN §8)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path

from canistry.layout import DEFAULT_DATA_DIR, ClusterLayout, operator_tls
from canistry.serve import add_serve_parser, run_serve
from runtime.tls import TLSError

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _operator_flags(parser: argparse.ArgumentParser) -> None:
    cert = parser.add_mutually_exclusive_group()
    cert.add_argument(
        "--tls-dir",
        type=Path,
        metavar="DIR",
        help="operator certificate (ca.pem, cert.pem, key.pem); "
        "default: DATA_DIR/tls/operator, made by `canistry up`",
    )
    cert.add_argument(
        "--insecure", action="store_true", help="plain text, for services run with --insecure"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canistry", description="A sharded learn-to-earn service cluster."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run the whole cluster on this machine, in the foreground")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    up.add_argument("--port", type=int, default=8080, help="HTTP gateway port (0: any free port)")
    up.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="gateway worker processes (default: up to 2, one per core)",
    )
    up.add_argument("--soft-limit", type=_positive_int, default=90_000)
    up.add_argument("--hard-limit", type=_positive_int, default=100_000)
    up.add_argument("--min-shards", type=_positive_int, default=1)
    up.add_argument("--scale-interval", type=float, default=60.0, metavar="S")
    up.add_argument("--content", type=Path, metavar="PACK", help="content pack (default: sample)")
    up.add_argument("--cap", type=_positive_int, default=4_200_000_000, help=argparse.SUPPRESS)
    up.add_argument(
        "--base-allowance", type=_positive_int, default=1_000_000, help=argparse.SUPPRESS
    )
    up.add_argument("--warm-pool", type=int, default=0, metavar="N", help=argparse.SUPPRESS)

    st = sub.add_parser("status", help="show shards, treasury and content of a running cluster")
    where = st.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, default=None)
    where.add_argument("--hub", metavar="ADDR", help="hub address host:port")
    _operator_flags(st)

    content = sub.add_parser("content", help="manage content packs")
    csub = content.add_subparsers(dest="content_command", required=True, metavar="ACTION")
    imp = csub.add_parser("import", help="import a content pack (idempotent)")
    imp.add_argument("pack", type=Path)
    target = imp.add_mutually_exclusive_group()
    target.add_argument("--data-dir", type=Path, default=None)
    target.add_argument("--content-addr", metavar="ADDR")
    _operator_flags(imp)

    add_serve_parser(sub)
    return parser


def _cmd_up(args: argparse.Namespace) -> int:
    from canistry.up import UpConfig, UpError, run_up

    try:
        config = UpConfig(
            data_dir=args.data_dir,
            port=args.port,
            soft_limit=args.soft_limit,
            hard_limit=args.hard_limit,
            min_shards=args.min_shards,
            scale_interval_s=args.scale_interval,
            content_pack=args.content,
            cap=args.cap,
            base_allowance=args.base_allowance,
            warm_pool=args.warm_pool,
        )
        if args.workers is not None:
            config = dataclasses.replace(config, gateway_workers=args.workers)
        return run_up(config)
    except UpError as exc:
        print(f"canistry up: {exc}", file=sys.stderr)
        return 2


def _cmd_status(args: argparse.Namespace) -> int:
    from canistry.status import NoCluster, fetch_status, render_status

    hub = args.hub
    if hub is None:
        data_dir = args.data_dir or DEFAULT_DATA_DIR
        hub = ClusterLayout(data_dir).hub_address()
        if hub is None:
            print(f"canistry status: no cluster at {data_dir} (no cluster.json)", file=sys.stderr)
            return 1
    try:
        tls = operator_tls(tls_dir=args.tls_dir, data_dir=args.data_dir, insecure=args.insecure)
    except TLSError as exc:
        print(f"canistry status: {exc}", file=sys.stderr)
        return 1
    try:
        status = asyncio.run(fetch_status(hub, tls))
    except NoCluster as exc:
        print(f"canistry status: {exc.message}", file=sys.stderr)
        return 1
    render_status(status, sys.stdout)
    return 0


def _cmd_content(args: argparse.Namespace) -> int:
    from canistry.content_cli import import_pack

    return import_pack(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return _cmd_up(args)
    if args.command == "status":
        return _cmd_status(args)
    if args.command == "content":
        return _cmd_content(args)
    return run_serve(args)
