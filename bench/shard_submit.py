#!/usr/bin/env python3
"""Submissions/s of one shard over gRPC, with its content hop: group commit vs one fsync each.

Two real clusters in turn (content, registry, hub and one hub-spawned shard as
processes on loopback), identical but for the shard's commit mode. Load comes
from this process, bounded by --submissions and --seconds.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._driver import base_parser, drive_submissions, register_users, write_json
from canistry.up import Cluster, UpConfig


def run_mode(group_commit: bool, args) -> dict:  # type: ignore[no-untyped-def]
    label = "group commit" if group_commit else "fsync per request"
    with tempfile.TemporaryDirectory(prefix="canistry-bench-") as tmp:
        cluster = Cluster(
            UpConfig(
                data_dir=Path(tmp) / "data",
                attempt_limit=1_000_000,
                token_limit=10**12,
                shard_group_commit=group_commit,
                port=0,
            ),
            out=io.StringIO(),
        )
        try:
            cluster.boot()

            tls = cluster.tls("gateway")

            async def go():  # type: ignore[no-untyped-def]
                registry = cluster.children["registry"].address
                users = await register_users(registry, args.users, tls)
                return await drive_submissions(
                    label, users, concurrency=args.concurrency,
                    max_submissions=args.submissions, max_seconds=args.seconds, tls=tls,
                )  # fmt: skip

            result = asyncio.run(go())
        finally:
            cluster.stop()
            cluster.close()
    s = result.summary()
    print(f"{label:>18}: {s['per_second']:8.1f} submissions/s   p50 {s['p50_ms']:6.2f} ms   "
          f"p99 {s['p99_ms']:7.2f} ms   ({s['submissions']} ok, {s['errors']} errors, "
          f"{s['seconds']:.1f}s)")  # fmt: skip
    return s


def main() -> None:
    args = base_parser(__doc__ or "").parse_args()
    per_request = run_mode(False, args)
    grouped = run_mode(True, args)
    ratio = grouped["per_second"] / per_request["per_second"] if per_request["per_second"] else 0
    print(f"group commit / per-request fsync throughput: {ratio:.2f}x")
    write_json(args.json, {"per_request_fsync": per_request, "group_commit": grouped,
                           "throughput_ratio": round(ratio, 2),
                           "concurrency": args.concurrency})  # fmt: skip


if __name__ == "__main__":
    main()
