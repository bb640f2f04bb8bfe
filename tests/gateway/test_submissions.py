"""The gateway's submissions to shards, merged into batched calls (gateway.submissions).

Against a real shard (real gRPC, real LMDB, with in-test content and hub) and
against scripted shards: an older one without SubmitQuizBatch, a failing one,
a hanging one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.upstream import Route, Upstream
from protos import shard_pb2, shard_pb2_grpc
from runtime import logs
from runtime.errors import DeadlineExceeded, PeerUnreachable, Unavailable, UnknownUnit
from runtime.rpc import Context, Server, ServerConfig, ServiceBinding
from tests.gateway.test_upstream import FakeRegistry, _server
from tests.polling import eventually
from tests.user_shard.conftest import Client, shard_config
from tests.user_shard.fakes import RIGHT, WRONG, FakeContent, FakeHub
from user_shard import ShardService

SUBMIT = "/canistry.shard.v1.UserShard/SubmitQuiz"
SUBMIT_BATCH = "/canistry.shard.v1.UserShard/SubmitQuizBatch"


def submission(principal: str, unit: str = "u1", answers: Any = RIGHT, key: str = "") -> Any:
    return shard_pb2.SubmitQuizRequest(
        principal=principal, unit_id=unit, answers=answers, idempotency_key=key
    )


@pytest.fixture
async def registry() -> AsyncIterator[tuple[FakeRegistry, Server]]:
    fake = FakeRegistry()
    server = _server("registry", fake)
    await server.start()
    yield fake, server
    await server.stop()


def upstream_for(tmp_path: Path, registry: Server, **overrides: Any) -> Upstream:
    cfg = GatewayConfig(
        registry_address=registry.address,
        content_address="127.0.0.1:1",
        hub_address="127.0.0.1:1",
        data_dir=tmp_path / "gateway",
        **overrides,
    )
    return Upstream(cfg)


async def test_concurrent_submissions_to_a_shard_share_calls_and_keep_their_answers(
    tmp_path: Path, registry: tuple[FakeRegistry, Server]
) -> None:
    fake_registry, registry_server = registry
    content, hub = FakeContent(), FakeHub()
    await content.start()
    await hub.start()
    cfg = shard_config(tmp_path, hub, content.server.address, daily_attempt_limit=100)
    try:
        async with ShardService(cfg) as shard:
            users = [f"user{i}" for i in range(30)]
            client = Client(shard.address)
            await asyncio.gather(*(client.create(u) for u in users))
            await client.close()
            route = Route(cfg.shard_id, shard.address)
            fake_registry.routes.update({u: route for u in users})
            upstream = upstream_for(tmp_path, registry_server)
            try:
                replies = await asyncio.gather(
                    *(
                        upstream.submit(u, submission(u, answers=RIGHT if i % 2 else WRONG),
                                        retry_unreachable=True)
                        for i, u in enumerate(users)
                    ),
                    upstream.submit("user0", submission("user0", "nope"), retry_unreachable=True),
                    return_exceptions=True,
                )  # fmt: skip
                assert [r.passed for r in replies[:30]] == [bool(i % 2) for i in range(30)]
                assert isinstance(replies[30], UnknownUnit), "one item's own error"
                sent = upstream.submissions(route)
                assert sent.items == 31
                assert sent.batches < 31, "submissions that met at the shard shared a call"
                counts = shard.server.rpc_counts
                assert counts[SUBMIT_BATCH] >= 1
                assert counts[SUBMIT_BATCH] + counts[SUBMIT] == sent.batches
            finally:
                await upstream.close()
            user = shard.store.user(b"user1")
            assert user is not None and user.today.attempts == 1
    finally:
        await content.stop()
        await hub.stop()


class Scripted(shard_pb2_grpc.UserShardServicer):
    """A shard that grades everything passed, with SubmitQuizBatch as scripted."""

    def __init__(self, batch: str) -> None:
        self.batch = batch
        """"missing" (an older shard), "fail" (UNAVAILABLE), "hang", or "ok"."""
        self.request_ids: list[str] = []
        self.release = asyncio.Event()

    async def SubmitQuiz(
        self, request: shard_pb2.SubmitQuizRequest, context: Context
    ) -> shard_pb2.SubmitQuizReply:
        self.request_ids.append(logs.current_request_id() or "")
        await self.release.wait()
        return shard_pb2.SubmitQuizReply(passed=True)

    async def SubmitQuizBatch(
        self, request: shard_pb2.SubmitQuizBatchRequest, context: Context
    ) -> shard_pb2.SubmitQuizBatchReply:
        if self.batch == "missing":
            raise NotImplementedError  # what the generated base does: UNIMPLEMENTED
        if self.batch == "fail":
            raise Unavailable("the shard's content is down")
        if self.batch == "hang":
            await asyncio.Event().wait()
        self.request_ids += [i.request_id for i in request.items]
        reply = shard_pb2.SubmitQuizReply(passed=True)
        return shard_pb2.SubmitQuizBatchReply(
            outcomes=[shard_pb2.SubmitQuizOutcome(reply=reply) for _ in request.items]
        )


async def scripted_world(
    tmp_path: Path, registry: tuple[FakeRegistry, Server], batch: str, **overrides: Any
) -> tuple[Scripted, Server, Upstream, Route]:
    fake_registry, registry_server = registry
    scripted = Scripted(batch)
    binding = ServiceBinding(
        "canistry.shard.v1.UserShard",
        lambda s: shard_pb2_grpc.add_UserShardServicer_to_server(scripted, s),
    )
    server = Server("shard", ServerConfig(grace_s=0), [binding])
    await server.start()
    route = Route("s1", server.address)
    fake_registry.routes.update({f"user{i}": route for i in range(10)})
    return scripted, server, upstream_for(tmp_path, registry_server, **overrides), route


async def submit_as(upstream: Upstream, n: int) -> Any:
    """User n's submission, under request id ``req-n``."""
    token = logs.bind_request_id(f"req-{n}")
    try:
        return await upstream.submit(f"user{n}", submission(f"user{n}"), retry_unreachable=False)
    finally:
        logs.reset_request_id(token)


