#!/usr/bin/env python3
"""The ceiling of one shard's submission path: a bare chain of the same shape.

client -> A -> B (echo) -> A's LMDB group-commit fsync -> reply, with mutual
TLS on both hops. A and B are real processes on loopback built from the
project's own transport (``runtime.rpc.Server`` and ``make_channel``, so the
same edge, TLS and keepalive) and store (``runtime.store.GroupCommitter``),
with none of a shard's rules: A serves ``UserShard/SubmitQuiz`` by calling B's
``ContentService/VerifyQuiz`` (which answers at once) and writing one small
record durably. Whatever a shard does beyond this is what it costs over the
ceiling. Run alone it prints the ceiling's submissions/s; ``shard_submit``
and ``python -m bench`` run it beside the real shard in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cpu import Meter, per_1000, self_cpu_s
from bench._driver import drive_submissions
from protos import content_pb2, content_pb2_grpc, shard_pb2, shard_pb2_grpc
from runtime import authz, logs
from runtime.rpc import Context, Server, ServerConfig, ServiceBinding, make_channel
from runtime.store import GroupCommitter, Store, StoreConfig
from runtime.tls import ClusterCA, Identity, Role, TLSConfig

__all__ = ["Chain", "run_ceiling"]

_CONTENT = "canistry.content.v1.Content"
_SHARD = "canistry.shard.v1.UserShard"


def _open_rules(full_name: str) -> authz.Rules:
    from google.protobuf import descriptor_pool

    service = descriptor_pool.Default().FindServiceByName(full_name)
    return {m.name: authz.ANY for m in service.methods}


class _Echo(content_pb2_grpc.ContentServicer):
    async def VerifyQuiz(
        self, request: content_pb2.VerifyQuizRequest, context: Context
    ) -> content_pb2.VerifyQuizReply:
        n = len(request.answers)
        return content_pb2.VerifyQuizReply(passed=True, score=n, total=n)


class _Front(shard_pb2_grpc.UserShardServicer):
    def __init__(self, content: content_pb2_grpc.ContentStub, writer: GroupCommitter) -> None:
        self._content = content
        self._writer = writer
        self._db = writer.store.db("writes")
        self._seq = 0

    async def SubmitQuiz(
        self, request: shard_pb2.SubmitQuizRequest, context: Context
    ) -> shard_pb2.SubmitQuizReply:
        verdict = await self._content.VerifyQuiz(
            content_pb2.VerifyQuizRequest(unit_id=request.unit_id, answers=request.answers),
            timeout=10,
        )
        self._seq += 1
        key = self._seq.to_bytes(8, "big")
        value = request.SerializeToString()
        await self._writer.submit(lambda txn: txn.put(key, value, db=self._db))
        return shard_pb2.SubmitQuizReply(
            passed=verdict.passed, score=verdict.score, total=verdict.total
        )


async def _serve(args: argparse.Namespace) -> None:
    tls = TLSConfig.from_dir(args.tls_dir)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    config = ServerConfig(tls=tls)
    if args.role == "echo":
        server = Server(
            "ceiling-echo",
            config,
            [
                ServiceBinding(
                    _CONTENT,
                    lambda s: content_pb2_grpc.add_ContentServicer_to_server(_Echo(), s),
                    _open_rules(_CONTENT),
                )
            ],
        )
        writer = None
    else:
        store = Store(StoreConfig(path=Path(args.data_dir), databases=["writes"]))
        writer = GroupCommitter(store, group=not args.per_request)
        await writer.start()
        channel = make_channel(args.peer, tls, server_role=Role.CONTENT)
        front = _Front(content_pb2_grpc.ContentStub(channel), writer)
        server = Server(
            "ceiling-front",
            config,
            [
                ServiceBinding(
                    _SHARD,
                    lambda s: shard_pb2_grpc.add_UserShardServicer_to_server(front, s),
                    _open_rules(_SHARD),
                )
            ],
        )
    await server.start()
    await asyncio.to_thread(Path(args.ready_file).write_text, server.address)
    try:
        await stopping.wait()
    finally:
        await server.stop()
        if writer is not None:
            await writer.stop()
            writer.store.close()


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.poll() is not None:
            raise RuntimeError(f"ceiling process exited with {proc.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"{path} did not appear in {timeout_s:.0f}s")


class Chain:
    """The two processes of the ceiling, with a client certificate; a context manager."""

    def __init__(self, root: Path, *, group_commit: bool = True) -> None:
        self.root = root
        self.group_commit = group_commit
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""
        self.client_tls: TLSConfig | None = None

    def __enter__(self) -> Chain:
        ca = ClusterCA.open(self.root / "ca")
        certs = {
            "echo": ca.ensure(Identity(Role.CONTENT, "content"), self.root / "tls-echo"),
            "front": ca.ensure(Identity(Role.SHARD, "ceiling"), self.root / "tls-front"),
        }
        self.client_tls = ca.ensure(Identity(Role.GATEWAY, "gateway"), self.root / "tls-client")
        try:
            peer = ""
            for role in ("echo", "front"):
                ready = self.root / f"{role}.addr"
                argv = [
                    sys.executable,
                    "-m",
                    "bench._ceiling",
                    "--serve",
                    role,
                    "--tls-dir",
                    str(certs[role].cert.parent),
                    "--ready-file",
                    str(ready),
                    "--peer",
                    peer,
                    "--data-dir",
                    str(self.root / "lmdb"),
                ]
                if not self.group_commit:
                    argv.append("--per-request")
                log = open(self.root / f"{role}.log", "ab")
                self.procs[role] = subprocess.Popen(argv, stdout=log, stderr=log, cwd=_ROOT)
                log.close()
                peer = _wait_file(ready, self.procs[role])
            self.address = peer
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def pids(self) -> dict[str, list[int]]:
        return {role: [p.pid] for role, p in self.procs.items()}

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_ROOT = Path(__file__).resolve().parent.parent


def run_ceiling(
    *, concurrency: int, submissions: int, seconds: float, group_commit: bool = True
) -> dict[str, Any]:
    """Drive the bare chain; its submissions/s, latencies and CPU per 1,000 per role."""
    with (
        tempfile.TemporaryDirectory(prefix="canistry-ceiling-") as tmp,
        Chain(Path(tmp), group_commit=group_commit) as chain,
    ):
        users = [(f"ceiling-{i}", chain.address) for i in range(64)]
        meter = Meter(chain.pids)
        load_before = self_cpu_s()
        meter.start()
        result = asyncio.run(
            drive_submissions(
                "ceiling",
                users,
                concurrency=concurrency,
                max_submissions=submissions,
                max_seconds=seconds,
                tls=chain.client_tls,
            )
        )
        used = meter.stop()
        used["load"] = self_cpu_s() - load_before
    summary = result.summary()
    summary["cpu_s"] = {k: round(v, 3) for k, v in used.items()}
    summary["cpu_per_1000"] = per_1000(used, result.submissions)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--serve", choices=["echo", "front"], help=argparse.SUPPRESS)
    p.add_argument("--tls-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--peer", default="", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--per-request", action="store_true", help="one fsync per request")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--submissions", type=int, default=4000, help="upper bound")
    p.add_argument("--seconds", type=float, default=10.0, help="time bound")
    args = p.parse_args()
    if args.serve:
        args.role = args.serve
        logs.configure(f"ceiling-{args.role}", level="warning")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args))
        return
    s = run_ceiling(
        concurrency=args.concurrency,
        submissions=args.submissions,
        seconds=args.seconds,
        group_commit=not args.per_request,
    )
    print(
        f"ceiling: {s['per_second']:8.1f} submissions/s   p50 {s['p50_ms']:6.2f} ms   "
        f"p99 {s['p99_ms']:7.2f} ms   cpu per 1,000: {s['cpu_per_1000']}"
    )


if __name__ == "__main__":
    main()
