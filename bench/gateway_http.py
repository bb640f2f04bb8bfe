#!/usr/bin/env python3
"""Requests/s and p50/p99 through the HTTP gateway, against a bare uvicorn app in the same run.

One real cluster (content, registry, hub, one hub-spawned shard, all mutual
TLS) with the gateway in front, as processes on loopback; load comes from
this process over keep-alive connections (a minimal HTTP/1.1 driver, so that
the driver costs far less than the servers; users register through
``canistry.client`` and submissions are signed by its ``Identity``), bounded
by --requests and --seconds per run. The runs:

- ``bare``: a uvicorn app (same server settings) that returns fixed JSON: the
  ceiling of this HTTP stack on this machine;
- ``unit``: ``GET /v1/units/{id}``, served from the gateway's content cache;
- ``submit``: signed ``POST /v1/units/{id}/submissions`` (verify, nonce,
  route cache, shard with its durable write and its content hop);
- ``shard direct``: the same users' submissions sent to the shard over gRPC
  with the gateway's certificate and idempotency keys, each its own
  ``SubmitQuiz`` call: the shard's own rate (as ``shard_submit`` measures
  it), which the gateway's submissions are compared with;
- ``shard direct, batched``: the same, through the gateway's own batching
  (:mod:`gateway.submissions`: submissions that meet at the shard share a
  ``SubmitQuizBatch`` call), so exactly as the gateway sends them: what the
  gateway's HTTP side, signatures and nonces cost on top;

then, unless ``--latency-requests 0``, unit reads and submissions one at a
time (unloaded latency). The ratios to ``bare`` and to ``shard direct`` say
what the gateway's own work costs. Registrations go through the gateway,
whose per-address registration limit is raised for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench._cpu import Meter, process_tree
from bench._driver import drive_submissions, up_config, write_json
from canistry.client import AsyncClient, Identity
from canistry.up import Cluster
from content_service.service import load_sample_pack
from runtime.net import free_port
from runtime.tls import TLSConfig

UNITS = json.loads(load_sample_pack())["units"]
ANSWERS = {u["id"]: {q["id"]: q["answer"] for q in u["quiz"]["questions"]} for u in UNITS}

BARE_APP = """
import sys, uvicorn
BODY = b'{"id":"math-001","subject":"math","title":"Fractions","reward":40,"version":1}'
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="asyncio",
            log_level="warning", access_log=False)
