"""A TLS hub issues each shard it creates a certificate, and holds shards to their own name."""

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.service import HubService
from hub.treasury import NotThisShard
from protos import hub_pb2, hub_pb2_grpc
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime import rpc
from runtime.authz import NotAuthorized
from runtime.errors import PermissionDenied
from runtime.rpc import ServerConfig
from runtime.tls import ClusterCA, Identity, Role, TLSConfig
from tests.hub._support import hub_settings, shards_up
from tests.hub.fake_spawner import FakeSpawner
from tests.polling import eventually

SHARD_1 = Identity(Role.SHARD, "shard-0001")


@pytest.fixture
def ca(tmp_path: Path) -> ClusterCA:
    return ClusterCA.open(tmp_path / "ca")


def cert(ca: ClusterCA, tmp_path: Path, role: Role) -> TLSConfig:
    return ca.issue(Identity(role, role.value), tmp_path / "tls" / role.value)


@pytest.fixture
async def registry(tmp_path: Path, ca: ClusterCA) -> AsyncIterator[RegistryService]:
    cfg = RegistryConfig(
        data_dir=tmp_path / "registry",
        server=ServerConfig(tls=cert(ca, tmp_path, Role.REGISTRY)),
        soft_limit=2,
        hard_limit=3,
        durable=False,
    )
    async with RegistryService(cfg) as svc:
        yield svc


@pytest.fixture
async def hub(
    tmp_path: Path, ca: ClusterCA, registry: RegistryService
) -> AsyncIterator[tuple[HubService, FakeSpawner]]:
    spawner = FakeSpawner(tls=True)
    settings = hub_settings(
        tmp_path,
        registry.address,
        server=ServerConfig(tls=cert(ca, tmp_path, Role.HUB)),
        ca_dir=tmp_path / "ca",
    )
    try:
        async with HubService(settings, spawner=spawner) as svc:
            await shards_up(svc, registry, 1)
            yield svc, spawner
    finally:
        await spawner.close()


async def ask(hub: HubService, tls: TLSConfig, shard_id: str, seq: int = 1) -> int:
    async with rpc.make_channel(hub.address, tls, server_role=Role.HUB) as ch:
        async with rpc.rpc_errors("hub"):
            grant = await hub_pb2_grpc.HubStub(ch).RequestAllowance(
                hub_pb2.AllowanceRequest(shard_id=shard_id, seq=seq, amount=50)
            )
    return int(grant.granted)


async def test_the_hub_issues_each_shard_it_creates_a_certificate(
    tmp_path: Path, ca: ClusterCA, hub: tuple[HubService, FakeSpawner]
) -> None:
    svc, _ = hub
    shard_tls = TLSConfig.from_dir(tmp_path / "shards" / "shard-0001" / "tls")
    assert shard_tls.identity() == SHARD_1
    assert shard_tls.ca_cert.read_bytes() == ca.cert_pem
    # It serves with it (the hub's health check got through), and may ask for itself.
    assert await ask(svc, shard_tls, "shard-0001") == 50
    with pytest.raises(PermissionDenied, match="may not ask in the name of 'shard-0002'"):
        await ask(svc, shard_tls, "shard-0002")
    with pytest.raises(PermissionDenied, match="shard-0009 is not a shard of this hub"):
        await ask(svc, ca.issue(Identity(Role.SHARD, "shard-0009"), tmp_path / "x"), "shard-0009")
    with pytest.raises(PermissionDenied, match="may not call"):
        await ask(svc, cert(ca, tmp_path, Role.GATEWAY), "shard-0001")
    assert issubclass(NotThisShard, PermissionDenied)
    assert issubclass(NotAuthorized, PermissionDenied)


async def test_a_restarted_shard_gets_its_certificate_renewed_when_it_nears_its_end(
    tmp_path: Path, ca: ClusterCA, hub: tuple[HubService, FakeSpawner]
) -> None:
    svc, spawner = hub
    shard_dir = tmp_path / "shards" / "shard-0001" / "tls"
    short = ca.issue(SHARD_1, shard_dir, valid=dt.timedelta(days=3))
    old = short.cert.read_bytes()
    await spawner.crash("shard-0001")
    await eventually(lambda: svc.store.shards()[0].restarts == 1, what="restart")
    renewed = TLSConfig.from_dir(shard_dir)
    assert renewed.cert.read_bytes() != old and renewed.identity() == SHARD_1
