#!/usr/bin/env python3
"""Figures for docs/scaling.md: what one shard, the registry, the hub and a gateway cost.

Four measurements, each short and on loopback, printed and written as JSON:

- ``shard``: ``--users`` users (default 100,000) bulk-loaded straight into a
  shard's LMDB (:func:`bulk_load_shard`, one write transaction per 10,000
  users through the shard's own store code), then a real
  :class:`~user_shard.service.ShardService` in a child process serves it
  over gRPC; after ``GetUser`` calls for random users, the child's RSS
  (anonymous and file-backed) and the size of ``data.mdb`` on disk.
- ``registry``: ``--principals`` principals (default 1,000,000) bulk-loaded
  into the registry's LMDB (:func:`bulk_load_registry`), then lookup
  latency of random principals through
  :meth:`~registry.store.RegistryStore.lookup`, in-process (p50/p99/max),
  and ``data.mdb`` on disk.
- ``hub``: one capacity round (:meth:`hub.rounds.CapacityRounds.ensure`)
  with ``--shards`` shards (default 1,000) in the hub's store and an
  in-memory registry client: the "enough" round (p50/p99 over repeated
  rounds) and one round that spawns a shard through the real spawn steps
  with an in-process health-only fake shard (:class:`FakeHealthSpawner`).
- ``gateway``: a real one-shard cluster (``canistry up``'s ``Cluster``), the
  loadtest (``canistry loadtest``, default mix) against its gateway, then
  the gateway's ``canistry_gateway_cache_total`` counters from ``/metrics``:
  the route (principal -> shard) cache's hit rate, and the content caches'.

``--only`` picks measurements; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.principal import principal_of_key
from protos import hub_pb2, registry_pb2, shard_pb2, shard_pb2_grpc
from runtime import logs
from runtime.store import put_msg

__all__ = [
    "bulk_load_registry",
    "bulk_load_shard",
    "measure_assign",
    "measure_gateway",
    "measure_hub",
    "measure_registry",
    "measure_shard",
]

NAMES = ("shard", "registry", "assign", "hub", "gateway")
_BATCH = 10_000


def principals(count: int, seed: int = 7) -> Iterator[str]:
    """``count`` principals as the gateway makes them (from random Ed25519-sized keys)."""
    rng = random.Random(seed)
    for _ in range(count):
        yield principal_of_key(rng.randbytes(32))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _disk(path: Path) -> dict[str, int]:
    """``data.mdb``'s apparent size and the blocks it really holds, in bytes."""
    st = (path / "data.mdb").stat()
    return {"file_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512}


# -- shard ---------------------------------------------------------------------


def _user(principal: str, now_ms: int, day: str) -> shard_pb2.UserRecord:
    """A typical active user: a profile, a few completed units, today's figures."""
    return shard_pb2.UserRecord(
        principal=principal,
        profile=shard_pb2.Profile(
            name="Ada Lovelace", email="ada@example.org", education="bachelor", gender="f"
        ),
        completed_units=[f"unit-{i:04d}" for i in range(5)],
        today=shard_pb2.DailyStats(day=day, attempts=3, earned=30),
        staked=120,
        created_at_ms=now_ms,
    )


def bulk_load_shard(data_dir: Path, users: list[str], *, map_size: int = 1 << 32) -> None:
    """Write ``users`` straight into a shard's LMDB at ``data_dir`` (created if new).

    Goes through :class:`~user_shard.store.ShardStore` for the layout (schema,
    ledger), then one write transaction per 10,000 users; the ledger's user
    count is kept right. For benchmarks and capacity planning only.
    """
    from user_shard.limits import utc_day
    from user_shard.store import ShardStore

    async def load() -> None:
        store = ShardStore(data_dir, durable=False, map_size=map_size)
        await store.start()
        try:
            s = store.store
            now_ms = time.time_ns() // 1_000_000
            day = utc_day(now_ms)
            for i in range(0, len(users), _BATCH):
                chunk = users[i : i + _BATCH]
                with s.write() as txn:
                    for p in chunk:
                        put_msg(txn, s.db("users"), p.encode(), _user(p, now_ms, day))
                    ledger = store._ledger(txn)
                    ledger.users += len(chunk)
                    store._put_ledger(txn, ledger)
        finally:
            await store.stop()

    asyncio.run(load())


def _rss(pid: int) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(rest.split()[0]) * 1024
    return fields


def _serve_shard(data_dir: str, port_q: Any, stop: Any) -> None:
    """Child process: one plain-text shard serving ``data_dir`` until ``stop`` is set."""
    from runtime.rpc import ServerConfig
    from user_shard.config import ShardConfig
    from user_shard.service import ShardService

    logs.configure("capacity-shard", level="error")

    async def main() -> None:
        config = ShardConfig(
            shard_id="shard-bench",
            data_dir=Path(data_dir),
            hub_address="127.0.0.1:1",
            content_address="127.0.0.1:1",
            server=ServerConfig(),
            durable=False,
        )
        async with ShardService(config) as svc:
            port_q.put(svc.address)
            await asyncio.to_thread(stop.wait, 600)

    asyncio.run(main())


async def _get_users(address: str, sample: list[str]) -> list[float]:
    import grpc

    out = []
    async with grpc.aio.insecure_channel(address) as ch:
        stub = shard_pb2_grpc.UserShardStub(ch)
        for p in sample:
            t0 = time.perf_counter()
            await stub.GetUser(shard_pb2.GetUserRequest(principal=p), timeout=10)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def measure_shard(users: int = 100_000, reads: int = 5_000) -> dict[str, Any]:
    """Bulk-load ``users`` into a shard, serve it, read ``reads`` random users; RSS and disk."""
    names = list(principals(users))
    with tempfile.TemporaryDirectory(prefix="canistry-cap-shard-") as tmp:
        data_dir = Path(tmp) / "shard"
        t0 = time.perf_counter()
        bulk_load_shard(data_dir, names)
        load_s = time.perf_counter() - t0
        ctx = mp.get_context("spawn")
        port_q, stop = ctx.Queue(), ctx.Event()
        child = ctx.Process(target=_serve_shard, args=(str(data_dir), port_q, stop))
        child.start()
        try:
            address = port_q.get(timeout=60)
            assert child.pid is not None
            idle = _rss(child.pid)
            sample = random.Random(1).sample(names, min(reads, len(names)))
            latencies = asyncio.run(_get_users(address, sample))
            served = _rss(child.pid)
        finally:
            stop.set()
            child.join(30)
            if child.is_alive():
                child.kill()
        return {
            "users": users,
            "bulk_load_s": round(load_s, 2),
            "disk": _disk(data_dir),
            "bytes_per_user": round(_disk(data_dir)["allocated_bytes"] / users, 1),
            "rss_idle": idle,
            "rss_after_reads": served,
            "reads": len(sample),
            "get_user_p50_ms": round(statistics.median(latencies), 3),
            "get_user_p99_ms": round(_percentile(latencies, 0.99), 3),
        }


# -- registry ------------------------------------------------------------------


def bulk_load_registry(
    data_dir: Path, names: list[str], *, shards: int = 100
) -> list[registry_pb2.ShardInfo]:
    """Write ``names`` straight into a registry's LMDB, spread over ``shards`` FULL shards.

    One write transaction per 10,000 principals, sorted first (LMDB appends
    sorted keys fastest). For benchmarks and capacity planning only.
    """
    from registry.store import RegistryStore

    per = -(-len(names) // shards)
    infos = [
        registry_pb2.ShardInfo(
            shard_id=f"shard-{i:04d}",
            address=f"shard-{i:04d}:7000",
            state=registry_pb2.SHARD_STATE_FULL,
            users=min(per, len(names) - i * per),
            hard_limit=per,
            registration_seq=i + 1,
        )
        for i in range(shards)
    ]

    async def load() -> None:
        store = RegistryStore(data_dir, durable=False)
        await store.start()
        try:
            s = store.store
            with s.write() as txn:
                for info in infos:
                    put_msg(txn, s.db("shards"), info.shard_id.encode(), info)
            ordered = sorted(enumerate(names), key=lambda x: x[1])
            for i in range(0, len(ordered), _BATCH):
                with s.write() as txn:
                    cursor = txn.cursor(db=s.db("principals"))
                    for n, p in ordered[i : i + _BATCH]:
                        cursor.put(p.encode(), infos[n // per].shard_id.encode(), append=True)
        finally:
            await store.stop()

    asyncio.run(load())
    return infos


def measure_registry(principal_count: int = 1_000_000, lookups: int = 20_000) -> dict[str, Any]:
    """Bulk-load ``principal_count`` principals; in-process lookup latency and disk."""
    from registry.store import RegistryStore

    names = list(principals(principal_count, seed=11))
    with tempfile.TemporaryDirectory(prefix="canistry-cap-registry-") as tmp:
        data_dir = Path(tmp) / "registry"
        t0 = time.perf_counter()
        bulk_load_registry(data_dir, names)
        load_s = time.perf_counter() - t0
        sample = random.Random(2).choices(names, k=lookups)

        async def look() -> list[float]:
            store = RegistryStore(data_dir, durable=False)
            await store.start()
            try:
                out = []
                for p in sample:
                    t = time.perf_counter_ns()
                    assert store.lookup(p) is not None
                    out.append((time.perf_counter_ns() - t) / 1e6)
                return out
            finally:
                await store.stop()

        latencies = asyncio.run(look())
        return {
            "principals": principal_count,
            "bulk_load_s": round(load_s, 2),
            "disk": _disk(data_dir),
            "bytes_per_principal": round(_disk(data_dir)["allocated_bytes"] / principal_count, 1),
            "lookups": lookups,
            "lookup_p50_ms": round(statistics.median(latencies), 4),
            "lookup_p99_ms": round(_percentile(latencies, 0.99), 4),
            "lookup_max_ms": round(max(latencies), 3),
        }


def measure_assign(shard_total: int = 1_000, assigns: int = 2_000) -> dict[str, Any]:
    """Registration cost with ``shard_total`` shards in the directory (all but the newest FULL).

    ``RegistryStore.assign`` reads the whole directory in its write
    transaction to choose a shard, so its cost grows with the shard count.
    Sequential assigns, no fsync (the CPU part; a durable commit adds one
    fsync per group).
    """
    from registry.store import RegistryStore

    names = list(principals(shard_total, seed=3))

    async def run(data_dir: Path) -> list[float]:
        store = RegistryStore(data_dir, durable=False)
        await store.start()
        try:
            s = store.store
            with s.write() as txn:  # the newest shard is open
                last = registry_pb2.ShardInfo()
                last.ParseFromString(
                    bytes(txn.get(f"shard-{shard_total - 1:04d}".encode(), db=s.db("shards")))
                )
                last.state, last.users, last.hard_limit = registry_pb2.SHARD_STATE_ACTIVE, 0, 10**9
                put_msg(txn, s.db("shards"), last.shard_id.encode(), last)
            out = []
            for p in principals(assigns, seed=4):
                t0 = time.perf_counter()
                await store.assign(p, soft_limit=10**9, hard_limit=10**9, now_ms=1)
                out.append((time.perf_counter() - t0) * 1000)
            return out
        finally:
            await store.stop()

    with tempfile.TemporaryDirectory(prefix="canistry-cap-assign-") as tmp:
        bulk_load_registry(Path(tmp) / "registry", names, shards=shard_total)
        latencies = asyncio.run(run(Path(tmp) / "registry"))
    return {
        "shards": shard_total,
        "assigns": assigns,
        "assign_p50_ms": round(statistics.median(latencies), 3),
        "assign_p99_ms": round(_percentile(latencies, 0.99), 3),
        "assigns_per_s_sequential": round(assigns / (sum(latencies) / 1000), 1),
    }


# -- hub -----------------------------------------------------------------------


class MemoryRegistry:
    """The hub's registry client, in memory: a directory of shards and their registrations."""

    def __init__(self, shards: list[registry_pb2.ShardInfo]) -> None:
        self.directory = registry_pb2.ShardDirectory(shards=shards)

    async def list_shards(self) -> registry_pb2.ShardDirectory:
        out = registry_pb2.ShardDirectory()
        out.CopyFrom(self.directory)
        return out

    async def register(self, shard_id: str, address: str) -> registry_pb2.ShardInfo:
        info = registry_pb2.ShardInfo(
            shard_id=shard_id,
            address=address,
            state=registry_pb2.SHARD_STATE_ACTIVE,
            registration_seq=len(self.directory.shards) + 1,
        )
        self.directory.shards.append(info)
        return info

    async def close(self) -> None:
        return None


class FakeHealthSpawner:
    """A spawner whose shards are in-process health-only gRPC servers (plain text)."""

    name = "fake"

    def __init__(self) -> None:
        self._servers: dict[str, Any] = {}

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        import grpc
        from grpc_health.v1 import health, health_pb2_grpc

        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{record.port}")
        await server.start()
        self._servers[record.shard_id] = server
        return 100_000 + len(self._servers)

    def is_alive(self, record: hub_pb2.ShardRecord) -> bool:
        return record.shard_id in self._servers

    def adopt(self, record: hub_pb2.ShardRecord) -> int | None:
        return None

    async def stop(self, record: hub_pb2.ShardRecord) -> None:
        server = self._servers.pop(record.shard_id, None)
        if server is not None:
            await server.stop(0)

    def port_available(self, port: int) -> bool:
        from runtime.net import port_is_free

        return port_is_free(port)

    async def close(self) -> None:
        for server in self._servers.values():
            await server.stop(0)
        self._servers.clear()


def measure_hub(
    shard_total: int = 1_000, rounds: int = 50, soft_limit: int = 100_000
) -> dict[str, Any]:
    """Capacity-round time with ``shard_total`` shards: "enough" rounds, then one spawn."""
    from hub.rounds import CapacityRounds
    from hub.spawn_steps import Spawns
    from hub.store import HubStore, shard_id_for

    async def run(tmp: Path) -> dict[str, Any]:
        store = HubStore(tmp / "hub", durable=False)
        await store.start()
        spawner = FakeHealthSpawner()
        try:
            ids = [shard_id_for(i + 1) for i in range(shard_total)]
            s = store.store
            with s.write() as txn:
                for n, shard_id in enumerate(ids):
                    put_msg(
                        txn,
                        s.db("shards"),
                        shard_id.encode(),
                        hub_pb2.ShardRecord(
                            shard_id=shard_id,
                            step=hub_pb2.SPAWN_STEP_REGISTERED,
                            address=f"{shard_id}:7000",
                            port=7000,
                            pid=10 + n,
                            data_dir=str(tmp / "shards" / shard_id),
                            template_version="bench",
                        ),
                    )
                txn.put(b"next_shard_number", str(shard_total + 1).encode(), db=s.db("meta"))
            infos = [
                registry_pb2.ShardInfo(
                    shard_id=shard_id,
                    address=f"{shard_id}:7000",
                    state=registry_pb2.SHARD_STATE_FULL,
                    users=soft_limit + 1,
                    hard_limit=soft_limit * 2,
                    registration_seq=n + 1,
                )
                for n, shard_id in enumerate(ids)
            ]
            # The newest shard is active and below the soft limit: rounds answer "enough".
            infos[-1].state = registry_pb2.SHARD_STATE_ACTIVE
            infos[-1].users = soft_limit // 2
            registry = MemoryRegistry(infos)
            policy = hub_pb2.HubConfig(
                soft_limit=soft_limit,
                hard_limit=soft_limit * 2,
                min_shards=1,
                template_version="bench",
                shard_start_timeout_s=10.0,
            )
            spawns = Spawns(
                store,
                spawner,
                registry,
                shards_dir=tmp / "shards",
                policy=policy,  # type: ignore[arg-type]
            )
            capacity = CapacityRounds(
                store,
                registry,  # type: ignore[arg-type]
                spawns,
                min_shards=1,
                soft_limit=soft_limit,
                is_alive=spawner.is_alive,
            )
            enough = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                reply = await capacity.ensure()
                enough.append((time.perf_counter() - t0) * 1000)
                assert reply.action == "enough", reply
            # Now the newest shard passes the soft limit: the next round spawns one.
            registry.directory.shards[-1].users = soft_limit
            t0 = time.perf_counter()
            reply = await capacity.ensure()
            spawn_ms = (time.perf_counter() - t0) * 1000
            assert reply.action == "spawned", reply
            await capacity.close()
            return {
                "shards": shard_total,
                "rounds": rounds,
                "enough_round_p50_ms": round(statistics.median(enough), 2),
                "enough_round_p99_ms": round(_percentile(enough, 0.99), 2),
                "spawn_round_ms": round(spawn_ms, 1),
                "spawned": reply.shard_id,
            }
        finally:
            await spawner.close()
            await store.stop()

    with tempfile.TemporaryDirectory(prefix="canistry-cap-hub-") as tmp:
        return asyncio.run(run(Path(tmp)))


# -- gateway -------------------------------------------------------------------

_CACHE_LINE = re.compile(
    r'^canistry_gateway_cache_total\{cache="(\w+)",result="(\w+)"\}\s+([0-9.e+]+)$', re.M
)


def cache_counters(metrics_text: str) -> dict[str, dict[str, float]]:
    """``{cache: {"hit": n, "miss": n}}`` from the gateway's ``/metrics`` text."""
    out: dict[str, dict[str, float]] = {}
    for cache, result, value in _CACHE_LINE.findall(metrics_text):
        out.setdefault(cache, {}).setdefault(result, 0.0)
        out[cache][result] += float(value)
    return out


def hit_rates(counters: dict[str, dict[str, float]]) -> dict[str, float]:
    rates = {}
    for cache, c in counters.items():
        total = c.get("hit", 0.0) + c.get("miss", 0.0)
        if total:
            rates[cache] = round(c.get("hit", 0.0) / total, 4)
    return rates


def measure_gateway(
    users: int = 200,
    seconds: float = 20.0,
    concurrency: int = 8,
    *,
    workers: int = 1,
    mix: str = "read=70,submit=30",
) -> dict[str, Any]:
    """A one-shard cluster, a loadtest with ``mix``, then the gateway's cache counters.

    With ``workers`` > 1 each worker keeps its own caches and ``/metrics`` is
    one worker's (the one that answers): the rates are a sample.
    """
    from bench._driver import up_config
    from canistry.up import Cluster

    with tempfile.TemporaryDirectory(prefix="canistry-cap-gw-") as tmp:
        cfg = up_config(Path(tmp) / "cluster", min_shards=1, gateway_workers=workers)
        cluster = Cluster(cfg, io.StringIO())
        try:
            cluster.boot()
            url = cluster.gateway_url
            cmd = [
                sys.executable,
                "-m",
                "canistry",
                "loadtest",
                "--gateway",
                url,
                "--users",
                str(users),
                "--duration",
                str(seconds),
                "--concurrency",
                str(concurrency),
                "--quiet",
                "--mix",
                mix,
                "--seed",
                "5",
                "--report",
                str(Path(tmp) / "report.json"),
            ]
            subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 300)
            with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
                text = r.read().decode()
            report = json.loads((Path(tmp) / "report.json").read_text())
        finally:
            cluster.stop()
            cluster.close()
    counters = cache_counters(text)
    return {
        "users": users,
        "seconds": seconds,
        "concurrency": concurrency,
        "gateway_workers": workers,
        "mix": mix,
        "requests": report["totals"]["requests"],
        "errors": report["totals"]["errors"],
        "cache_counters": counters,
        "hit_rate": hit_rates(counters),
    }


# -- CLI -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(NAMES), help="comma-separated: " + ",".join(NAMES))
    p.add_argument("--users", type=int, default=100_000, help="users on the one shard")
    p.add_argument("--principals", type=int, default=1_000_000, help="principals in the registry")
    p.add_argument("--shards", type=int, default=1_000, help="shards the hub knows")
    p.add_argument("--load-users", type=int, default=200, help="loadtest users (gateway)")
    p.add_argument("--load-seconds", type=float, default=20.0, help="loadtest duration (gateway)")
    p.add_argument("--gateway-workers", type=int, default=1, help="gateway worker processes")
    p.add_argument("--mix", default="read=70,submit=30", help="loadtest mix (gateway)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    logs.configure("capacity", level="warning")
    wanted = [n for n in args.only.split(",") if n]
    unknown = set(wanted) - set(NAMES)
    if unknown:
        p.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    runs = {
        "shard": lambda: measure_shard(args.users),
        "registry": lambda: measure_registry(args.principals),
        "assign": lambda: measure_assign(args.shards),
        "hub": lambda: measure_hub(args.shards),
        "gateway": lambda: measure_gateway(
            args.load_users, args.load_seconds, workers=args.gateway_workers, mix=args.mix
        ),
    }
    figures: dict[str, Any] = {"cpus": os.cpu_count()}
    for name in wanted:
        t0 = time.perf_counter()
        figures[name] = runs[name]()
        figures[name]["measured_in_s"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {json.dumps(figures[name], sort_keys=True)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
