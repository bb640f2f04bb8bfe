"""Mutual TLS and per-RPC authorization, against a real cluster of processes.

Only shards the hub created can mint: a rogue process with a self-made
certificate cannot even connect, a valid certificate of a shard the hub does
not know is refused, and a real shard cannot ask in another shard's name.
Each role calls only its own RPCs, and nothing answers in plain text.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from canistry.up import Cluster
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
from runtime.errors import ERROR_TRAILER
from runtime.rpc import make_channel
from runtime.tls import ClusterCA, Identity, Role, TLSConfig
from tests.integration.conftest import test_config
from tests.integration.direct import SAMPLE, Direct, poll, right_answers

ROOT = Path(__file__).resolve().parents[2]
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two hub-created shards and no users: nothing mints unless someone breaks in."""
    data_dir = tmp_path_factory.mktemp("security") / "data"
    cluster = Cluster(test_config(data_dir, min_shards=2), out=io.StringIO())
    cluster.boot()
    yield cluster
    cluster.stop()
    cluster.close()


def shard_tls(cluster: Cluster, shard_id: str) -> TLSConfig:
    return TLSConfig.from_dir(cluster.layout.shards_dir / shard_id / "tls")


def forged_tls(cluster: Cluster, tmp_path: Path, identity: Identity) -> TLSConfig:
    """A valid cluster certificate the hub never issued (as if the CA key leaked once)."""
    return ClusterCA.load(cluster.layout.ca_dir).issue(identity, tmp_path / identity.name)


async def settled_treasury(direct: Direct) -> hub_pb2.Treasury:
    """The treasury once both shards hold their first grant (then nothing should move)."""

    async def ready() -> hub_pb2.Treasury | None:
        statuses = await direct.shard_statuses()
        t = await direct.treasury()
        granted = {s.shard_id: s.granted for s in t.shards}
        ok = len(statuses) == 2 and all(
            s.granted_total > 0 and granted.get(i) == s.granted_total for i, s in statuses.items()
        )
        return t if ok else None

    treasury: hub_pb2.Treasury = await poll(ready, what="the shards' first grants")
    return treasury


async def ask_allowance(
    cluster: Cluster, tls: TLSConfig | None, shard_id: str
) -> grpc.aio.AioRpcError:
    async with make_channel(cluster.children["hub"].address, tls, server_role=Role.HUB) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await hub_pb2_grpc.HubStub(ch).RequestAllowance(
                hub_pb2.AllowanceRequest(shard_id=shard_id, seq=10**9, amount=10**9)
            )
    return info.value


def error_code(exc: grpc.aio.AioRpcError) -> str:
    return dict(exc.trailing_metadata() or ()).get(ERROR_TRAILER, "")


async def test_a_rogue_process_with_a_self_made_certificate_cannot_connect(
    cluster: Cluster,
) -> None:
    direct = Direct(cluster)
    before = await settled_treasury(direct)
    argv = [
        sys.executable, "-m", "tests.integration.rogue",
        "--hub", cluster.children["hub"].address,
        "--ca", str(cluster.layout.tls_dir("operator") / "ca.pem"),
        "--shard-id", "shard-0001",
    ]  # fmt: skip
    result = await asyncio.to_thread(
        subprocess.run, argv, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    # The handshake fails: the hub never sees a call, whatever it would say.
    assert outcome == {
        "forged-ca": "UNAVAILABLE",
        "self-signed": "UNAVAILABLE",
        "no-client-cert": "UNAVAILABLE",
        "plaintext": "UNAVAILABLE",
    }
    assert await direct.treasury() == before


async def test_a_valid_certificate_of_a_shard_the_hub_did_not_create_cannot_mint(
    cluster: Cluster, tmp_path: Path
) -> None:
    direct = Direct(cluster)
    before = await settled_treasury(direct)
    stranger = forged_tls(cluster, tmp_path, Identity(Role.SHARD, "shard-9999"))
    denied = await ask_allowance(cluster, stranger, "shard-9999")
    assert denied.code() == DENIED and error_code(denied) == "unknown-shard"
    denied = await ask_allowance(cluster, stranger, "shard-0001")
    assert denied.code() == DENIED and error_code(denied) == "not-this-shard"
    assert await direct.treasury() == before


async def test_a_shard_cannot_ask_in_another_shards_name(cluster: Cluster) -> None:
    direct = Direct(cluster)
    before = await settled_treasury(direct)
    denied = await ask_allowance(cluster, shard_tls(cluster, "shard-0001"), "shard-0002")
    assert denied.code() == DENIED and error_code(denied) == "not-this-shard"
    # Neither the gateway nor the operator may ask at all.
    for name in ("gateway", "operator"):
        denied = await ask_allowance(cluster, cluster.tls(name), "shard-0001")
        assert denied.code() == DENIED and error_code(denied) == "not-authorized"
    assert await direct.treasury() == before


async def test_each_role_calls_only_its_own_rpcs(cluster: Cluster) -> None:
    direct = Direct(cluster)
    addr = {n: c.address for n, c in cluster.children.items()}
    directory = await direct.directory()
    shard_address = directory.shards[0].address

    # The gateway may not register shards: only the hub does.
    async with make_channel(addr["registry"], cluster.tls("gateway")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await registry_pb2_grpc.RegistryStub(ch).RegisterShard(
                registry_pb2.RegisterShardRequest(shard_id="shard-0666", address="127.0.0.1:9")
            )
    assert info.value.code() == DENIED
    assert await direct.directory() == directory

    # The operator may read a shard's status but not act for a user.
    async with make_channel(shard_address, cluster.tls("operator")) as ch:
        stub = shard_pb2_grpc.UserShardStub(ch)
        await stub.GetShardStatus(shard_pb2.GetShardStatusRequest())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.SubmitQuiz(shard_pb2.SubmitQuizRequest(principal="p", unit_id="u"))
    assert info.value.code() == DENIED

    # Only shards verify quizzes; a shard may not read units or act for users.
    unit = SAMPLE[0]
    verify = content_pb2.VerifyQuizRequest(unit_id=unit["id"], answers=right_answers(unit))
    async with make_channel(addr["content"], cluster.tls("gateway")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await content_pb2_grpc.ContentStub(ch).VerifyQuiz(verify)
    assert info.value.code() == DENIED
    shard = shard_tls(cluster, "shard-0001")
    async with make_channel(addr["content"], shard) as ch:
        assert (await content_pb2_grpc.ContentStub(ch).VerifyQuiz(verify)).passed
    async with make_channel(shard_address, shard) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await shard_pb2_grpc.UserShardStub(ch).GetUser(shard_pb2.GetUserRequest(principal="p"))
    assert info.value.code() == DENIED


async def test_a_client_checks_the_role_of_the_server_it_dials(cluster: Cluster) -> None:
    # The registry's certificate is a good cluster certificate, but not a hub's.
    async with make_channel(
        cluster.children["registry"].address, cluster.tls("operator"), server_role=Role.HUB
    ) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_nothing_answers_in_plain_text(cluster: Cluster) -> None:
    # Every gRPC service; the gateway is the HTTP front door and speaks no gRPC.
    addresses = [c.address for name, c in cluster.children.items() if name != "gateway"]
    addresses += [s.address for s in (await Direct(cluster).directory()).shards]
    assert len(addresses) == 5
    for address in addresses:
        async with make_channel(address) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(), timeout=3
                )
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, address
