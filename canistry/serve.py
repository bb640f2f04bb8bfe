"""``canistry serve NAME``: run one service in this process, for supervisors and containers.

This is the one place where a service's flags become its config. The process
writes its address to ``--ready-file`` only after binding, and its pid to
``<data-dir>/service.pid`` while it runs.

Every service needs ``--tls-dir DIR`` (its cluster certificate: ``ca.pem``,
``cert.pem``, ``key.pem``) or, to run in plain text with nobody's identity
checked, an explicit ``--insecure``. The certificate must name this service
(a shard's, its shard id); the hub also takes ``--ca-dir``, the cluster CA it
issues shard certificates from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from pathlib import Path
from typing import Any

from hub.config import DEFAULT_MAX_SHARDS, DEFAULT_START_CONCURRENCY, DEFAULT_START_INTERVAL_S
from runtime import logs
from runtime.files import write_atomically
from runtime.metrics import MetricsServer, register_figures
from runtime.process import run_until_signalled
from runtime.rpc import ServerConfig
from runtime.tls import Identity, Role, TLSConfig, TLSError

__all__ = ["SERVICES", "ServeError", "add_serve_parser", "run_serve"]

log = logs.get_logger(__name__)

SERVICES = ("content", "registry", "hub", "shard", "gateway")


class ServeError(RuntimeError):
    """The flags cannot make a working service (bad certificates, for one)."""


def add_serve_parser(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="run one service in the foreground (for supervisors and containers)"
    )
    ss = p.add_subparsers(dest="service", required=True, metavar="SERVICE")

    def common(name: str, help_: str) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = ss.add_parser(name, help=help_)
        sp.add_argument(
            "--data-dir", type=Path, required=True, help="this service's own data directory"
        )
        sp.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
        sp.add_argument("--port", type=int, default=0, help="port to bind (default: any free port)")
        sp.add_argument("--ready-file", type=Path, help="write the bound address here once serving")
        sp.add_argument(
            "--metrics-port",
            type=int,
            default=0,
            help="serve Prometheus /metrics over HTTP on this port, on --host (default: any free "
            "port, written to DATA_DIR/metrics.addr; the gateway serves /metrics on --port)",
        )
        sp.add_argument(
            "--log-level", default="info", choices=["debug", "info", "warning", "error"]
        )
        sp.add_argument(
            "--no-fsync", action="store_true", help="skip fsync on commit (benchmarks only)"
        )
        security = sp.add_mutually_exclusive_group(required=True)
        security.add_argument(
            "--tls-dir",
            type=Path,
            help="this service's cluster certificate: ca.pem, cert.pem, key.pem (mutual TLS)",
        )
        security.add_argument(
            "--insecure",
            action="store_true",
            help="serve and dial plain text and check no caller (tests and debugging only)",
        )
        return sp

    from gateway.server import add_arguments as add_gateway_arguments

    add_gateway_arguments(common("gateway", "the HTTP gateway (FastAPI + uvicorn)"))

    c = common("content", "the content service")
    c.add_argument("--pack", type=Path, help="import this content pack before serving")
    c.add_argument(
        "--sample", action="store_true", help="import the shipped sample pack before serving"
    )

    r = common("registry", "the registry")
    r.add_argument("--soft-limit", type=int, default=90_000)
    r.add_argument("--hard-limit", type=int, default=100_000)
    r.add_argument("--hub", help="hub address, poked when capacity runs low")

    h = common("hub", "the hub")
    h.add_argument("--registry", required=True, help="registry address")
    h.add_argument("--content", required=True, help="content service address")
    h.add_argument("--shards-dir", type=Path, required=True, help="where shard data directories go")
    h.add_argument(
        "--ca-dir",
        type=Path,
        help="the cluster CA (ca.pem, ca.key) to issue shard certificates; needs --tls-dir",
    )
    h.add_argument("--cap", type=int, default=4_200_000_000)
    h.add_argument("--soft-limit", type=int, default=90_000)
    h.add_argument("--hard-limit", type=int, default=100_000)
    h.add_argument("--min-shards", type=int, default=1)
    h.add_argument(
        "--scale-interval", type=float, default=60.0, help="seconds between capacity checks"
    )
    h.add_argument("--base-allowance", type=int, default=1_000_000)
    h.add_argument("--max-grant", type=int, default=50_000_000)
    h.add_argument("--attempt-limit", type=int, default=20, help="daily attempts per user")
    h.add_argument("--token-limit", type=int, default=1000, help="daily tokens earned per user")
    # Hidden, benchmarks only and never stored: shards this hub process starts fsync alone.
    h.add_argument("--shard-commit-per-request", action="store_true", help=argparse.SUPPRESS)
    h.add_argument(
        "--max-shards",
        type=int,
        default=DEFAULT_MAX_SHARDS,
        metavar="N",
        help=f"the most shards the hub ever creates (fixed at init; default {DEFAULT_MAX_SHARDS})",
    )
    h.add_argument(
        "--start-concurrency",
        type=int,
        default=DEFAULT_START_CONCURRENCY,
        metavar="N",
        help="shard processes started at once after a restart (each until healthy)",
    )
    h.add_argument(
        "--start-interval",
        type=float,
        default=DEFAULT_START_INTERVAL_S,
        metavar="S",
        help="the least seconds between two shard starts",
    )
    # Hidden: started, unassigned shards kept ready (fixed at init like every policy).
    h.add_argument("--warm-pool", type=int, default=0, metavar="N", help=argparse.SUPPRESS)

    s = common("shard", "a user shard (normally started by the hub)")
    s.add_argument("--shard-id", required=True)
    s.add_argument("--hub", required=True, help="hub address")
    s.add_argument("--content", required=True, help="content service address")
    s.add_argument("--attempt-limit", type=int, default=20)
    s.add_argument("--token-limit", type=int, default=1000)
    s.add_argument("--base-allowance", type=int, default=1_000_000)
    s.add_argument(
        "--no-group-commit", action="store_true", help="one fsync per request (benchmarks)"
    )


def _tls(args: argparse.Namespace) -> TLSConfig | None:
    """The certificate from ``--tls-dir``, checked to name this service; None if --insecure."""
    if args.insecure:
        return None
    role = Role(args.service)
    want = Identity(role, args.shard_id if role is Role.SHARD else role.value)
    try:
        tls = TLSConfig.from_dir(args.tls_dir)
        have = tls.identity()
    except TLSError as exc:
        raise ServeError(str(exc)) from None
    if have != want:
        raise ServeError(f"{tls.cert} is the certificate of {have}, not of {want}")
    return tls


def _build(args: argparse.Namespace) -> Callable[[], AsyncContextManager[Any]]:
    tls = _tls(args)
    server = ServerConfig(host=args.host, port=args.port, tls=tls)
    durable = not args.no_fsync
    if args.service == "content":
        from content_service.config import ContentConfig
        from content_service.service import (
            ContentService,
            import_pack_file,
            import_pack_text,
            load_sample_pack,
        )

        cfg = ContentConfig(data_dir=args.data_dir, server=server, durable=durable)
        # Offline, before the service opens the store: one LMDB env per process.
        if args.pack is not None:
            import_pack_file(args.data_dir, args.pack)
        elif args.sample:
            import_pack_text(args.data_dir, load_sample_pack())
        return lambda: ContentService(cfg)
    if args.service == "registry":
        from registry.config import RegistryConfig
        from registry.service import RegistryService

        rcfg = RegistryConfig(
            data_dir=args.data_dir,
            server=server,
            soft_limit=args.soft_limit,
            hard_limit=args.hard_limit,
            hub_address=args.hub,
            durable=durable,
        )
        return lambda: RegistryService(rcfg)
    if args.service == "hub":
        from hub.config import HubSettings
        from hub.service import HubService

        if (args.ca_dir is None) != (tls is None):
            raise ServeError("the hub takes --ca-dir with --tls-dir, and neither with --insecure")
        hcfg = HubSettings(
            data_dir=args.data_dir,
            shards_dir=args.shards_dir,
            ca_dir=args.ca_dir,
            registry_address=args.registry,
            content_address=args.content,
            server=server,
            cap=args.cap,
            soft_limit=args.soft_limit,
            hard_limit=args.hard_limit,
            min_shards=args.min_shards,
            scale_interval_s=args.scale_interval,
            base_allowance=args.base_allowance,
            max_grant=args.max_grant,
            daily_attempt_limit=args.attempt_limit,
            daily_token_limit=args.token_limit,
            shard_commit_per_request=args.shard_commit_per_request,
            warm_pool=args.warm_pool,
            max_shards=args.max_shards,
            start_concurrency=args.start_concurrency,
            start_interval_s=args.start_interval,
            durable=durable,
        )
        return lambda: HubService(hcfg)
    from user_shard.config import ShardConfig
    from user_shard.service import ShardService

    scfg = ShardConfig(
        shard_id=args.shard_id,
        data_dir=args.data_dir,
        hub_address=args.hub,
        content_address=args.content,
        server=server,
        daily_attempt_limit=args.attempt_limit,
        daily_token_limit=args.token_limit,
        base_allowance=args.base_allowance,
        group_commit=not args.no_group_commit,
        durable=durable,
    )
    return lambda: ShardService(scfg)


@contextlib.contextmanager
def _pid_file(data_dir: Path) -> Iterator[None]:
    path = data_dir / "service.pid"
    write_atomically(path, f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _run_gateway(args: argparse.Namespace) -> int:
    """The gateway runs uvicorn, which owns its loop, its workers and its signals."""
    from gateway.server import config_from_args, run_gateway

    try:
        config = config_from_args(args, _tls(args))
    except (ServeError, ValueError) as exc:
        print(f"canistry serve gateway: {exc}", file=sys.stderr)
        return 2
    with _pid_file(args.data_dir):
        return run_gateway(config, ready_file=args.ready_file, log_level=args.log_level)


def run_serve(args: argparse.Namespace) -> int:
    name = args.shard_id if args.service == "shard" else args.service
    logs.configure(name, level=args.log_level)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.service == "gateway":
        return _run_gateway(args)
    try:
        factory = _build(args)
    except (ServeError, ValueError) as exc:
        print(f"canistry serve {args.service}: {exc}", file=sys.stderr)
        return 2
    if args.insecure:
        log.warning(
            "insecure",
            detail="plain text: no mutual TLS, and any caller may call any RPC",
        )

    def ready(svc: Any) -> None:
        figures = getattr(svc, "figures", None)
        if figures is not None:  # a service's own figures, read at each scrape
            register_figures(figures)
        if args.ready_file is not None:
            write_atomically(args.ready_file, svc.address + "\n")

    @contextlib.asynccontextmanager
    async def with_metrics() -> AsyncIterator[Any]:
        async with (
            MetricsServer(args.host, args.metrics_port, data_dir=args.data_dir),
            factory() as svc,
        ):
            yield svc

    with _pid_file(args.data_dir):
        asyncio.run(run_until_signalled(with_metrics, on_ready=ready))
    return 0
