"""A test client that drives the cluster over gRPC the way the gateway does.

It holds the gateway's certificate, so the services authorize it as the
gateway. Register: registry.Assign, then CreateUser on the assigned shard. Submit:
registry.Lookup, then SubmitQuiz on that shard. Plus readers for every
service's own figures, used by the accounting checks.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from canistry.up import Cluster
from content_service.service import load_sample_pack
from protos import (
    hub_pb2,
    hub_pb2_grpc,
    introspect_pb2,
    introspect_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    shard_pb2,
    shard_pb2_grpc,
)
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role
from tests.polling import eventually as poll

SAMPLE = json.loads(load_sample_pack())["units"]


def right_answers(unit: dict[str, Any]) -> dict[str, str]:
    return {q["id"]: q["answer"] for q in unit["quiz"]["questions"]}


def wrong_answers(unit: dict[str, Any]) -> dict[str, str]:
    return {
        q["id"]: next(c["id"] for c in q["choices"] if c["id"] != q["answer"])
        for q in unit["quiz"]["questions"]
    }


def new_principal() -> str:
    return f"test-{uuid.uuid4().hex[:20]}"


@dataclass
class Direct:
    cluster: Cluster

    def __post_init__(self) -> None:
        addr = {n: c.address for n, c in self.cluster.children.items()}
        self.tls = self.cluster.tls("gateway")
        self.registry = registry_pb2_grpc.RegistryStub(
            make_channel(addr["registry"], self.tls, server_role=Role.REGISTRY)
        )
        self.hub_address = addr["hub"]
        self.hub = hub_pb2_grpc.HubStub(make_channel(addr["hub"], self.tls, server_role=Role.HUB))
        self._shards: dict[str, shard_pb2_grpc.UserShardStub] = {}

    def shard(self, address: str) -> shard_pb2_grpc.UserShardStub:
        if address not in self._shards:
            channel = make_channel(address, self.tls, server_role=Role.SHARD)
            self._shards[address] = shard_pb2_grpc.UserShardStub(channel)
        return self._shards[address]

    async def register(self, principal: str, name: str = "Ada") -> registry_pb2.Assignment:
        async with rpc_errors("registry"):
            a = await self.registry.Assign(registry_pb2.AssignRequest(principal=principal))
        profile = shard_pb2.Profile(name=name, email=f"{name.lower()}@example.org",
                                    education="university", gender="unspecified")  # fmt: skip
        async with rpc_errors(a.shard_id):
            await self.shard(a.address).CreateUser(
                shard_pb2.CreateUserRequest(principal=principal, profile=profile)
            )
        return a

    async def lookup(self, principal: str) -> registry_pb2.Assignment:
        async with rpc_errors("registry"):
            return await self.registry.Lookup(registry_pb2.LookupRequest(principal=principal))

    async def submit(
        self, principal: str, unit_id: str, answers: dict[str, str], key: str = ""
    ) -> shard_pb2.SubmitQuizReply:
        a = await self.lookup(principal)
        async with rpc_errors(a.shard_id):
            return await self.shard(a.address).SubmitQuiz(
                shard_pb2.SubmitQuizRequest(
                    principal=principal, unit_id=unit_id, answers=answers, idempotency_key=key
                ),
                timeout=10,
            )

    async def user(self, principal: str) -> shard_pb2.UserReply:
        a = await self.lookup(principal)
        async with rpc_errors(a.shard_id):
            return await self.shard(a.address).GetUser(
                shard_pb2.GetUserRequest(principal=principal)
            )

    async def directory(self) -> registry_pb2.ShardDirectory:
        return await self.registry.ListShards(registry_pb2.ListShardsRequest())

    async def shard_statuses(self) -> dict[str, shard_pb2.ShardStatus]:
        out = {}
        for info in (await self.directory()).shards:
            out[info.shard_id] = await self.shard(info.address).GetShardStatus(
                shard_pb2.GetShardStatusRequest()
            )
        return out

    async def treasury(self) -> hub_pb2.Treasury:
        return await self.hub.GetTreasury(hub_pb2.GetTreasuryRequest())

    async def hub_rpc_counts(self) -> dict[str, int]:
        async with make_channel(self.hub_address, self.tls) as ch:
            counts = await introspect_pb2_grpc.IntrospectStub(ch).GetRpcCounts(
                introspect_pb2.GetRpcCountsRequest()
            )
        return dict(counts.calls)

    async def assert_accounts_balance(self, timeout_s: float = 20.0) -> None:
        """Invariant 2, from the services' own figures, once in-flight grants settle.

        For each shard: hub's grant to it == the shard's granted total ==
        its remaining allowance + all it credited to users; and the hub never
        granted past its cap.
        """

        problems: list[str] = []

        async def balanced() -> bool:
            problems.clear()
            t = await self.treasury()
            hub_grants = {s.shard_id: s.granted for s in t.shards}
            statuses = await self.shard_statuses()
            for shard_id, s in statuses.items():
                if s.granted_total != s.allowance_remaining + s.credited_total:
                    problems.append(
                        f"{shard_id}: granted {s.granted_total} != allowance "
                        f"{s.allowance_remaining} + credited {s.credited_total}"
                    )
                if hub_grants.get(shard_id, 0) != s.granted_total:
                    problems.append(f"{shard_id}: hub says {hub_grants.get(shard_id, 0)}, "
                                    f"shard says {s.granted_total}")  # fmt: skip
            if t.total_granted > t.cap:
                problems.append(f"total granted {t.total_granted} > cap {t.cap}")
            if t.total_granted != sum(hub_grants.values()):
                problems.append("hub total != sum of per-shard grants")
            return not problems

        try:
            await poll(balanced, timeout_s=timeout_s, what="balanced accounts")
        except AssertionError:
            raise AssertionError(f"accounts do not balance: {problems}") from None


def shard_pid(cluster: Cluster, shard_id: str) -> int:
    return int((cluster.layout.shards_dir / shard_id / "service.pid").read_text())


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def is_resource_exhausted(exc: BaseException) -> bool:
    return (
        isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    )


def data_dir_of(cluster: Cluster) -> Path:
    return cluster.config.data_dir
