"""Shared load driver for the benchmarks: bounded in count and time, loopback only.

It calls the registry and the shards as the gateway does, with the gateway's
certificate (``Cluster.tls("gateway")``), so the figures include mutual TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from canistry.up import UpConfig
from content_service.service import load_sample_pack
from protos import registry_pb2, registry_pb2_grpc, shard_pb2, shard_pb2_grpc
from runtime.rpc import make_channel
from runtime.tls import TLSConfig

UNITS = json.loads(load_sample_pack())["units"]
ANSWERS = {u["id"]: {q["id"]: q["answer"] for q in u["quiz"]["questions"]} for u in UNITS}


@dataclass
class RunResult:
    label: str
    submissions: int
    rewarded: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def per_second(self) -> float:
        return self.submissions / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

    def summary(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("latencies_ms")
        d.update(
            per_second=round(self.per_second, 1),
            p50_ms=round(self.percentile(50), 2),
            p99_ms=round(self.percentile(99), 2),
            mean_ms=round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0,
        )
        return d


async def register_users(registry: str, count: int, tls: TLSConfig | None) -> list[tuple[str, str]]:
    """Register ``count`` users; returns (principal, shard address)."""
    out = []
    async with make_channel(registry, tls) as ch:
        reg = registry_pb2_grpc.RegistryStub(ch)
        for _ in range(count):
            p = f"bench-{uuid.uuid4().hex[:20]}"
            a = await reg.Assign(registry_pb2.AssignRequest(principal=p))
            async with make_channel(a.address, tls) as sch:
                await shard_pb2_grpc.UserShardStub(sch).CreateUser(
                    shard_pb2.CreateUserRequest(
                        principal=p, profile=shard_pb2.Profile(name="Bench", email="b@example.org")
                    )
                )
            out.append((p, a.address))
    return out


async def drive_submissions(
    label: str,
    users: list[tuple[str, str]],
    *,
    concurrency: int,
    max_submissions: int,
    max_seconds: float,
    tls: TLSConfig | None,
    idempotency_keys: bool = False,
    batched: bool = False,
) -> RunResult:
    """Each worker passes units for its users in turn; stops at the count or the time limit.

    With ``idempotency_keys`` each submission carries a fresh key, as the
    gateway's do when its client sends one (the shard then keeps its reply).
    With ``batched`` the submissions to one shard go through the gateway's own
    :class:`~gateway.submissions.ShardSubmissions`, which merges those that meet
    into ``SubmitQuizBatch`` calls, as the gateway sends them; without it, each
    is its own ``SubmitQuiz`` call.
    """
    channels = {addr: make_channel(addr, tls) for _, addr in users}
    stubs = {addr: shard_pb2_grpc.UserShardStub(ch) for addr, ch in channels.items()}
    batches = _batchers(stubs) if batched else {}

    async def send(addr: str, request: shard_pb2.SubmitQuizRequest) -> shard_pb2.SubmitQuizReply:
        if addr in batches:
            reply: shard_pb2.SubmitQuizReply = await batches[addr].submit(request)
            return reply
        return await stubs[addr].SubmitQuiz(request, timeout=10)

    result = RunResult(label, 0, 0, 0, 0.0)
    issued = 0
    deadline = time.monotonic() + max_seconds
    run_id = uuid.uuid4().hex[:8]

    async def worker(w: int) -> None:
        nonlocal issued
        i = w
        while issued < max_submissions and time.monotonic() < deadline:
            issued += 1
            principal, addr = users[i % len(users)]
            unit = UNITS[(i // len(users)) % len(UNITS)]
            i += concurrency
            t0 = time.perf_counter()
            try:
                r = await send(
                    addr,
                    shard_pb2.SubmitQuizRequest(
                        principal=principal,
                        unit_id=unit["id"],
                        answers=ANSWERS[unit["id"]],
                        idempotency_key=f"d{run_id}-{i}" if idempotency_keys else "",
                    ),
                )
            except Exception:
                result.errors += 1
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.submissions += 1
            result.rewarded += r.reward > 0

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    result.seconds = time.perf_counter() - start
    for b in batches.values():
        await b.close()
    for ch in channels.values():
        await ch.close()
    return result


def _batchers(stubs: dict[str, Any]) -> dict[str, Any]:
    """The gateway's batching per shard address (none in a checkout from before it)."""
    try:
        from gateway.submissions import ShardSubmissions
    except ImportError:
        return {}
    return {addr: ShardSubmissions(stub, addr, deadline_s=10) for addr, stub in stubs.items()}


#: UpConfig fields that changed names, each with every name it has had.
_SAME_FIELD = (
    ("daily_attempt_limit", "attempt_limit"),
    ("daily_token_limit", "token_limit"),
    ("stall_timeout_s", "ready_timeout_s"),
)


def up_config(data_dir: Path, **fields: Any) -> UpConfig:
    """An ``UpConfig`` for a bench cluster, whichever names this checkout gives its fields.

    Fields are given by their newest names; one this ``UpConfig`` knows by an
    older name is passed by that, and one it does not know at all (a
    setting older code lacks, like ``content_replicas``) is left out. Bench
    defaults: any free gateway port, one gateway worker, limits that no run
    reaches, registrations through the gateway not rate-limited.
    """
    known = {f.name for f in dataclasses.fields(UpConfig)}
    wanted: dict[str, Any] = {
        "port": 0,
        "gateway_workers": 1,
        "daily_attempt_limit": 1_000_000,
        "daily_token_limit": 10**12,
        "register_rate": 10_000.0,
        "register_burst": 10_000,
        **fields,
    }
    for names in _SAME_FIELD:
        for name in names:
            if name in wanted and name not in known:
                value = wanted.pop(name)
                for alias in names:
                    if alias in known:
                        wanted[alias] = value
    return UpConfig(data_dir=data_dir, **{k: v for k, v in wanted.items() if k in known})


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--submissions", type=int, default=4000, help="upper bound per run")
    p.add_argument("--seconds", type=float, default=20.0, help="time bound per run")
    p.add_argument("--users", type=int, default=200)
    return p


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")
