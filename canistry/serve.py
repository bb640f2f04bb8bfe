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

from canistry.flags import add_config_flags, config_values
from canistry.replicas import parse_replicas, run_replicas
from runtime import logs
from runtime.files import write_atomically
from runtime.metrics import ADDRESS_FILE, MetricsServer, register_figures
from runtime.parent_watch import PARENT_ENV, die_with_parent
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
            "port in 20000-29999, below the ephemeral range, written to DATA_DIR/metrics.addr; "
            "the gateway serves /metrics on --port)",
        )
        sp.add_argument(
            "--log-level",
            default="info",
            choices=["debug", "info", "warning", "error"],
            help="the least level logged (default: info)",
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

    from gateway.config import GatewayConfig

    add_config_flags(common("gateway", "the HTTP gateway (FastAPI + uvicorn)"), GatewayConfig,
                     GATEWAY_FLAGS, flags=_PEERS, metavars=_ADDRESSES)  # fmt: skip

    c = common("content", "the content service")
    c.add_argument("--pack", type=Path, help="import this content pack before serving")
    c.add_argument(
        "--sample", action="store_true", help="import the shipped sample pack before serving"
    )
    replicas = c.add_mutually_exclusive_group()
    replicas.add_argument(
        "--replica",
        type=int,
        default=0,
        metavar="K",
        help="serve as replica K of several content processes sharing --port (SO_REUSEPORT) "
        "and --data-dir (one LMDB, many readers); 0: the only one (default: 0)",
    )
    replicas.add_argument(
        "--replicas",
        type=parse_replicas,
        default=1,
        metavar="N|auto",
        help="run N replicas (--replica 1..N) under this process, restarting any that dies: "
        "how a container serves content from several processes; auto: one per four cores, "
        "at most four (default: 1, this process serves)",
    )

    from hub.config import HubSettings
    from registry.config import RegistryConfig
    from user_shard.config import ShardConfig

    add_config_flags(common("registry", "the registry"), RegistryConfig, REGISTRY_FLAGS,
                     flags=_PEERS, metavars=_ADDRESSES)  # fmt: skip
    add_config_flags(common("hub", "the hub"), HubSettings, HUB_FLAGS,
                     flags=_PEERS, metavars=_ADDRESSES)  # fmt: skip
    add_config_flags(common("shard", "a user shard (normally started by the hub)"), ShardConfig,
                     SHARD_FLAGS, flags=_PEERS, metavars=_ADDRESSES)  # fmt: skip


#: The config fields each service takes as flags (named as the fields, see canistry.flags).
REGISTRY_FLAGS = (
    "soft_limit", "hard_limit", "hub_address", "pending_timeout_s", "watch_interval_s",
    "store_full_fraction",
)  # fmt: skip
HUB_FLAGS = (
    "registry_address", "content_address", "shards_dir", "ca_dir", "cap", "soft_limit",
    "hard_limit", "min_shards", "max_shards", "scale_interval_s", "base_allowance", "max_grant",
    "daily_attempt_limit", "daily_token_limit", "warm_pool", "shard_start_timeout_s",
    "start_concurrency", "start_interval_s", "shard_commit_per_request", "spawner",
    "voting_period_s", "proposal_min_stake", "rollout_concurrency", "template_root",
    "enroll_port",
)  # fmt: skip
SHARD_FLAGS = (
    "shard_id", "hub_address", "content_address", "daily_attempt_limit", "daily_token_limit",
    "base_allowance", "group_commit", "map_size", "idempotency_retention_s",
)  # fmt: skip
GATEWAY_FLAGS = (
    "registry_address", "content_address", "hub_address", "workers", "register_rate",
    "register_burst", "max_connections", "header_timeout_s", "body_timeout_s", "cors_origins",
    "app_dir",
)  # fmt: skip
#: Peers' addresses keep the short flags operators know.
_PEERS = {"hub_address": "--hub", "content_address": "--content", "registry_address": "--registry"}
_ADDRESSES = {name: "HOST:PORT" for name in _PEERS}


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
    server = ServerConfig(host=args.host, port=args.port, tls=tls, reuse_port=_replica(args) > 0)
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
            durable=durable,
            **config_values(args, REGISTRY_FLAGS),
        )
        return lambda: RegistryService(rcfg)
    if args.service == "hub":
        from hub.config import HubSettings
        from hub.service import HubService

        if (args.ca_dir is None) != (tls is None):
            raise ServeError("the hub takes --ca-dir with --tls-dir, and neither with --insecure")
        hcfg = HubSettings(
            data_dir=args.data_dir, server=server, durable=durable, **config_values(args, HUB_FLAGS)
        )
        return lambda: HubService(hcfg)
    from user_shard.config import ShardConfig
    from user_shard.service import ShardService

    scfg = ShardConfig(
        data_dir=args.data_dir, server=server, durable=durable, **config_values(args, SHARD_FLAGS)
    )
    return lambda: ShardService(scfg)


def _replica(args: argparse.Namespace) -> int:
    return int(getattr(args, "replica", 0))


def _per_replica(name: str, replica: int) -> str:
    """``service.pid`` for a lone process, ``service-3.pid`` for replica 3."""
    if not replica:
        return name
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{replica}{dot}{suffix}"


@contextlib.contextmanager
def _pid_file(data_dir: Path, replica: int = 0) -> Iterator[None]:
    path = data_dir / _per_replica("service.pid", replica)
    write_atomically(path, f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _run_gateway(args: argparse.Namespace) -> int:
    """The gateway runs uvicorn, which owns its loop, its workers and its signals."""
    from gateway.config import GatewayConfig
    from gateway.server import run_gateway

    try:
        config = GatewayConfig(
            data_dir=args.data_dir,
            host=args.host,
            port=args.port,
            tls=_tls(args),
            **config_values(args, GATEWAY_FLAGS),
        )
    except (ServeError, ValueError) as exc:
        print(f"canistry serve gateway: {exc}", file=sys.stderr)
        return 2
    with _pid_file(args.data_dir):
        return run_gateway(config, ready_file=args.ready_file, log_level=args.log_level)


def run_serve(args: argparse.Namespace) -> int:
    name = args.shard_id if args.service == "shard" else args.service
    logs.configure(_per_replica(name, _replica(args)), level=args.log_level)
    parent = os.environ.pop(PARENT_ENV, "")  # a supervisor's child dies with it
    if parent.isdigit():
        die_with_parent(int(parent))
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.service == "gateway":
        return _run_gateway(args)
    if args.service == "content" and args.replicas > 1:
        with _pid_file(args.data_dir):
            return run_replicas(args, args.replicas)
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
            MetricsServer(
                args.host,
                args.metrics_port,
                data_dir=args.data_dir,
                name=_per_replica(ADDRESS_FILE, _replica(args)),
            ),
            factory() as svc,
        ):
            yield svc

    with _pid_file(args.data_dir, _replica(args)):
        asyncio.run(run_until_signalled(with_metrics, on_ready=ready))
    return 0
