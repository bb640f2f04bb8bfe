#!/usr/bin/env python3
"""Aggregate submissions/s as shards are added (default 1, 2, 4, 8), and what each role costs.

For each shard count N, one real cluster (``canistry up``'s ``Cluster``,
``min_shards=N``, limits out of the way) runs on loopback. Each shard gets
its own users, created on it directly (``CreateUser``): the registry would
put every new user on the newest shard, and this measures submissions, not
registration. Then one load process per shard (``multiprocessing``, started
together) drives its shard over gRPC with the gateway's certificate, as the
gateway does (through the gateway's batching, ``gateway.submissions``;
``--per-call``: each submission its own call), bounded by --submissions (per
process) and --seconds. The
figures per step: aggregate submissions/s, its multiple of one shard's, and
the cores each role used while it ran (content process, all shards, all load
processes; CPU seconds / wall seconds), with CPU per 1,000 submissions.

On a 2-core machine the curve is flat (the cores are the limit); the
per-role cost is what carries over. On a bigger machine it shows the curve.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing as mp
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cpu import Meter, cluster_pids, per_1000, self_cpu_s
from bench._driver import drive_submissions, up_config, write_json
from canistry.up import Cluster
from protos import shard_pb2, shard_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import Role, TLSConfig

__all__ = ["run_scaling", "run_step"]


async def _create_users(address: str, count: int, tls: TLSConfig) -> list[tuple[str, str]]:
    out = []
    async with make_channel(address, tls, server_role=Role.SHARD) as ch:
        stub = shard_pb2_grpc.UserShardStub(ch)
        profile = shard_pb2.Profile(name="Bench", email="b@example.org")
        for _ in range(count):
            principal = f"bench-{uuid.uuid4().hex[:20]}"
            await stub.CreateUser(
                shard_pb2.CreateUserRequest(principal=principal, profile=profile), timeout=10
            )
            out.append((principal, address))
    return out


def _load(
    tls_dir: str,
    users: list[tuple[str, str]],
    bounds: dict[str, Any],
    go: Any,
    results: Any,
) -> None:
    """One load process: wait for the start signal, drive one shard, report figures and CPU."""
    tls = TLSConfig.from_dir(Path(tls_dir))
    go.wait(60)
    before = self_cpu_s()
    r = asyncio.run(drive_submissions("load", users, tls=tls, **bounds))
    results.put(
        {
            "submissions": r.submissions,
            "errors": r.errors,
            "seconds": r.seconds,
            "cpu_s": self_cpu_s() - before,
            "latencies_ms": r.latencies_ms,
        }
    )


def run_step(
    shards: int,
    *,
    users_per_shard: int,
    concurrency: int,
    submissions: int,
    seconds: float,
    batched: bool = True,
) -> dict[str, Any]:
    """One cluster with ``shards`` shards under one load process each; its figures."""
    bounds = {
        "concurrency": concurrency,
        "max_submissions": submissions,
        "max_seconds": seconds,
        "batched": batched,
    }
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="canistry-scaling-") as tmp:
        data = Path(tmp) / "data"
        cluster = Cluster(
            # max_shards where this checkout has it: the hub must be allowed N shards.
            up_config(data, min_shards=shards, max_shards=max(64, shards), stall_timeout_s=180.0),
            out=io.StringIO(),
        )
        procs: list[Any] = []
        try:
            listed = cluster.boot()[:shards]
            tls = cluster.tls("gateway")
            tls_dir = str(cluster.layout.tls_dir("gateway"))

            async def everyone() -> list[list[tuple[str, str]]]:
                return list(
                    await asyncio.gather(
                        *(_create_users(a, users_per_shard, tls) for _, a in listed)
                    )
                )

            per_shard = asyncio.run(everyone())
            go, results = ctx.Event(), ctx.Queue()
            for people in per_shard:
                p = ctx.Process(target=_load, args=(tls_dir, people, bounds, go, results))
                p.start()
                procs.append(p)
            meter = Meter(
                {"content": cluster_pids(data)["content"], "shards": cluster_pids(data)["shard"]}
            )
            # Load processes import grpc before they wait: give them a moment, then go.
            time.sleep(1.0)
            meter.start()
            started = time.perf_counter()
            go.set()
            figures = [results.get(timeout=seconds + 120) for _ in procs]
            wall = time.perf_counter() - started
            used = meter.stop()
            for p in procs:
                p.join(30)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join(10)
            cluster.stop()
            cluster.close()
    total = sum(f["submissions"] for f in figures)
    busy = max(f["seconds"] for f in figures) or wall
    used["load"] = sum(f["cpu_s"] for f in figures)
    latencies = sorted(x for f in figures for x in f["latencies_ms"])
    return {
        "shards": shards,
        "submissions": total,
        "errors": sum(f["errors"] for f in figures),
        "seconds": round(busy, 2),
        "per_second": round(total / busy, 1) if busy else 0.0,
        "p50_ms": round(latencies[len(latencies) // 2], 2) if latencies else 0.0,
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2) if latencies else 0.0,
        "cores": {k: round(v / busy, 2) for k, v in used.items()},
        "cpu_per_1000": per_1000(used, total),
    }


def run_scaling(
    counts: list[int],
    *,
    users_per_shard: int,
    concurrency: int,
    submissions: int,
    seconds: float,
    batched: bool = True,
) -> dict[str, Any]:
    """Every step of the sweep, printed as it finishes; the multiple of the first step's rate."""
    steps = []
    print(
        f"{'shards':>6} {'subm/s':>9} {'x of 1':>7} {'p50 ms':>7} {'p99 ms':>8}   "
        f"{'cores: content':>14} {'shards':>7} {'load':>6}   content core-s/1,000"
    )
    for n in counts:
        step = run_step(
            n,
            users_per_shard=users_per_shard,
            concurrency=concurrency,
            submissions=submissions,
            seconds=seconds,
            batched=batched,
        )
        base = steps[0]["per_second"] if steps else step["per_second"]
        step["x_of_first"] = round(step["per_second"] / base, 2) if base else 0.0
        steps.append(step)
        c = step["cores"]
        print(
            f"{n:>6} {step['per_second']:>9.1f} {step['x_of_first']:>7.2f} "
            f"{step['p50_ms']:>7.2f} {step['p99_ms']:>8.2f}   {c['content']:>14.2f} "
            f"{c['shards']:>7.2f} {c['load']:>6.2f}   "
            f"{step['cpu_per_1000']['content']:.3f}",
            flush=True,
        )
    return {
        "steps": steps,
        "concurrency_per_shard": concurrency,
        "batched": batched,
        "cpu_count": mp.cpu_count(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--shards", default="1,2,4,8", help="shard counts to sweep, comma-separated")
    p.add_argument("--users", type=int, default=20, help="users per shard")
    p.add_argument("--concurrency", type=int, default=16, help="in flight per load process")
    p.add_argument("--submissions", type=int, default=3000, help="upper bound per load process")
    p.add_argument("--seconds", type=float, default=8.0, help="time bound per step")
    p.add_argument(
        "--per-call",
        action="store_true",
        help="each submission its own SubmitQuiz call, not batched as the gateway sends",
    )
    args = p.parse_args()
    counts = [int(x) for x in args.shards.split(",") if x.strip()]
    if not counts or min(counts) < 1 or max(counts) > 32:
        p.error("--shards takes counts from 1 to 32")
    out = run_scaling(
        counts,
        users_per_shard=args.users,
        concurrency=args.concurrency,
        submissions=args.submissions,
        seconds=args.seconds,
        batched=not args.per_call,
    )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
