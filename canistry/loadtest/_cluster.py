"""What the cluster itself counted, read before and after a run and sampled during it.

Two sources, neither counted as load:

- the gateway's ``GET /v1/cluster``: each shard's users and capacity (open to
  anyone, cached by the gateway for a couple of seconds);
- with the cluster's data directory (its operator certificate and
  ``cluster.json``): the hub's ``Treasury.allowance_calls``, each shard's
  ``GetShardStatus`` (found through the registry's directory: users,
  rewarded submissions, hub calls) and the ``SubmitQuiz`` RPCs each shard
  counted on its own ``/metrics``.

A figure that could not be read is None, never a guess.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from canistry.client import ApiError, AsyncClient
from canistry.layout import ClusterLayout
from runtime.metrics import ADDRESS_FILE

__all__ = ["ClusterReader", "ClusterSnapshot", "ShardCounters", "shard_figures"]

TIMEOUT_S = 3.0
_SUBMITS = re.compile(
    r'^canistry_rpc_requests_total\{(?=[^}]*method="UserShard/SubmitQuiz")[^}]*\}\s+([0-9.eE+]+)',
    re.MULTILINE,
)


@dataclass
class ShardCounters:
    """One shard's figures at one moment."""

    users: int
    capacity: int = 0
    state: str = ""
    submissions: int | None = None
    """``SubmitQuiz`` RPCs the shard answered, whatever the outcome (its ``/metrics``)."""
    rewarded: int | None = None
    """Submissions that earned a reward (``GetShardStatus.rewarded_submissions``)."""
    hub_calls: int | None = None
    """Allowance requests the shard sent the hub (``GetShardStatus.hub_calls``)."""


@dataclass
class ClusterSnapshot:
    shards: dict[str, ShardCounters] = field(default_factory=dict)
    allowance_calls: int | None = None
    """The hub's count of allowance calls from all shards (``Treasury.allowance_calls``)."""
    source: str = "none"
    """Where the figures came from: ``cluster`` (the services), ``gateway`` or ``none``."""


