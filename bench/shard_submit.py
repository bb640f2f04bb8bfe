#!/usr/bin/env python3
"""Submissions/s of one shard over gRPC, with its content hop, against its ceiling in the same run.

A real cluster (content, registry, hub and one hub-spawned shard as processes
on loopback, mutual TLS) takes signed-off submissions from this process, as
the gateway sends them. In the same run, the bare chain of the same shape
(``bench._ceiling``: client -> A -> B echo -> A's group-commit fsync ->
reply, on the same transport) gives the ceiling; the ratio says what the
shard's own work costs. Both also report the CPU each role used per 1,000
submissions: content, shard and load for the cluster (from /proc/<pid>/stat
of the real processes and getrusage of this one), echo, front and load for
the ceiling. ``--per-request`` adds a run of the same cluster with one fsync
per submission, for the group-commit comparison. Bounded by --submissions
and --seconds per run.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._ceiling import run_ceiling
from bench._cpu import Meter, cluster_pids, per_1000, self_cpu_s
from bench._driver import (
    base_parser,
    drive_submissions,
    register_users,
    up_config,
    write_json,
)
from canistry.up import Cluster

__all__ = ["run_all", "run_cluster"]


def run_cluster(
    *, group_commit: bool, concurrency: int, submissions: int, seconds: float, users: int
) -> dict[str, Any]:
    """One cluster, one shard: submissions/s, latencies and CPU per 1,000 per role."""
    label = "group commit" if group_commit else "fsync per request"
    with tempfile.TemporaryDirectory(prefix="canistry-bench-") as tmp:
        data = Path(tmp) / "data"
        cluster = Cluster(
            up_config(data, shard_group_commit=group_commit),
            out=io.StringIO(),
        )
        try:
            cluster.boot()
            tls = cluster.tls("gateway")
            registry = cluster.children["registry"].address
            people = asyncio.run(register_users(registry, users, tls))
            meter = Meter(cluster_pids(data))
            load_before = self_cpu_s()
            meter.start()
            result = asyncio.run(
                drive_submissions(
                    label,
                    people,
                    concurrency=concurrency,
                    max_submissions=submissions,
                    max_seconds=seconds,
                    tls=tls,
                )
            )
            used = meter.stop()
            used["load"] = self_cpu_s() - load_before
        finally:
            cluster.stop()
            cluster.close()
    s = result.summary()
    s["cpu_s"] = {k: round(v, 3) for k, v in used.items()}
    s["cpu_per_1000"] = per_1000(used, result.submissions)
    return s


def _line(label: str, s: dict[str, Any]) -> str:
    cpu = "  ".join(f"{k} {v:.3f}" for k, v in s["cpu_per_1000"].items())
    return (
        f"{label:>22}: {s['per_second']:8.1f} submissions/s   p50 {s['p50_ms']:6.2f} ms   "
        f"p99 {s['p99_ms']:7.2f} ms   ({s['submissions']} ok, {s['errors']} errors, "
        f"{s['seconds']:.1f}s)   core-s per 1,000: {cpu}"
    )


def run_all(
    *, concurrency: int, submissions: int, seconds: float, users: int, per_request: bool = False
) -> dict[str, Any]:
    """The shard, its ceiling and (optionally) per-request fsync; prints one line each."""
    bounds = {"concurrency": concurrency, "submissions": submissions, "seconds": seconds}
    shard = run_cluster(group_commit=True, users=users, **bounds)
    print(_line("shard (group commit)", shard), flush=True)
    ceiling = run_ceiling(**bounds)
    print(_line("ceiling (bare chain)", ceiling), flush=True)
    ratio = shard["per_second"] / ceiling["per_second"] if ceiling["per_second"] else 0.0
    print(f"shard / ceiling throughput: {ratio:.2f}", flush=True)
    out: dict[str, Any] = {
        "group_commit": shard,
        "ceiling": ceiling,
        "ratio_to_ceiling": round(ratio, 3),
        "concurrency": concurrency,
    }
    if per_request:
        slow = run_cluster(group_commit=False, users=users, **bounds)
        print(_line("shard (fsync each)", slow), flush=True)
        gain = shard["per_second"] / slow["per_second"] if slow["per_second"] else 0.0
        print(f"group commit / per-request fsync throughput: {gain:.2f}x", flush=True)
        out["per_request_fsync"] = slow
        out["group_commit_gain"] = round(gain, 2)
    return out


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.add_argument(
        "--per-request", action="store_true", help="also run with one fsync per submission"
    )
    args = parser.parse_args()
    out = run_all(
        concurrency=args.concurrency,
        submissions=args.submissions,
        seconds=args.seconds,
        users=args.users,
        per_request=args.per_request,
    )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
