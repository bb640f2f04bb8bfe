"""Content replicas: several processes on one port (SO_REUSEPORT) over one LMDB file."""

from __future__ import annotations

import json
import os
import signal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from canistry.status import metrics_endpoints
from protos import content_pb2, content_pb2_grpc
from runtime.errors import Unavailable
from runtime.rpc import make_channel
from runtime.tls import Role
from tests.integration.conftest import MakeCluster
from tests.integration.direct import SAMPLE, Direct, new_principal, poll, right_answers


def _served(url: str, method: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for s in family.samples:
            if s.name == "canistry_rpc_requests_total" and s.labels.get("method") == method:
                total += s.value
    return total


async def test_replicas_share_a_port_see_imports_and_survive_a_death(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(content_replicas=2)
    content = cluster.children["content"].address
    assert cluster.children["content-2"].address == content, "one port for both"
    operator = cluster.tls("operator")

    # An import through one replica is visible through every connection, whichever
    # replica the kernel gave it.
    unit = dict(SAMPLE[0], id="fresh-unit-777", title="Fresh")
    async with make_channel(content, operator, server_role=Role.CONTENT) as ch:
        await content_pb2_grpc.ContentStub(ch).ImportPack(
            content_pb2.ImportPackRequest(pack_json=json.dumps({"units": [unit]}))
        )
    for _ in range(24):  # a new connection each time: the kernel spreads them
        async with make_channel(content, operator, server_role=Role.CONTENT) as ch:
            got = await content_pb2_grpc.ContentStub(ch).GetUnit(
                content_pb2.GetUnitRequest(unit_id="fresh-unit-777")
            )
        assert got.title == "Fresh"
    urls = dict(metrics_endpoints(cluster.layout))
    served = [_served(urls[name], "Content/GetUnit") for name in ("content-1", "content-2")]
    assert all(n > 0 for n in served), f"both replicas served reads: {served}"

    # A replica dies: callers go on through the other, and `up` starts it again.
    direct = Direct(cluster)
    principal = new_principal()
    await direct.register(principal)
    killed = cluster.children["content-2"].proc
    assert killed is not None
    os.kill(killed.pid, signal.SIGKILL)
    for n, sample in enumerate(SAMPLE[:6]):

        async def submit(sample=sample, key=f"k{n}"):  # type: ignore[no-untyped-def]
            return await direct.submit(principal, sample["id"], right_answers(sample), key)

        # A call cut by the death is a 503 (nothing recorded); its retry reaches the other.
        reply = await poll(submit, timeout_s=20, ignore=(Unavailable,))
        assert reply.passed

    async def restarted() -> bool:
        cluster.supervise_once()
        proc = cluster.children["content-2"].proc
        return proc is not None and proc.pid != killed.pid and proc.poll() is None

    await poll(restarted, timeout_s=30, what="content-2 restarted")
    await direct.assert_accounts_balance()
