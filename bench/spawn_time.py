#!/usr/bin/env python3
"""Time from a capacity decision to the new shard serving: cold spawn against a warm pool.

One real cluster per mode (soft limit 2 users, scale timer out of the way).
Each repetition brings the newest shard to the soft limit with one more user;
the registry pokes the hub, whose capacity round decides (the shard's
``decided_at_ms`` in ``ListHubShards``) and either starts a shard cold or
promotes the warm one. The clock stops when the new shard is in the
registry's directory and has answered a user RPC: a new user assigned to it,
created on it (``CreateUser``) and read back (``GetUser``). With a warm pool,
each repetition first waits for the pool to refill, as it would between
capacity decisions in a real cluster. Bounded: ``--reps`` repetitions per
mode, each with a deadline.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._driver import base_parser, up_config, write_json
from canistry.up import Cluster
from protos import hub_pb2, hub_pb2_grpc, registry_pb2, registry_pb2_grpc, shard_pb2, shard_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import Role, TLSConfig

SOFT_LIMIT = 2
DEADLINE_S = 60.0


def _now_ms() -> float:
    return time.time() * 1000


class Probe:
    """The gateway's view of one cluster: the registry, the hub's records, the shards."""

    def __init__(self, cluster: Cluster) -> None:
        self.tls: TLSConfig = cluster.tls("gateway")
        self.registry = registry_pb2_grpc.RegistryStub(
            make_channel(cluster.children["registry"].address, self.tls, server_role=Role.REGISTRY)
        )
        self.hub = hub_pb2_grpc.HubStub(
            make_channel(cluster.children["hub"].address, self.tls, server_role=Role.HUB)
        )
        self._shards: dict[str, shard_pb2_grpc.UserShardStub] = {}

    def shard(self, address: str) -> shard_pb2_grpc.UserShardStub:
        if address not in self._shards:
            channel = make_channel(address, self.tls, server_role=Role.SHARD)
            self._shards[address] = shard_pb2_grpc.UserShardStub(channel)
        return self._shards[address]

    async def listed(self) -> list[str]:
        d = await self.registry.ListShards(registry_pb2.ListShardsRequest(), timeout=5)
        return [s.shard_id for s in d.shards]

    async def records(self) -> dict[str, hub_pb2.ShardRecord]:
        reply = await self.hub.ListHubShards(hub_pb2.ListHubShardsRequest(), timeout=5)
        return {r.shard_id: r for r in reply.shards}

    async def add_user(self) -> str:
        """Register a new user (assign, create, read back); return its shard id."""
        principal = f"bench-{uuid.uuid4().hex[:20]}"
        a = await self.registry.Assign(registry_pb2.AssignRequest(principal=principal), timeout=5)
        stub = self.shard(a.address)
        profile = shard_pb2.Profile(name="Bench", email="bench@example.org")
        await stub.CreateUser(
            shard_pb2.CreateUserRequest(principal=principal, profile=profile), timeout=5
        )
        await stub.GetUser(shard_pb2.GetUserRequest(principal=principal), timeout=5)
        return a.shard_id

    async def until(self, what: str, check: Any, every_s: float = 0.005) -> Any:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            value = await check()
            if value:
                return value
            await asyncio.sleep(every_s)
        raise TimeoutError(f"no {what} within {DEADLINE_S:.0f}s")


async def _repetitions(cluster: Cluster, reps: int, warm: bool) -> list[dict[str, Any]]:
    probe = Probe(cluster)
    out = []
    for rep in range(reps):
        if warm:

            async def pool_full() -> bool:
                records = (await probe.records()).values()
                return any(r.step == hub_pb2.SPAWN_STEP_WARM for r in records)

            await probe.until("warm shard", pool_full, every_s=0.05)
        before = set(await probe.listed())
        # Fill the newest shard to the soft limit; the last user's assignment pokes the hub.
        while True:
            shard_id = await probe.add_user()
            d = await probe.registry.ListShards(registry_pb2.ListShardsRequest(), timeout=5)
            if next(s.users for s in d.shards if s.shard_id == shard_id) >= SOFT_LIMIT:
                break
        triggered_ms = _now_ms()

        async def new_shard(before: set[str] = before) -> str | None:
            fresh = [s for s in await probe.listed() if s not in before]
            return fresh[0] if fresh else None

        new_id: str = await probe.until("new shard", new_shard)
        # It serves: a new user lands on it (the newest shard) and is created and read back.
        landed = await probe.add_user()
        serving_ms = _now_ms()
        assert landed == new_id, (landed, new_id)
        record = (await probe.records())[new_id]
        row = {
            "rep": rep + 1,
            "shard_id": new_id,
            "from_warm_pool": record.warm,
            "trigger_to_decision_ms": round(record.decided_at_ms - triggered_ms, 1),
            "decision_to_registered_ms": record.registered_at_ms - record.decided_at_ms,
            "decision_to_serving_ms": round(serving_ms - record.decided_at_ms, 1),
        }
        print(
            f"  {'warm' if warm else 'cold'} #{rep + 1}: {new_id} "
            f"{'promoted' if record.warm else 'spawned'}; decision -> registered "
            f"{row['decision_to_registered_ms']} ms, -> serving {row['decision_to_serving_ms']} ms"
        )
        out.append(row)
    return out


def run_mode(reps: int, warm: bool) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="canistry-bench-") as tmp:
        cluster = Cluster(
            up_config(
                Path(tmp) / "data",
                daily_attempt_limit=20,
                daily_token_limit=1000,
                soft_limit=SOFT_LIMIT,
                hard_limit=1000,
                min_shards=1,
                warm_pool=1 if warm else 0,
                scale_interval_s=3600.0,
            ),
            out=io.StringIO(),
        )
        try:
            cluster.boot()
            return asyncio.run(_repetitions(cluster, reps, warm))
        finally:
            cluster.stop()
            cluster.close()


def _summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    serving = [r["decision_to_serving_ms"] for r in rows]
    registered = [r["decision_to_registered_ms"] for r in rows]
    return {
        "serving_median_ms": round(statistics.median(serving), 1),
        "serving_mean_ms": round(statistics.fmean(serving), 1),
        "serving_min_ms": round(min(serving), 1),
        "serving_max_ms": round(max(serving), 1),
        "registered_median_ms": round(statistics.median(registered), 1),
    }


def run_spawn_time(reps: int = 5) -> dict[str, Any]:
    """Cold spawns against a warm pool of one, ``reps`` each; medians and their ratio, printed."""
    print(f"cold spawns ({reps}):")
    cold = run_mode(reps, warm=False)
    print(f"warm pool of 1 ({reps}):")
    warm = run_mode(reps, warm=True)
    c, w = _summary(cold), _summary(warm)
    ratio = c["serving_median_ms"] / w["serving_median_ms"] if w["serving_median_ms"] else 0.0
    print()
    print(f"{'':<10}{'serving median':>16}{'mean':>10}{'min':>10}{'max':>10}{'registered':>12}")
    for label, s in (("cold", c), ("warm pool", w)):
        print(
            f"{label:<10}{s['serving_median_ms']:>13.1f} ms{s['serving_mean_ms']:>10.1f}"
            f"{s['serving_min_ms']:>10.1f}{s['serving_max_ms']:>10.1f}"
            f"{s['registered_median_ms']:>12.1f}"
        )
    print(f"a warm shard serves {ratio:.0f}x sooner after the decision than a cold one")
    return {"reps": reps, "cold": c, "warm": w, "ratio_median_serving": round(ratio, 1),
            "cold_runs": cold, "warm_runs": warm}  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per mode")
    args = parser.parse_args()
    write_json(args.json, run_spawn_time(args.reps))


if __name__ == "__main__":
    main()