class ClusterReader:
    """Reads the cluster's own counters through the gateway and, given one, the data dir."""

    def __init__(self, api: AsyncClient, data_dir: Path | None) -> None:
        self.api = api
        self.layout = ClusterLayout(data_dir) if data_dir is not None else None
        self.note: str | None = None
        """Why the services' own counters could not be read, said once."""

    async def snapshot(self) -> ClusterSnapshot:
        """Every figure that can be read now."""
        if self.layout is not None:
            try:
                return await self._from_services(self.layout, full=True)
            except Exception as exc:  # a cluster going away mid-run: fall back, say why
                self.note = f"the cluster's own counters could not be read: {exc}"
        return await self._from_gateway()

    async def fill(self) -> dict[str, tuple[int, int]]:
        """Users and capacity of each shard now (for the fill over time); empty if unknown."""
        snap = ClusterSnapshot()
        if self.layout is not None:
            try:
                snap = await self._from_services(self.layout, full=False)
            except Exception:
                snap = await self._from_gateway()
        else:
            snap = await self._from_gateway()
        return {sid: (s.users, s.capacity) for sid, s in snap.shards.items()}

    async def _from_gateway(self) -> ClusterSnapshot:
        try:
            info = await self.api.cluster()
        except (ApiError, httpx.HTTPError, KeyError, ValueError, TypeError):
            return ClusterSnapshot()
        shards = {s.id: ShardCounters(s.users, s.capacity, s.state) for s in info.shards}
        return ClusterSnapshot(shards=shards, source="gateway")

    async def _from_services(self, layout: ClusterLayout, *, full: bool) -> ClusterSnapshot:
        from protos import hub_pb2, hub_pb2_grpc, registry_pb2, registry_pb2_grpc
        from runtime.rpc import make_channel
        from runtime.tls import Role, TLSConfig

        hub = layout.hub_address()
        if hub is None:
            raise RuntimeError(f"no hub in {layout.cluster_file}")
        tls = TLSConfig.from_dir(layout.tls_dir("operator"))
        snap = ClusterSnapshot(source="cluster")
        async with make_channel(hub, tls, server_role=Role.HUB) as ch:
            stub = hub_pb2_grpc.HubStub(ch)
            config = await stub.GetHubConfig(hub_pb2.GetHubConfigRequest(), timeout=TIMEOUT_S)
            if full:
                treasury = await stub.GetTreasury(hub_pb2.GetTreasuryRequest(), timeout=TIMEOUT_S)
                snap.allowance_calls = treasury.allowance_calls
        async with make_channel(config.registry_address, tls, server_role=Role.REGISTRY) as ch:
            directory = await registry_pb2_grpc.RegistryStub(ch).ListShards(
                registry_pb2.ListShardsRequest(), timeout=TIMEOUT_S
            )
        for info in directory.shards:
            state = registry_pb2.ShardState.Name(info.state).removeprefix("SHARD_STATE_").lower()
            snap.shards[info.shard_id] = ShardCounters(
                info.users, info.hard_limit or directory.hard_limit, state
            )
        if full:
            await asyncio.gather(
                *(
                    self._shard_status(layout, tls, info.shard_id, info.address, snap)
                    for info in directory.shards
                )
            )
        return snap

    async def _shard_status(
        self, layout: ClusterLayout, tls: Any, shard_id: str, address: str, snap: ClusterSnapshot
    ) -> None:
        from protos import shard_pb2, shard_pb2_grpc
        from runtime.rpc import make_channel
        from runtime.tls import Role

        counters = snap.shards[shard_id]
        try:
            async with make_channel(address, tls, server_role=Role.SHARD, shard_id=shard_id) as ch:
                status = await shard_pb2_grpc.UserShardStub(ch).GetShardStatus(
                    shard_pb2.GetShardStatusRequest(), timeout=TIMEOUT_S
                )
        except Exception:
            return
        counters.users = status.users
        counters.rewarded = status.rewarded_submissions
        counters.hub_calls = status.hub_calls
        counters.submissions = await _submissions(
            _read(layout.shards_dir / shard_id / ADDRESS_FILE)
        )


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


async def _submissions(address: str | None) -> int | None:
    """``SubmitQuiz`` RPCs counted on the shard's ``/metrics`` at ``address``; None if unknown."""
    if address is None:
        return None
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S, transport=httpx.AsyncHTTPTransport()) as h:
            text = (await h.get(f"http://{address}/metrics")).text
    except httpx.HTTPError:
        return None
    return int(sum(float(m) for m in _SUBMITS.findall(text)))


def _delta(after: int | None, before: int | None) -> int | None:
    if after is None:
        return None
    return after - (before or 0)


def shard_figures(before: ClusterSnapshot, after: ClusterSnapshot) -> dict[str, Any]:
    """Per shard, and for the hub, what changed between the snapshots (JSON-ready).

    A shard that appeared during the run started from nothing.
    """
    shards: dict[str, dict[str, Any]] = {}
    for sid in sorted(set(before.shards) | set(after.shards)):
        b = before.shards.get(sid) or ShardCounters(0)
        a = after.shards.get(sid) or b
        shards[sid] = {
            "state": a.state,
            "users": a.users,
            "users_added": a.users - b.users,
            "capacity": a.capacity,
            "submissions": _delta(a.submissions, b.submissions),
            "rewarded_submissions": _delta(a.rewarded, b.rewarded),
            "hub_calls": _delta(a.hub_calls, b.hub_calls),
        }
    calls = _delta(after.allowance_calls, before.allowance_calls)
    return {
        "source": after.source,
        "shards": shards,
        "shard_count": len(shards),
        "hub": {
            "allowance_calls_before": before.allowance_calls,
            "allowance_calls_after": after.allowance_calls,
            "allowance_calls_during": calls,
        },
    }
