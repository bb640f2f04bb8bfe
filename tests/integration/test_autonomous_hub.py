"""The autonomous hub, end to end on a real cluster of processes.

No admin RPC exists (reflection lists the hub's methods, and none sets
anything); shards are spawned by the hub alone, from its warm pool or cold;
only shards the hub created can mint; the treasury's cap holds. Run just
this story with ``scripts/test_autonomous_hub.sh`` (``-m autonomous_hub``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from canistry.up import Cluster, UpConfig
from protos import hub_pb2, hub_pb2_grpc
from runtime.errors import ERROR_TRAILER
from runtime.rpc import make_channel
from runtime.tls import ClusterCA, Identity, Role, TLSConfig
from tests.integration.direct import SAMPLE, Direct, new_principal, poll, right_answers
from tests.integration.hubview import hub_records, step_name

pytestmark = [pytest.mark.autonomous_hub, pytest.mark.timeout(180)]

HUB = "canistry.hub.v1.Hub"
INTROSPECT = "canistry.runtime.v1.Introspect"
#: Every hub RPC: shards ask for allowance, anyone asks for a capacity check, the rest read.
HUB_METHODS = {"RequestAllowance", "EnsureCapacity", "GetTreasury", "ListHubShards", "GetHubConfig"}
#: Governance RPCs and the fields of their requests: none sets anything. A proposal
#: only asks; the hub changes what it runs only by carrying out one stakers adopted.
GOVERNANCE_FIELDS = {
    "CreateProposal": {"proposer", "proposer_stake", "action", "title", "summary"},
    "GetProposal": {"id"},
    "ListProposals": {"before", "limit"},
    "ReportVotes": {"shard_id", "votes"},
}
#: What a proposal may ask for: the kinds of docs/design.md §4, nothing else.
ACTION_FIELDS = {"kind", "shard_id", "template", "template_version"}
#: The only request that carries fields, and what they are: a shard's own ask.
ALLOWANCE_FIELDS = {"shard_id", "seq", "amount", "staked_delta"}
CAP = 1000
BASE_ALLOWANCE = 300


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Soft limit 2 users, hard limit 3, a warm pool of 1, and a treasury of 1,000 tokens."""
    config = UpConfig(
        data_dir=tmp_path_factory.mktemp("autonomous") / "data",
        port=0,
        soft_limit=2,
        hard_limit=3,
        warm_pool=1,
        cap=CAP,
        base_allowance=BASE_ALLOWANCE,
        scale_interval_s=1.0,
    )
    cluster = Cluster(config, out=io.StringIO())
    cluster.boot()
    yield cluster
    cluster.stop()
    cluster.close()


