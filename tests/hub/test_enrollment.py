"""Shard enrollment over loopback: a real TLS hub with its enrollment port, a real
``canistry enroll`` process, and the certificate it ends with used on the hub's main port."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hub.clock import wall_clock_ms
from hub.service import HubService
from protos import enrollment_pb2, enrollment_pb2_grpc, hub_pb2, hub_pb2_grpc
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime import rpc
from runtime.errors import PermissionDenied
from runtime.rpc import ServerConfig, ServiceBinding
from runtime.tls import ClusterCA, Identity, Role, TLSConfig, new_key_and_csr
from tests.hub._support import hub_settings, shards_up
from tests.hub.fake_spawner import FakeSpawner

ROOT = Path(__file__).resolve().parents[2]
SHARD_1 = "shard-0001"


class ShiftedClock:
    """Wall ms plus an offset a test moves forward."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return wall_clock_ms() + self.offset_ms


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
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
async def hub(
    tmp_path: Path, ca: ClusterCA, registry: RegistryService, clock: ShiftedClock
) -> AsyncIterator[HubService]:
    spawner = FakeSpawner(tls=True)
    settings = hub_settings(
        tmp_path,
        registry.address,
        server=ServerConfig(tls=cert(ca, tmp_path, Role.HUB)),
        ca_dir=tmp_path / "ca",
        enroll_port=0,
    )
    try:
        async with HubService(settings, spawner=spawner, clock=clock) as svc:
            await shards_up(svc, registry, 1)
            yield svc
    finally:
        await spawner.close()


async def run_enroll(hub: HubService, ca: ClusterCA, tls_dir: Path, token: str) -> tuple[int, str]:
    """``python -m canistry enroll`` for shard-0001, as the init container runs it."""
    ca_file = tls_dir.parent / "mounted-ca.pem"
    ca_file.parent.mkdir(parents=True, exist_ok=True)
    ca_file.write_bytes(ca.cert_pem)
    env = {**os.environ, "CANISTRY_JOIN_TOKEN": token, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canistry", "enroll", "--shard-id", SHARD_1,
        "--hub", hub.enroll_address, "--ca", str(ca_file), "--tls-dir", str(tls_dir),
        "--timeout", "20",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def ask_allowance(hub: HubService, tls: TLSConfig) -> int:
    async with rpc.make_channel(hub.address, tls, server_role=Role.HUB) as ch:
        async with rpc.rpc_errors("hub"):
            grant = await hub_pb2_grpc.HubStub(ch).RequestAllowance(
                hub_pb2.AllowanceRequest(shard_id=SHARD_1, seq=1, amount=50)
            )
    return int(grant.granted)


async def test_a_shard_enrols_with_its_token_and_the_main_port_takes_it_as_that_shard(
    hub: HubService, ca: ClusterCA, tmp_path: Path
) -> None:
    assert hub.enrollment is not None
    token = await hub.enrollment.issue_token(SHARD_1)
    tls_dir = tmp_path / "pod" / "tls"
    code, out = await run_enroll(hub, ca, tls_dir, token)
    assert code == 0, out
    key = tls_dir / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    tls = TLSConfig.from_dir(tls_dir)
    assert tls.identity() == Identity(Role.SHARD, SHARD_1)
    # The hub never saw this key: the certificate the hub issued itself has another one.
    assert key.read_bytes() != (tmp_path / "shards" / SHARD_1 / "tls" / "key.pem").read_bytes()
    assert await ask_allowance(hub, tls) == 50  # the main port's mutual TLS and ACL take it

    # Run again on the same directory: the certificate is good, nothing is asked.
    code, out = await run_enroll(hub, ca, tls_dir, token)
    assert code == 0 and "kept" in out, out
    # The same token again, for a pod with no certificate: used up.
    code, out = await run_enroll(hub, ca, tmp_path / "pod-2" / "tls", token)
    assert code == 1 and "refused" in out, out
    assert not (tmp_path / "pod-2" / "tls" / "cert.pem").exists()


async def test_an_expired_or_wrong_token_is_refused(
    hub: HubService, ca: ClusterCA, clock: ShiftedClock, tmp_path: Path
) -> None:
    assert hub.enrollment is not None
    code, out = await run_enroll(hub, ca, tmp_path / "a" / "tls", "not-the-token")
    assert code == 1 and "refused" in out, out
    token = await hub.enrollment.issue_token(SHARD_1)
    clock.offset_ms += int(3 * hub.policy.shard_start_timeout_s * 1000) + 1
    code, out = await run_enroll(hub, ca, tmp_path / "b" / "tls", token)
    assert code == 1 and "refused" in out, out
    code, out = await run_enroll(hub, ca, tmp_path / "c" / "tls", "")
    assert code == 2 and "no join token" in out, out


async def test_the_enrollment_port_serves_enroll_shard_alone_and_the_main_port_not_at_all(
    hub: HubService, ca: ClusterCA, tmp_path: Path
) -> None:
    # Anonymous callers get nothing else on the enrollment port, not even health.
    csr = new_key_and_csr(Identity(Role.SHARD, SHARD_1))[1]
    anon = rpc.make_anonymous_channel(hub.enroll_address, ca.cert_pem, server_role=Role.HUB)
    async with anon:
        with pytest.raises(grpc.aio.AioRpcError) as health:
            await health_pb2_grpc.HealthStub(anon).Check(health_pb2.HealthCheckRequest())
        assert health.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.aio.AioRpcError) as hub_rpc:
            await hub_pb2_grpc.HubStub(anon).GetTreasury(hub_pb2.GetTreasuryRequest())
        assert hub_rpc.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(PermissionDenied):
            async with rpc.rpc_errors("hub"):
                await enrollment_pb2_grpc.EnrollmentStub(anon).EnrollShard(
                    enrollment_pb2.EnrollShardRequest(shard_id=SHARD_1, token="x", csr_pem=csr)
                )
    # The main port does not serve it, and still wants a client certificate.
    operator = cert(ca, tmp_path, Role.OPERATOR)
    async with rpc.make_channel(hub.address, operator, server_role=Role.HUB) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as main:
            await enrollment_pb2_grpc.EnrollmentStub(ch).EnrollShard(
                enrollment_pb2.EnrollShardRequest(shard_id=SHARD_1)
            )
        assert main.value.code() == grpc.StatusCode.UNIMPLEMENTED
    anon = rpc.make_anonymous_channel(hub.address, ca.cert_pem, server_role=Role.HUB)
    async with anon:
        with pytest.raises(grpc.aio.AioRpcError) as no_cert:
            await health_pb2_grpc.HealthStub(anon).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert no_cert.value.code() == grpc.StatusCode.UNAVAILABLE


def test_an_anonymous_listener_serves_anonymous_bindings_only(tmp_path: Path) -> None:
    tls = ClusterCA.open(tmp_path / "ca").issue(Identity(Role.HUB, "hub"), tmp_path / "hub")
    anonymous = ServiceBinding("canistry.hub.v1.Enrollment", lambda s: None, anonymous=True)
    access = {"EnrollShard": {Role.SHARD}}
    checked = ServiceBinding("canistry.hub.v1.Enrollment", lambda s: None, access=access)
    with pytest.raises(ValueError, match="needs tls"):
        ServerConfig(client_auth=False)
    with pytest.raises(ValueError, match="anonymous bindings only"):
        rpc.Server("x", ServerConfig(tls=tls, client_auth=False), [checked])
    with pytest.raises(ValueError, match="client_auth=False"):
        rpc.Server("x", ServerConfig(tls=tls), [anonymous])
    rpc.Server("x", ServerConfig(tls=tls, client_auth=False), [anonymous])