"""


@dataclass
class Run:
    label: str
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    gateway_cpu_s: float | None = None
    """CPU seconds the gateway's processes used during the run, where measured."""

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "requests": self.ok,
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "per_second": round(self.ok / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(self.pct(50), 2),
            "p99_ms": round(self.pct(99), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else 0,
            **(
                {}
                if self.gateway_cpu_s is None or not self.ok
                else {"gateway_cpu_per_1000": round(1000 * self.gateway_cpu_s / self.ok, 4)}
            ),
        }


async def drive(
    label: str,
    one: Callable[[int], Awaitable[object]],
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
) -> Run:
    run = Run(label)
    issued = 0
    deadline = time.monotonic() + max_seconds

    async def worker() -> None:
        nonlocal issued
        while issued < max_requests and time.monotonic() < deadline:
            i = issued
            issued += 1
            t0 = time.perf_counter()
            try:
                await one(i)
            except Exception as exc:
                if not run.errors:
                    print(f"{label}: first error: {exc!r}", file=sys.stderr)
                run.errors += 1
                continue
            run.latencies_ms.append((time.perf_counter() - t0) * 1000)
            run.ok += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - start
    return run


async def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            (await Conn.open(url)).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class Conn:
    """One keep-alive HTTP/1.1 connection, minimal on purpose: the driver must cost far
    less than the servers it measures (httpx costs ~1.5 ms of CPU per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Conn:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
        if body:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        payload = await self.reader.readexactly(length) if length else b""
        if status >= 400:
            raise RuntimeError(f"{status}: {payload[:200]!r}")
        return status, payload

    def close(self) -> None:
        self.writer.close()


async def pool(url: str, n: int) -> list[Conn]:
    return [await Conn.open(url) for _ in range(n)]


async def measure(
    gateway_url: str,
    bare_url: str,
    shard: str,
    tls: TLSConfig,
    *,
    concurrency: int,
    requests: int,
    seconds: float,
    users: int,
    latency_requests: int,
    gateway_pids: list[int],
) -> list[Run]:
    bounds = {"concurrency": concurrency, "max_requests": requests, "max_seconds": seconds}
    runs = []

    async def metered(label: str, one: Callable[[int], Awaitable[object]], **kw: Any) -> Run:
        """A run with the gateway's CPU seconds per 1,000 requests."""
        meter = Meter({"gateway": gateway_pids})
        meter.start()
        run = await drive(label, one, **kw)
        run.gateway_cpu_s = meter.stop()["gateway"]
        return run

    bare = await pool(bare_url, concurrency)
    free = list(bare)

    async def bare_get(i: int) -> object:
        conn = free.pop()
        try:
            return await conn.request("GET", "/")
        finally:
            free.append(conn)

    runs.append(await drive("bare uvicorn, fixed JSON", bare_get, **bounds))
    for c in bare:
        c.close()

    gw = await pool(gateway_url, concurrency)
    free = list(gw)

    async def unit_get(i: int) -> object:
        conn = free.pop()
        try:
            return await conn.request("GET", "/v1/units/math-001")
        finally:
            free.append(conn)

    await unit_get(0)
    runs.append(await metered("GET /v1/units/{id} (cached)", unit_get, **bounds))

    # Users register through the typed client; submissions are signed the same way.
    people = []
    async with AsyncClient(gateway_url, retry_unavailable_s=30) as api:
        for n in range(users):
            api.identity = Identity.generate()
            await api.register(f"Bench{n}", f"bench{n}@example.org")
            people.append(api.identity)

    async def submit(i: int) -> object:
        me = people[i % len(people)]
        unit = UNITS[(i // len(people)) % len(UNITS)]["id"]
        body = json.dumps({"answers": ANSWERS[unit]}, separators=(",", ":")).encode()
        path = f"/v1/units/{unit}/submissions"
        auth = me.authorization("POST", path, body)
        conn = free.pop()
        try:
            headers = {"Authorization": auth, "Idempotency-Key": f"b{i}"}
            return await conn.request("POST", path, body, headers)
        finally:
            free.append(conn)

    runs.append(await metered("POST submissions (signed)", submit, **bounds))
    # The same shard driven directly over gRPC, as the gateway calls it (with keys):
    # what the gateway's own work costs on the submission path.
    direct = await drive_submissions(
        "shard direct", [(me.principal, shard) for me in people], concurrency=concurrency,
        max_submissions=requests, max_seconds=seconds, tls=tls, idempotency_keys=True,
    )  # fmt: skip
    runs.append(Run("shard direct (gRPC)", direct.submissions, direct.errors, direct.seconds,
                    direct.latencies_ms))  # fmt: skip
    batched = await drive_submissions(
        "shard direct, batched", [(me.principal, shard) for me in people],
        concurrency=concurrency, max_submissions=requests, max_seconds=seconds, tls=tls,
        idempotency_keys=True, batched=True,
    )  # fmt: skip
    runs.append(Run("shard direct, batched (gRPC)", batched.submissions, batched.errors,
                    batched.seconds, batched.latencies_ms))  # fmt: skip
    for c in gw:
        c.close()
    if latency_requests:
        # New connections: the gateway closed the idle ones while the shard was driven.
        gw = await pool(gateway_url, 1)
        free = list(gw)
        one = {"concurrency": 1, "max_requests": latency_requests, "max_seconds": seconds}
        runs.append(await metered("GET /v1/units/{id}, 1 at a time", unit_get, **one))
        runs.append(await metered("POST submissions, 1 at a time", submit, **one))
        for c in gw:
            c.close()
    return runs


def run_gateway_http(
    *,
    concurrency: int = 32,
    requests: int = 20000,
    seconds: float = 10.0,
    users: int = 50,
    workers: int = 1,
    latency_requests: int = 300,
) -> dict[str, Any]:
    """All the runs on one cluster and one bare app; figures with their ratios, printed."""
    with tempfile.TemporaryDirectory(prefix="canistry-bench-") as tmp:
        root = Path(tmp)
        cluster = Cluster(up_config(root / "data", gateway_workers=workers), out=io.StringIO())
        procs: list[subprocess.Popen[bytes]] = []
        try:
            shards = cluster.boot()
            bare_port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port)]))
            bare_url = f"http://127.0.0.1:{bare_port}"
            asyncio.run(wait_http(bare_url))
            runs = asyncio.run(
                measure(
                    cluster.gateway_url, bare_url, shards[0][1], cluster.tls("gateway"),
                    concurrency=concurrency, requests=requests, seconds=seconds, users=users,
                    latency_requests=latency_requests,
                    gateway_pids=process_tree(cluster.children["gateway"].proc.pid),
                )
            )  # fmt: skip
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
            cluster.stop()
            cluster.close()

    figures = {r.label: r.summary() for r in runs}
    bare = figures["bare uvicorn, fixed JSON"]["per_second"] or 1.0
    shard = figures["shard direct (gRPC)"]["per_second"] or 1.0
    for f in figures.values():
        f["ratio_to_bare"] = round(f["per_second"] / bare, 3)
    batched = figures["shard direct, batched (gRPC)"]["per_second"] or 1.0
    signed = figures["POST submissions (signed)"]
    signed["ratio_to_shard"] = round(signed["per_second"] / shard, 3)
    signed["ratio_to_batched"] = round(signed["per_second"] / batched, 3)
    for f in figures.values():
        extra = f"x{f['ratio_to_bare']:.2f} of bare"
        if "gateway_cpu_per_1000" in f:
            extra += f", gateway {f['gateway_cpu_per_1000']:.3f} core-s per 1,000"
        if "ratio_to_shard" in f:
            extra += (f", x{f['ratio_to_shard']:.2f} of the shard direct, "
                      f"x{f['ratio_to_batched']:.2f} of it batched")  # fmt: skip
        print(f"{f['label']:>34}: {f['per_second']:8.1f} req/s   p50 {f['p50_ms']:6.2f} ms   "
              f"p99 {f['p99_ms']:7.2f} ms   ({f['requests']} ok, {f['errors']} errors, "
              f"{f['seconds']:.1f}s)   {extra}", flush=True)  # fmt: skip
    return {"concurrency": concurrency, "gateway_workers": workers, "runs": list(figures.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--requests", type=int, default=20000, help="upper bound per run")
    p.add_argument("--seconds", type=float, default=10.0, help="time bound per run")
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    p.add_argument("--latency-requests", type=int, default=300,
                   help="requests of the unloaded (concurrency 1) runs; 0 skips them")  # fmt: skip
    args = p.parse_args()
    out = run_gateway_http(
        concurrency=args.concurrency, requests=args.requests, seconds=args.seconds,
        users=args.users, workers=args.workers, latency_requests=args.latency_requests,
    )  # fmt: skip
    write_json(args.json, out)


if __name__ == "__main__":
    main()