async def reflect(
    channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    await call.write(request)
    reply: reflection_pb2.ServerReflectionResponse = await call.read()
    await call.done_writing()
    return reply


async def described(
    channel: grpc.aio.Channel, service: str
) -> tuple[descriptor_pb2.ServiceDescriptorProto, dict[str, descriptor_pb2.DescriptorProto]]:
    """The service as the server describes it, and every message type by full name."""
    reply = await reflect(
        channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
    )
    messages: dict[str, descriptor_pb2.DescriptorProto] = {}
    found = None
    for raw in reply.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        for message in file.message_type:
            messages[f".{file.package}.{message.name}"] = message
        for svc in file.service:
            if f"{file.package}.{svc.name}" == service:
                found = svc
    assert found is not None, f"reflection does not describe {service}"
    return found, messages


async def test_no_rpc_can_change_what_the_hub_was_set_up_with(cluster: Cluster) -> None:
    hub = cluster.children["hub"].address
    async with make_channel(hub, cluster.tls("operator"), server_role=Role.HUB) as channel:
        listed = await reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        services = {s.name for s in listed.list_services_response.service}
        hub_service, messages = await described(channel, HUB)
        introspect, _ = await described(channel, INTROSPECT)
        config = await hub_pb2_grpc.HubStub(channel).GetHubConfig(hub_pb2.GetHubConfigRequest())
    print(f"\n  the hub serves {sorted(services)}")
    assert {s for s in services if not s.startswith("grpc.")} == {HUB, INTROSPECT}

    methods = {m.name: m for m in hub_service.method}
    print(f"  {HUB} methods: {sorted(methods)}")
    assert set(methods) == HUB_METHODS | set(GOVERNANCE_FIELDS)
    assert [m.name for m in introspect.method] == ["GetRpcCounts"]
    for name, method in methods.items():
        fields = {f.name for f in messages[method.input_type].field}
        if name in GOVERNANCE_FIELDS:
            assert fields == GOVERNANCE_FIELDS[name], name
            continue
        # A request with no fields cannot carry a setting; the one that has some is a
        # shard's own allowance ask, which the hub holds to its id, seq and the cap.
        assert fields == (ALLOWANCE_FIELDS if name == "RequestAllowance" else set()), name
    assert all(m.input_type != ".canistry.hub.v1.HubConfig" for m in methods.values())
    action = {f.name for f in messages[".canistry.hub.v1.ProposalAction"].field}
    assert action == ACTION_FIELDS
    policy = {f.name for f in messages[".canistry.hub.v1.HubConfig"].field}
    governed = set().union(*GOVERNANCE_FIELDS.values(), action)
    # The one setting a proposal may name is the shard template an upgrade asks for,
    # and the hub takes it only by carrying out an upgrade stakers adopted.
    assert governed & policy <= {"template_version"}, "a governance request names a setting"

    # What it was set up with, for good.
    assert (config.cap, config.soft_limit, config.hard_limit, config.warm_pool) == (CAP, 2, 3, 1)
    assert config.base_allowance == BASE_ALLOWANCE and config.spawner == "process"


async def test_the_hub_spawns_shards_by_itself(cluster: Cluster) -> None:
    direct = Direct(cluster)

    async def steps() -> dict[str, str]:
        return {i: step_name(r) for i, r in (await hub_records(direct)).items()}

    async def listed() -> list[str]:
        return [s.shard_id for s in (await direct.directory()).shards]

    async def has(want: dict[str, str]) -> bool:
        now = await steps()
        return all(now.get(i) == s for i, s in want.items())

    await poll(lambda: has({"shard-0001": "REGISTERED", "shard-0002": "WARM"}), what="warm pool")
    assert await listed() == ["shard-0001"]
    print(f"\n  at start: {await steps()}")

    # Users arrive; nobody calls EnsureCapacity or anything else on the hub.
    for _ in range(2):
        await direct.register(new_principal())

    async def serving(n: int) -> bool:
        return len(await listed()) == n

    await poll(lambda: serving(2), what="a second shard in service")
    print(f"  2 users on shard-0001 (the soft limit): {await steps()}")
    assert (await hub_records(direct))["shard-0002"].warm, "it came from the warm pool"
    for _ in range(2):
        assert (await direct.register(new_principal())).shard_id == "shard-0002"
    await poll(lambda: serving(3), what="a third shard in service")
    print(f"  2 users on shard-0002: {await steps()}")
    assert await listed() == ["shard-0001", "shard-0002", "shard-0003"]
    records = await hub_records(direct)
    assert all(records[s].step == hub_pb2.SPAWN_STEP_REGISTERED for s in await listed())
    for shard_id in await listed():
        r = records[shard_id]
        how = "from the warm pool" if r.warm else "cold"
        print(f"  {shard_id} in service {how}, {r.registered_at_ms - r.decided_at_ms} ms after")


async def test_only_shards_the_hub_created_can_mint(cluster: Cluster, tmp_path: Path) -> None:
    direct = Direct(cluster)
    records = await hub_records(direct)
    created = {i for i, r in records.items() if r.step != hub_pb2.SPAWN_STEP_ABANDONED}
    treasury = await direct.treasury()
    minted = {s.shard_id for s in treasury.shards if s.granted > 0}
    print(f"\n  hub-created shards {sorted(created)}; shards holding grants {sorted(minted)}")
    assert minted and minted <= created
    assert {s.shard_id for s in (await direct.directory()).shards} <= created

    # A certificate of the cluster CA (as if its key had leaked once) for a shard the
    # hub never created; a real shard asking in another's name; the gateway.
    stranger = ClusterCA.load(cluster.layout.ca_dir).issue(
        Identity(Role.SHARD, "shard-9999"), tmp_path / "stranger"
    )
    own = TLSConfig.from_dir(cluster.layout.shards_dir / "shard-0001" / "tls")
    attempts = [
        (stranger, "shard-9999", "unknown-shard"),
        (own, "shard-0002", "not-this-shard"),
        (cluster.tls("gateway"), "shard-0001", "not-authorized"),
    ]
    hub = cluster.children["hub"].address
    for tls, shard_id, code in attempts:
        async with make_channel(hub, tls, server_role=Role.HUB) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await hub_pb2_grpc.HubStub(ch).RequestAllowance(
                    hub_pb2.AllowanceRequest(shard_id=shard_id, seq=10**9, amount=10**9)
                )
        trailer = dict(info.value.trailing_metadata() or ()).get(ERROR_TRAILER)
        assert (info.value.code(), trailer) == (grpc.StatusCode.PERMISSION_DENIED, code)
        print(f"  RequestAllowance for {shard_id} as {tls.identity()}: refused ({code})")
    after = await direct.treasury()
    assert "shard-9999" not in {s.shard_id for s in after.shards}
    assert after.total_granted <= CAP


async def test_the_cap_holds(cluster: Cluster) -> None:
    direct = Direct(cluster)
    users = [new_principal() for _ in range(2)]
    for p in users:
        await direct.register(p)
    earned = 0
    for p in users:
        for unit in SAMPLE[:20]:  # the daily attempt limit
            earned += (await direct.submit(p, unit["id"], right_answers(unit))).reward

    async def cap_reached() -> hub_pb2.Treasury | None:
        t = await direct.treasury()
        return t if t.total_granted == CAP else None

    treasury: hub_pb2.Treasury = await poll(cap_reached, what="the hub granting its whole cap")
    statuses = await direct.shard_statuses()
    credited = sum(s.credited_total for s in statuses.values())
    pending = [(await direct.user(p)).user.pending for p in users]
    print(
        f"\n  earned {earned}; granted {treasury.total_granted} of cap {treasury.cap}; "
        f"credited {credited}; pending {pending}"
    )
    assert treasury.cap == CAP and treasury.total_granted == CAP
    assert sum(s.granted for s in treasury.shards) == CAP
    assert credited <= CAP and any(pending), "past the cap, rewards wait as pending"
    await direct.assert_accounts_balance()
