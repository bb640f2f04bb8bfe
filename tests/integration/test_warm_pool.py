"""The warm pool on a real cluster: a started, healthy, unassigned shard serves at once.

The pool (size 1) fills after the first shard; when every active shard
reaches the soft limit the warm shard is registered, with the process it
already ran, far sooner after the decision than a cold shard took; then the
pool fills again.
"""

from __future__ import annotations

import io
import re

from grpc_health.v1 import health_pb2, health_pb2_grpc

from canistry.status import fetch_status, render_status
from protos import hub_pb2
from runtime.rpc import make_channel
from runtime.tls import Role
from tests.integration.conftest import MakeCluster
from tests.integration.direct import SAMPLE, Direct, new_principal, poll, right_answers
from tests.integration.hubview import hub_records, shard_processes, step_name


async def test_a_warm_shard_is_promoted_at_the_soft_limit_and_the_pool_refills(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(soft_limit=2, hard_limit=1000, warm_pool=1)
    direct = Direct(cluster)

    async def steps() -> dict[str, str]:
        return {i: step_name(r) for i, r in (await hub_records(direct)).items()}

    async def pool(want: dict[str, str]) -> bool:
        return await steps() == want

    await poll(
        lambda: pool({"shard-0001": "REGISTERED", "shard-0002": "WARM"}), what="a warm shard"
    )
    assert [s.shard_id for s in (await direct.directory()).shards] == ["shard-0001"]
    warm = (await hub_records(direct))["shard-0002"]
    assert warm.warm and shard_processes(cluster, "shard-0002") == [warm.pid]
    async with make_channel(warm.address, cluster.tls("operator"), server_role=Role.SHARD) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    status = await fetch_status(cluster.children["hub"].address, cluster.tls("operator"))
    out = io.StringIO()
    render_status(status, out)
    assert re.search(r"shard-0002\s+\S+\s+warm\s", out.getvalue()), out.getvalue()

    # Two users bring shard-0001 to the soft limit; the registry pokes the hub.
    for _ in range(2):
        assert (await direct.register(new_principal())).shard_id == "shard-0001"

    async def listed() -> list[str]:
        return [s.shard_id for s in (await direct.directory()).shards]

    await poll(lambda: _equals(listed, ["shard-0001", "shard-0002"]), what="the promotion")
    newcomer = new_principal()
    assert (await direct.register(newcomer)).shard_id == "shard-0002"
    unit = SAMPLE[0]
    assert (await direct.submit(newcomer, unit["id"], right_answers(unit))).passed

    records = await hub_records(direct)
    cold, promoted = records["shard-0001"], records["shard-0002"]
    assert promoted.step == hub_pb2.SPAWN_STEP_REGISTERED and promoted.warm
    assert promoted.pid == warm.pid and promoted.restarts == 0, "the process it already ran"
    assert shard_processes(cluster, "shard-0002") == [warm.pid]
    cold_ms = cold.registered_at_ms - cold.decided_at_ms
    warm_ms = promoted.registered_at_ms - promoted.decided_at_ms
    assert 0 <= warm_ms < cold_ms, (warm_ms, cold_ms)

    # The pool fills again in the background, with a shard nobody is assigned to.
    want = {"shard-0001": "REGISTERED", "shard-0002": "REGISTERED", "shard-0003": "WARM"}
    await poll(lambda: pool(want), what="the pool refilled")
    assert await listed() == ["shard-0001", "shard-0002"]
    await direct.assert_accounts_balance()


async def _equals(fetch, want) -> bool:  # type: ignore[no-untyped-def]
    return bool(await fetch() == want)
