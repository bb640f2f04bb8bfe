#!/usr/bin/env python3
"""Hub RPCs per 1,000 rewarded submissions, on a real cluster with default allowance sizes.

Counts RequestAllowance calls served by the hub (its Introspect counters)
during a bounded run of first-time passes spread over many users.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._driver import base_parser, drive_submissions, register_users, up_config, write_json
from canistry.up import Cluster
from protos import introspect_pb2, introspect_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import TLSConfig

METHOD = "/canistry.hub.v1.Hub/RequestAllowance"


async def hub_calls(hub: str, tls: TLSConfig) -> int:
    async with make_channel(hub, tls) as ch:
        c = await introspect_pb2_grpc.IntrospectStub(ch).GetRpcCounts(
            introspect_pb2.GetRpcCountsRequest()
        )
    return int(c.calls.get(METHOD, 0))


def run_hub_calls(
    *, concurrency: int = 32, submissions: int = 10_000, seconds: float = 60.0, users: int = 400
) -> dict[str, Any]:
    """One bounded run of first-time passes; hub allowance calls per 1,000 rewarded, printed."""
    with tempfile.TemporaryDirectory(prefix="canistry-bench-") as tmp:
        cluster = Cluster(up_config(Path(tmp) / "data"), out=io.StringIO())
        try:
            cluster.boot()
            hub = cluster.children["hub"].address
            tls = cluster.tls("gateway")

            async def go():  # type: ignore[no-untyped-def]
                registry = cluster.children["registry"].address
                people = await register_users(registry, users, tls)
                before = await hub_calls(hub, tls)
                result = await drive_submissions(
                    "rewarded", people, concurrency=concurrency,
                    max_submissions=submissions, max_seconds=seconds, tls=tls,
                )  # fmt: skip
                return before, result, await hub_calls(hub, tls)

            before, result, after = asyncio.run(go())
        finally:
            cluster.stop()
            cluster.close()
    during = after - before
    per_1000 = 1000 * during / result.rewarded if result.rewarded else float("nan")
    per_1000_all = 1000 * after / result.rewarded if result.rewarded else float("nan")
    print(f"rewarded submissions: {result.rewarded} in {result.seconds:.1f}s")
    print(f"hub allowance calls during the run: {during}  ({per_1000:.3f} per 1,000 rewarded)")
    print(f"including the shard's first grant: {after}  ({per_1000_all:.3f} per 1,000 rewarded)")
    return {"rewarded": result.rewarded, "hub_calls_during": during,
            "hub_calls_total": after, "per_1000_rewarded": round(per_1000, 4),
            "per_1000_rewarded_incl_first": round(per_1000_all, 4),
            "seconds": round(result.seconds, 1)}  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__ or "")
    parser.set_defaults(submissions=10_000, seconds=60.0, users=400)
    args = parser.parse_args()
    out = run_hub_calls(concurrency=args.concurrency, submissions=args.submissions,
                        seconds=args.seconds, users=args.users)  # fmt: skip
    write_json(args.json, out)


if __name__ == "__main__":
    main()
