"""The ``canistry`` command line (docs/design.md §8)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from canistry import __version__
from canistry.enroll import add_enroll_parser, run_enroll
from canistry.flags import add_config_flags, config_values
from canistry.init_certs import add_init_certs_parser, run_init_certs
from canistry.layout import DEFAULT_DATA_DIR, ClusterLayout, operator_tls
from canistry.probe import add_probe_parser, run_probe
from canistry.serve import add_serve_parser, run_serve
from canistry.up import UpConfig
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


#: The UpConfig fields `canistry up` takes as flags (the rest are for benchmarks and tests).
_UP_FLAGS = (
    "data_dir", "port", "gateway_workers", "register_rate", "register_burst", "soft_limit",
    "hard_limit", "min_shards", "max_shards", "scale_interval_s", "content_pack", "cap",
    "base_allowance", "daily_attempt_limit", "daily_token_limit", "warm_pool", "content_replicas",
    "stall_timeout_s", "cors_origins", "voting_period_s", "proposal_min_stake",
    "rollout_concurrency", "template_root",
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canistry", description="A sharded learn-to-earn service cluster."
    )
    parser.add_argument("--version", action="version", version=f"canistry {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="run the whole cluster on this machine, in the foreground",
        description="Start content, registry, hub (which spawns the shards) and the HTTP "
        "gateway as child processes, print the gateway's URL and supervise them until Ctrl-C. "
        "Run again on the same --data-dir to resume. Settings marked 'fixed at first start' "
        "are stored by the hub the first time; later runs keep the stored ones and say so.",
    )
    add_config_flags(up, UpConfig, _UP_FLAGS, flags={"gateway_workers": "--workers",
                                                     "content_pack": "--content"},
                     metavars={"content_pack": "PACK", "data_dir": "DIR"})  # fmt: skip

    st = sub.add_parser("status", help="show shards, treasury and content of a running cluster")
    where = st.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                       help="the data directory of a cluster `canistry up` runs "
                       "(default: ./.canistry)")  # fmt: skip
    where.add_argument("--hub", metavar="ADDR", help="hub address host:port")
    st.add_argument(
        "--metrics",
        action="store_true",
        help="also list where each service serves Prometheus /metrics (needs --data-dir)",
    )
    _operator_flags(st)

    content = sub.add_parser("content", help="manage content packs")
    csub = content.add_subparsers(dest="content_command", required=True, metavar="ACTION")
    imp = csub.add_parser("import", help="import a content pack (idempotent)")
    imp.add_argument("pack", type=Path)
    target = imp.add_mutually_exclusive_group()
    target.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="the data directory of a cluster `canistry up` made; its content "
                        "service sees the import at once (default: ./.canistry)")  # fmt: skip
    target.add_argument("--content-addr", metavar="ADDR",
                        help="a running content service (host:port) to import through")  # fmt: skip
    _operator_flags(imp)

    lt = sub.add_parser(
        "loadtest",
        help="drive a realistic load through a gateway, or sweep shard counts, and report",
        description="Register N users through the gateway (each its own Ed25519 identity), "
        "then for S seconds let C workers act as them: list and read units (sometimes with "
        "If-None-Match), submit quizzes (mostly right, each with an Idempotency-Key), read "
        "/v1/me and the balance, and sign up new users, in the shares --mix gives. Progress "
        "goes to stderr (a live bar on a terminal, a line every 2 s otherwise); a summary per "
        "operation (count, errors, req/s, p50/p90/p99/max), errors by type, per-shard figures "
        "and the hub's allowance calls to stdout at the end. Without --gateway, --shards 1,2,4 "
        "runs a sweep: for each count a throwaway cluster in a temporary directory, limits "
        "sized to spread the users evenly, the same load, then the cluster removed; the result "
        "is throughput and p99 against the shard count. Only loopback gateways (127.0.0.0/8, "
        "localhost, ::1) are loaded unless --allow-remote is given.",
        epilog="exit status: 0 when the load ran (failed requests are reported, not fatal), "
        "1 when it could not run, 2 for bad flags or when no gateway answers. For load beyond "
        "one machine, run Locust with the locustfile shipped in canistry/loadtest/ (README).",
    )
    target = lt.add_mutually_exclusive_group(required=True)
    target.add_argument("--gateway", metavar="URL", help="e.g. http://127.0.0.1:8080")
    target.add_argument("--shards", metavar="N,N,...",
                        help="sweep: a throwaway cluster per shard count, e.g. 1,2,4")  # fmt: skip
    lt.add_argument("--users", type=_positive_int, required=True, metavar="N",
                    help="users to register, each with its own key")  # fmt: skip
    lt.add_argument("--duration", type=float, required=True, metavar="S", help="seconds of load")
    lt.add_argument(
        "--concurrency", type=_positive_int, default=16, metavar="C", help="workers (default 16)"
    )
    lt.add_argument("--mix", default="read=70,submit=30,register=0", metavar="SHARES",
                    help="shares of reads, submissions and sign-ups, e.g. "
                    "read=70,submit=25,register=5 (default read=70,submit=30)")  # fmt: skip
    lt.add_argument(
        "--max-requests",
        type=_positive_int,
        default=1_000_000,
        metavar="N",
        help="stop after this many requests, whatever the duration (default 1,000,000)",
    )
    lt.add_argument("--report", type=Path, metavar="FILE", help="also write the summary as JSON")
    lt.add_argument("--plot", type=Path, metavar="FILE.png",
                    help="draw throughput, p50/p99 over time and the shards' fill (a sweep: "
                    "throughput and p50/p99 against the shard count) as PNG")  # fmt: skip
    lt.add_argument("--data-dir", type=Path, metavar="DIR",
                    help="the data directory of the cluster under load (`canistry up`'s): its "
                    "operator certificate reads the shards' and hub's own counters "
                    "(submissions and hub calls per shard); without it only the gateway's "
                    "/v1/cluster figures")  # fmt: skip
    lt.add_argument("--gateway-workers", type=_positive_int, metavar="N",
                    help="sweep: gateway worker processes of each cluster")  # fmt: skip
    lt.add_argument("--progress", choices=("auto", "bar", "lines"), default="auto",
                    help="a live bar, progress lines, or a bar on a terminal and lines otherwise "
                    "(default: auto)")  # fmt: skip
    lt.add_argument("--quiet", action="store_true", help="no progress on stderr")
    lt.add_argument("--seed", type=int, help="seed the mix's random choices")
    lt.add_argument(
        "--request-timeout", type=float, default=10.0, metavar="S", help="per request (default 10)"
    )
    lt.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --gateway that is not loopback (only one you are responsible for)",
    )

    bk = sub.add_parser(
        "backup",
        help="copy a cluster's data online (consistent LMDB copies) to start a cluster on",
        description="Copy every service's and shard's LMDB hot (the cluster keeps serving), "
        "with the CA, certificates and cluster.json, to DEST. `canistry up --data-dir DEST` "
        "then starts a cluster with the same users, balances and treasury.",
    )
    bk.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help="the cluster's data directory (default ./.canistry)")  # fmt: skip
    bk.add_argument("--to", type=Path, required=True, metavar="DEST",
                    help="where to write the copy; must not exist")  # fmt: skip

    add_serve_parser(sub)
    add_probe_parser(sub)
    add_init_certs_parser(sub)
    add_enroll_parser(sub)
    return parser


def _cmd_up(args: argparse.Namespace) -> int:
    from canistry.up import UpError, run_up

    try:
        return run_up(UpConfig(**config_values(args, _UP_FLAGS)))
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
    if args.metrics:
        from canistry.status import metrics_endpoints

        print("\nMetrics (Prometheus)")
        layout = ClusterLayout(args.data_dir or DEFAULT_DATA_DIR)
        for name, url in metrics_endpoints(layout):
            print(f"  {name:<12} {url}")
    return 0


def _cmd_content(args: argparse.Namespace) -> int:
    from canistry.content_cli import import_pack

    return import_pack(args)


def _cmd_loadtest(args: argparse.Namespace) -> int:
    from canistry.loadtest import (
        ConfigError,
        LoadTestConfig,
        MixWeights,
        SweepConfig,
        parse_shard_counts,
        run_loadtest,
        run_sweep,
    )

    live = {"auto": None, "bar": True, "lines": False}[args.progress]
    try:
        common = {
            "users": args.users,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "max_requests": args.max_requests,
            "report": args.report,
            "plot": args.plot,
            "quiet": args.quiet,
            "seed": args.seed,
            "request_timeout_s": args.request_timeout,
            "mix": MixWeights.parse(args.mix),
            "live": live,
        }
        if args.shards is not None:
            if args.data_dir is not None:
                raise ConfigError("--data-dir is for --gateway: a sweep makes its own clusters")
            workers = {} if args.gateway_workers is None else {
                "gateway_workers": args.gateway_workers
            }  # fmt: skip
            sweep = SweepConfig(shards=parse_shard_counts(args.shards), **common, **workers)
            return run_sweep(sweep)
        if args.gateway_workers is not None:
            raise ConfigError("--gateway-workers is for a sweep (--shards)")
        config = LoadTestConfig(
            gateway=args.gateway,
            allow_remote=args.allow_remote,
            data_dir=args.data_dir,
            **common,
        )
    except ConfigError as exc:
        print(f"canistry loadtest: {exc}", file=sys.stderr)
        return 2
    return run_loadtest(config)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = _dispatch(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`canistry status | head`): stop quietly. Point stdout
        # at /dev/null so that the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "up":
        return _cmd_up(args)
    if args.command == "status":
        return _cmd_status(args)
    if args.command == "content":
        return _cmd_content(args)
    if args.command == "loadtest":
        return _cmd_loadtest(args)
    if args.command == "backup":
        from canistry.backup import run_backup

        return run_backup(args.data_dir, args.to)
    if args.command == "probe":
        return run_probe(args)
    if args.command == "init-certs":
        return run_init_certs(args)
    if args.command == "enroll":
        return run_enroll(args)
    return run_serve(args)
