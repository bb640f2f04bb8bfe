"""``canistry status``: one readable picture of a running cluster.

It asks the hub for its config (which names the registry and content
service), then each service for its own figures. Nothing here writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TextIO

from canistry.layout import CORE_SERVICES, ClusterLayout
from protos import (
    content_pb2,
    content_pb2_grpc,
    hub_pb2,
    hub_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    shard_pb2,
    shard_pb2_grpc,
)
from runtime.errors import CanistryError
from runtime.metrics import ADDRESS_FILE
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role, TLSConfig

__all__ = ["ClusterStatus", "NoCluster", "fetch_status", "metrics_endpoints", "render_status"]

_STATE = {
    registry_pb2.SHARD_STATE_ACTIVE: "active",
    registry_pb2.SHARD_STATE_FULL: "full",
    registry_pb2.SHARD_STATE_DISABLED: "disabled",
}


class NoCluster(CanistryError):
    code = "no-cluster"


@dataclass
class ShardRow:
    shard_id: str
    address: str
    state: str
    users: int
    allowance_left: int | None = None
    staked: int | None = None
    pending: int | None = None
    granted: int | None = None
    version: str = ""
    """The canistry version the shard process says it runs."""


@dataclass
class ClusterStatus:
    hub: str
    config: hub_pb2.HubConfig
    treasury: hub_pb2.Treasury
    shards: list[ShardRow] = field(default_factory=list)
    unit_count: int | None = None
    subjects: list[str] = field(default_factory=list)


async def _shard_row(info: registry_pb2.ShardInfo, tls: TLSConfig | None) -> ShardRow:
    row = ShardRow(info.shard_id, info.address, _STATE.get(info.state, "unknown"), info.users)
    try:
        async with (
            make_channel(info.address, tls, server_role=Role.SHARD, shard_id=info.shard_id) as ch,
            rpc_errors(info.shard_id),
        ):
            s = await shard_pb2_grpc.UserShardStub(ch).GetShardStatus(
                shard_pb2.GetShardStatusRequest(), timeout=2
            )
    except CanistryError:
        row.state += " (unreachable)"
        return row
    row.allowance_left, row.staked = s.allowance_remaining, s.credited_total
    row.pending, row.granted = s.pending_total, s.granted_total
    row.version = s.version
    return row


async def _warm_rows(hub: str, tls: TLSConfig | None, timeout_s: float) -> list[ShardRow]:
    """The warm pool: started and healthy, not yet registered, so the registry lists none."""
    async with make_channel(hub, tls, server_role=Role.HUB) as ch, rpc_errors("hub"):
        records = await hub_pb2_grpc.HubStub(ch).ListHubShards(
            hub_pb2.ListHubShardsRequest(), timeout=timeout_s
        )
    return [
        ShardRow(r.shard_id, r.address, "warm", 0)
        for r in records.shards
        if r.step == hub_pb2.SPAWN_STEP_WARM
    ]


async def fetch_status(
    hub: str, tls: TLSConfig | None = None, timeout_s: float = 3.0
) -> ClusterStatus:
    """Gather the figures, presenting ``tls`` (the operator's certificate) to each service.

    Raises :class:`NoCluster` if no hub answers at ``hub``.
    """
    try:
        async with make_channel(hub, tls, server_role=Role.HUB) as ch, rpc_errors("hub"):
            stub = hub_pb2_grpc.HubStub(ch)
            config = await stub.GetHubConfig(hub_pb2.GetHubConfigRequest(), timeout=timeout_s)
            treasury = await stub.GetTreasury(hub_pb2.GetTreasuryRequest(), timeout=timeout_s)
    except CanistryError as exc:
        raise NoCluster(f"no cluster answers at {hub} ({exc.message})") from exc
    status = ClusterStatus(hub=hub, config=config, treasury=treasury)
    async with (
        make_channel(config.registry_address, tls, server_role=Role.REGISTRY) as ch,
        rpc_errors("registry"),
    ):
        directory = await registry_pb2_grpc.RegistryStub(ch).ListShards(
            registry_pb2.ListShardsRequest(), timeout=timeout_s
        )
    status.shards = list(await asyncio.gather(*(_shard_row(s, tls) for s in directory.shards)))
    status.shards += await _warm_rows(hub, tls, timeout_s)
    try:
        async with (
            make_channel(config.content_address, tls, server_role=Role.CONTENT) as ch,
            rpc_errors("content"),
        ):
            stats = await content_pb2_grpc.ContentStub(ch).GetContentStats(
                content_pb2.GetContentStatsRequest(), timeout=timeout_s
            )
        status.unit_count, status.subjects = stats.unit_count, list(stats.subjects)
    except CanistryError:
        pass
    return status


def metrics_endpoints(layout: ClusterLayout) -> list[tuple[str, str]]:
    """``(service, URL)`` of every ``/metrics`` a cluster at ``layout`` serves now.

    Each service process writes where it serves them (``metrics.addr``) and
    removes the file when it stops; the gateway serves them on its own port.
    """
    found = []
    for name in CORE_SERVICES:
        # One file per process: content replicas write metrics-2.addr, metrics-3.addr, ...
        for path in sorted(layout.service_dir(name).glob(ADDRESS_FILE.replace(".", "*."))):
            replica = path.stem.removeprefix("metrics").lstrip("-")
            found.append((f"{name}-{replica}" if replica else name, path))
    for shard_dir in sorted(p for p in layout.shards_dir.glob("*") if p.is_dir()):
        found.append((shard_dir.name, shard_dir / ADDRESS_FILE))
    found.append(("gateway", layout.ready_file("gateway")))
    out = []
    for name, path in found:
        try:
            address = path.read_text().strip()
        except FileNotFoundError:
            continue
        if address:
            out.append((name, f"http://{address}/metrics"))
    return out


def _num(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def render_status(status: ClusterStatus, out: TextIO) -> None:
    cfg, t = status.config, status.treasury
    print(
        f"Hub {status.hub}   soft/hard limit {cfg.soft_limit:,}/{cfg.hard_limit:,} users", file=out
    )
    print("", file=out)
    headers = ("SHARD", "ADDRESS", "STATE", "VERSION", "USERS", "ALLOWANCE LEFT", "STAKED",
               "PENDING")  # fmt: skip
    rows = [
        (r.shard_id, r.address, r.state, r.version or "-", _num(r.users), _num(r.allowance_left),
         _num(r.staked), _num(r.pending))
        for r in status.shards
    ]  # fmt: skip
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    line = "  ".join(f"{{:<{w}}}" if i < 4 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*headers), file=out)
    for row in rows:
        print(line.format(*row), file=out)
    if not rows:
        print("(no shards registered yet)", file=out)
    staked_sum = sum(r.staked or 0 for r in status.shards)
    print("", file=out)
    print(
        f"Treasury  granted {t.total_granted:,} of cap {t.cap:,} "
        f"({100 * t.total_granted / t.cap if t.cap else 0:.4f}%)   total staked {t.total_staked:,} "
        f"(shards report {staked_sum:,})   allowance calls {t.allowance_calls:,}",
        file=out,
    )
    units = "unreachable" if status.unit_count is None else f"{status.unit_count} units"
    subjects = f" in {', '.join(status.subjects)}" if status.subjects else ""
    print(f"Content   {units}{subjects}", file=out)
