"""Fuzz every gRPC method of every service of a real cluster over mutual TLS.

Each method gets malformed, random and well-formed-but-hostile requests
(``tests.fuzz.messages``) as raw bytes, from a caller whose role may call it
(so the bytes reach the decoder and the handler) and once from a role that
may not. Every answer must be one a client can act on: never ``UNKNOWN``
(a Python exception escaped, its name in the details) nor ``INTERNAL`` (a
bug), and every process must still be alive and healthy afterwards. An
oversized request is ``RESOURCE_EXHAUSTED``.

CI runs a short campaign (``CASES`` per method); ``CANISTRY_LONG=1`` runs
hundreds. ``CANISTRY_FUZZ_SEED`` replays a campaign.
"""

from __future__ import annotations

import collections
import os
import random
from dataclasses import dataclass

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2

from canistry.up import Cluster
from content_service.grpc_edge import ACCESS as CONTENT_ACCESS
from hub.grpc_edge import ACCESS as HUB_ACCESS
from protos import content_pb2, hub_pb2, introspect_pb2, registry_pb2, shard_pb2
from registry.grpc_edge import ACCESS as REGISTRY_ACCESS
from runtime import authz
from runtime.rpc import make_channel, wait_healthy
from runtime.tls import Role, TLSConfig
from tests.fuzz.messages import cases
from tests.integration.conftest import MakeCluster
from tests.integration.direct import Direct, shard_pid
from user_shard.grpc_edge import ACCESS as SHARD_ACCESS

LONG = os.environ.get("CANISTRY_LONG") == "1"
CASES = 300 if LONG else 20
SEED = int(os.environ.get("CANISTRY_FUZZ_SEED", "20261130"))

#: Answers a client can act on. Anything else (UNKNOWN, INTERNAL, and in a
#: healthy cluster UNAVAILABLE or DEADLINE_EXCEEDED) is a finding.
EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
}
OVERSIZED = 64 * 1024 * 1024 + 1  # past ServerConfig.max_receive_bytes


@dataclass(frozen=True)
class Target:
    name: str
    """Cluster child name, or the shard's id."""
    address: str
    role: Role
    services: tuple[tuple[ServiceDescriptor, authz.Rules], ...]
    shard_id: str | None = None


def _service(module: object, name: str) -> ServiceDescriptor:
    return module.DESCRIPTOR.services_by_name[name]  # type: ignore[attr-defined,no-any-return]


_BUILTIN = tuple(
    (svc, {m.name: authz.ANY for m in svc.methods})
    for svc in (_service(health_pb2, "Health"), _service(introspect_pb2, "Introspect"))
)


def _targets(cluster: Cluster, shards: list[tuple[str, str]]) -> list[Target]:
    addr = {n: c.address for n, c in cluster.children.items()}
    core = [
        Target("content", addr["content"], Role.CONTENT,
               ((_service(content_pb2, "Content"), CONTENT_ACCESS), *_BUILTIN)),
        Target("registry", addr["registry"], Role.REGISTRY,
               ((_service(registry_pb2, "Registry"), REGISTRY_ACCESS), *_BUILTIN)),
        Target("hub", addr["hub"], Role.HUB, ((_service(hub_pb2, "Hub"), HUB_ACCESS), *_BUILTIN)),
    ]  # fmt: skip
    shard_id, address = shards[0]
    core.append(
        Target(shard_id, address, Role.SHARD,
               ((_service(shard_pb2, "UserShard"), SHARD_ACCESS), *_BUILTIN), shard_id)
    )  # fmt: skip
    return core


def _certs(cluster: Cluster, shard_id: str) -> dict[Role, TLSConfig]:
    certs = {Role(n): cluster.tls(n) for n in ("content", "registry", "hub", "gateway", "operator")}
    certs[Role.SHARD] = TLSConfig.from_dir(cluster.layout.shards_dir / shard_id / "tls")
    return certs


class Campaign:
    def __init__(self, certs: dict[Role, TLSConfig]) -> None:
        self.certs = certs
        self.channels: dict[tuple[str, Role], grpc.aio.Channel] = {}
        self.seen: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.findings: list[str] = []

    def channel(self, target: Target, caller: Role) -> grpc.aio.Channel:
        key = (target.name, caller)
        if key not in self.channels:
            self.channels[key] = make_channel(
                target.address,
                self.certs[caller],
                server_role=target.role,
                shard_id=target.shard_id,
            )
        return self.channels[key]

    async def send(
        self, target: Target, caller: Role, method: str, payload: bytes, what: str
    ) -> grpc.StatusCode:
        call = self.channel(target, caller).unary_unary(
            method, request_serializer=None, response_deserializer=None
        )
        try:
            await call(payload, timeout=15)
            code, details = grpc.StatusCode.OK, ""
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
        self.seen[(method, caller.value, code.name)] += 1
        if code not in EXPECTED or "Error" in details or "Traceback" in details:
            self.findings.append(
                f"{method} as {caller} ({what}, {len(payload)} bytes: {payload[:48]!r}): "
                f"{code.name} {details[:200]!r}"
            )
        return code

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


def _methods(target: Target) -> list[tuple[str, type, frozenset[Role]]]:
    out = []
    for service, rules in target.services:
        for m in service.methods:
            if m.client_streaming or m.server_streaming:
                continue  # streams are open to ANY and carry no request worth fuzzing
            cls = message_factory.GetMessageClass(m.input_type)
            out.append((f"/{service.full_name}/{m.name}", cls, frozenset(rules[m.name])))
    return out


async def test_every_method_answers_hostile_bytes_with_a_status_and_stays_up(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    direct = Direct(cluster)
    shards = [(s.shard_id, s.address) for s in (await direct.directory()).shards]
    assert shards
    certs = _certs(cluster, shards[0][0])
    targets = _targets(cluster, shards)
    rng = random.Random(SEED)
    campaign = Campaign(certs)
    methods = 0
    try:
        for target in targets:
            for method, cls, allowed in _methods(target):
                methods += 1
                right = sorted(allowed & set(certs))[0]
                for kind, payload in cases(cls, rng, CASES):
                    await campaign.send(target, right, method, payload, kind)
                wrong = sorted(set(certs) - allowed)
                if wrong:
                    for caller in wrong:
                        code = await campaign.send(
                            target, caller, method, b"\xff" * 8, "wrong role"
                        )
                        assert code == grpc.StatusCode.PERMISSION_DENIED, (method, caller)
            # One request past the size limit per service, from an allowed caller.
            method, _, allowed = _methods(target)[0]
            right = sorted(allowed & set(certs))[0]
            code = await campaign.send(target, right, method, b"\x00" * OVERSIZED, "oversized")
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (target.name, code)
    finally:
        await campaign.close()
    summary = "\n".join(f"{n:4d} {m} as {r}: {c}" for (m, r, c), n in sorted(campaign.seen.items()))
    assert not campaign.findings, (
        f"seed {SEED}: {len(campaign.findings)} findings:\n"
        + "\n".join(campaign.findings[:40])
        + f"\n\nall answers:\n{summary}"
    )
    assert methods >= 28  # 5 content + 4 registry + 5 hub + 6 shard, and built-ins on each
    # Every process is alive and serving after the campaign.
    for name, child in cluster.children.items():
        assert child.exited() is None, f"{name} exited"
    for shard_id, _ in shards:
        os.kill(shard_pid(cluster, shard_id), 0)
    operator = certs[Role.OPERATOR]
    for target in targets:
        await wait_healthy(target.address, tls=operator, server_role=target.role, timeout_s=10)
    assert (await direct.treasury()).total_granted <= (await direct.treasury()).cap