async def first_call_in_flight(
    scripted: Scripted, upstream: Upstream, route: Route
) -> tuple[asyncio.Future[Any], asyncio.Future[list[Any]]]:
    """User 0's submission, held at the shard, and users 1 to 9's, queued behind it."""
    first = asyncio.ensure_future(submit_as(upstream, 0))
    await eventually(lambda: scripted.request_ids, 10, "the first call")
    rest = asyncio.gather(*(submit_as(upstream, n) for n in range(1, 10)), return_exceptions=True)
    await eventually(lambda: upstream.submissions(route).waiting == 9, 10, "the rest queued")
    return first, rest


async def test_an_older_shard_without_batches_gets_single_calls(
    tmp_path: Path, registry: tuple[FakeRegistry, Server]
) -> None:
    scripted, server, upstream, route = await scripted_world(tmp_path, registry, "missing")
    try:
        first, rest = await first_call_in_flight(scripted, upstream, route)
        scripted.release.set()
        replies = [await first, *await rest]
        assert all(r.passed for r in replies)
        assert server.rpc_counts[SUBMIT_BATCH] == 1, "asked once, then single calls"
        assert server.rpc_counts[SUBMIT] == 10
        assert sorted(scripted.request_ids) == sorted(f"req-{n}" for n in range(10))
        # For a while it is not asked again.
        await asyncio.gather(*(submit_as(upstream, n) for n in range(10)))
        assert server.rpc_counts[SUBMIT_BATCH] == 1 and server.rpc_counts[SUBMIT] == 20
    finally:
        await upstream.close()
        await server.stop()


async def test_a_failed_batch_fails_each_submission_in_it_and_items_keep_their_ids(
    tmp_path: Path, registry: tuple[FakeRegistry, Server]
) -> None:
    for script in ("fail", "ok"):
        scripted, server, upstream, route = await scripted_world(tmp_path, registry, script)
        try:
            first, rest = await first_call_in_flight(scripted, upstream, route)
            scripted.release.set()
            assert (await first).passed
            results = await rest
            assert server.rpc_counts[SUBMIT_BATCH] == 1, "the nine left in one call"
            if script == "fail":
                # The shard answered (it is not unreachable), so nobody's route is refreshed.
                assert all(type(r) is Unavailable for r in results), results
                assert len({id(r) for r in results}) == 9, "each caller raises its own error"
            else:
                assert all(r.passed for r in results)
                assert sorted(scripted.request_ids) == sorted(f"req-{n}" for n in range(10))
        finally:
            await upstream.close()
            await server.stop()


async def test_a_hanging_shard_fails_each_submission_at_its_deadline(
    tmp_path: Path, registry: tuple[FakeRegistry, Server]
) -> None:
    scripted, server, upstream, route = await scripted_world(
        tmp_path, registry, "hang", submit_deadline_s=1.0
    )
    try:
        started = asyncio.get_running_loop().time()
        first, rest = await first_call_in_flight(scripted, upstream, route)
        scripted.release.set()  # the first returns; the batch of the rest hangs
        assert (await first).passed
        results = await rest
        assert all(isinstance(r, DeadlineExceeded) for r in results), results
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await upstream.close()
        await server.stop()


async def test_an_unreachable_shard_fails_its_batch_as_unreachable(
    tmp_path: Path, registry: tuple[FakeRegistry, Server]
) -> None:
    _, server, upstream, _ = await scripted_world(tmp_path, registry, "ok")
    await upstream.close()
    await server.stop()
    upstream = upstream_for(tmp_path, registry[1])
    try:
        results = await asyncio.gather(
            *(submit_as(upstream, n) for n in range(5)), return_exceptions=True
        )
        # Not retried: without an idempotency key a submission must not run twice.
        assert all(isinstance(r, PeerUnreachable) for r in results), results
    finally:
        await upstream.close()


def _figure(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_through_the_gateway_concurrent_submissions_are_batched_and_answered(
    url: str,
) -> None:
    """The real gateway process and cluster: every submission answered as its own, and
    the gateway's metrics show that calls carried several."""
    import httpx

    from tests.gateway.support import registered
    from tests.integration.direct import SAMPLE

    async def figures() -> tuple[float, float]:
        async with httpx.AsyncClient(base_url=url) as http:
            text = (await http.get("/metrics")).text
        return (
            _figure(text, "canistry_gateway_submission_batch_size_count"),
            _figure(text, "canistry_gateway_submission_batch_size_sum"),
        )

    people = [await registered(url, f"Batch{n}") for n in range(3)]
    units = [u for u in SAMPLE if u["reward"] > 0][:6]
    right = [{q["id"]: q["answer"] for q in u["quiz"]["questions"]} for u in units]
    calls_before, items_before = await figures()
    results = await asyncio.gather(
        *(
            api.submit(unit["id"], answers, idempotency_key=f"batch-{n}-{unit['id']}")
            for n, api in enumerate(people)
            for unit, answers in zip(units, right, strict=True)
        )
    )
    assert len(results) == 18 and all(r.passed and r.first_completion for r in results)
    for api in people:
        balance = await api.balance()
        assert balance.staked + balance.pending == sum(u["reward"] for u in units)
        await api.aclose()
    calls, items = await figures()
    assert items - items_before == 18
    assert calls - calls_before < 18, "some calls to a shard carried several submissions"
