"""Cached unit reads answered by the protocol itself (gateway.direct_reads) answer as the app does.

A gateway runs in this process over real HTTP against the real cluster, with
its :class:`~gateway.direct_reads.DirectReads` watched, so that each test
knows which requests the protocol answered; a read with a query string
takes the app's path, so the two answers can be compared. Pipelining and
connection handling are checked over raw sockets; the access log line and
metrics on a ``canistry serve gateway`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from canistry.up import Cluster
from gateway.app import create_app
from gateway.direct_reads import STATE_KEY, DirectReads
from tests.gateway.support import GatewayProcess, cluster_gateway_config, in_process
from tests.polling import eventually

UNIT = "math-001"
PATH = f"/v1/units/{UNIT}"
ORIGIN = "https://app.example.org"
PER_REQUEST = {"x-request-id", "date"}


@dataclass
class Served:
    url: str
    port: int
    server: uvicorn.Server
    answered: list[int] = field(default_factory=list)
    """The status of each request the protocol answered itself."""
    reads: Any = None


@contextlib.asynccontextmanager
async def serving(cluster: Cluster, data_dir: Path) -> AsyncIterator[Served]:
    config = cluster_gateway_config(
        cluster, data_dir, cors_origins=(ORIGIN,), keep_alive_s=1, header_timeout_s=2
    )
    app = create_app(config)
    async with in_process(app, config) as (url, server):
        served = Served(url, int(url.rsplit(":", 1)[1]), server)
        reads = getattr(app.state, STATE_KEY)
        assert isinstance(reads, DirectReads)
        answer = reads.answer

        def watched(*args: Any) -> Any:
            result = answer(*args)
            if result is not None:
                served.answered.append(result[1])
            return result

        reads.answer = watched  # type: ignore[method-assign]
        served.reads = reads
        yield served


@pytest.fixture
async def served(gw_cluster: Cluster, tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(gw_cluster, tmp_path) as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as http:
            assert (await http.get(PATH)).status_code == 200  # fills the cache
        s.answered.clear()
        yield s


def headers_of(r: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in r.headers.multi_items() if k not in PER_REQUEST]


async def test_a_hit_is_answered_as_the_app_answers_it(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        direct = await http.get(PATH)
        by_app = await http.get(PATH + "?via=app")  # a query string: the app's path
    assert served.answered == [200]
    assert direct.status_code == by_app.status_code == 200
    assert direct.content == by_app.content and json.loads(direct.content)["id"] == UNIT
    assert headers_of(direct) == headers_of(by_app)
    assert direct.headers["etag"] == by_app.headers["etag"]
    assert int(direct.headers["content-length"]) == len(direct.content)
    assert re.fullmatch(r"[0-9a-f]{16}", direct.headers["x-request-id"])
    assert direct.headers["x-request-id"] != by_app.headers["x-request-id"]


async def test_a_valid_request_id_is_echoed_and_an_invalid_one_replaced(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        given = await http.get(PATH, headers={"X-Request-ID": "client-id.7:a_b"})
        bad = await http.get(PATH, headers={"X-Request-ID": "has space"})
    assert served.answered == [200, 200]
    assert given.headers["x-request-id"] == "client-id.7:a_b"
    assert re.fullmatch(r"[0-9a-f]{16}", bad.headers["x-request-id"])


async def test_if_none_match_gets_the_apps_304(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        etag = (await http.get(PATH)).headers["etag"]
        for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            direct = await http.get(PATH, headers={"If-None-Match": value})
            by_app = await http.get(PATH + "?via=app", headers={"If-None-Match": value})
            assert direct.status_code == by_app.status_code == 304, value
            assert direct.content == b""
            assert headers_of(direct) == headers_of(by_app)
        other = await http.get(PATH, headers={"If-None-Match": '"other"'})
        too_long = await http.get(PATH, headers={"If-None-Match": '"' + "x" * 1100 + '"'})
    assert other.status_code == 200 and too_long.status_code == 422
    assert served.answered == [200, 304, 304, 304, 304, 200]  # the over-long one: the app's


async def test_cors_headers_as_the_app_adds_them(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        for origin in (ORIGIN, "https://evil.example.org"):
            direct = await http.get(PATH, headers={"Origin": origin})
            by_app = await http.get(PATH + "?via=app", headers={"Origin": origin})
            assert headers_of(direct) == headers_of(by_app), origin
            assert direct.headers["vary"] == "Origin"
        granted = await http.get(PATH, headers={"Origin": ORIGIN})
        refused = await http.get(PATH, headers={"Origin": "https://evil.example.org"})
    assert granted.headers["access-control-allow-origin"] == ORIGIN
    assert "X-Request-ID" in granted.headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in refused.headers
    assert served.answered == [200] * 4


async def test_misses_and_other_requests_are_left_to_the_app(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
        unknown = await http.get("/v1/units/no-such-unit")
        bad_slug = await http.get("/v1/units/Not_A_Slug")
        head = await http.head(PATH)
        other = await http.get("/v1/units/science-001")  # a miss, then a hit
        again = await http.get("/v1/units/science-001")
    assert (unknown.status_code, bad_slug.status_code, head.status_code) == (404, 422, 405)
    assert unknown.headers["content-type"] == "application/problem+json"
    assert other.status_code == again.status_code == 200 and other.content == again.content
    assert served.answered == [200]


async def sent(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``port`` on which ``data`` (one write) has been sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", 0))), 20)
    return status, headers, body


def get(path: str, rid: str, extra: str = "", version: str = "1.1") -> bytes:
    return (f"GET {path} HTTP/{version}\r\nHost: t\r\nX-Request-ID: {rid}\r\n{extra}\r\n").encode()


async def test_pipelined_reads_are_answered_in_order(served: Served) -> None:
    reader, writer = await sent(served.port, get(PATH, "one") + get(PATH, "two"))
    try:
        answers = [await read_response(reader) for _ in range(2)]
    finally:
        writer.close()
    assert [(s, h["x-request-id"]) for s, h, _ in answers] == [(200, "one"), (200, "two")]
    assert answers[0][2] == answers[1][2]
    assert served.answered == [200, 200]


async def test_a_hit_pipelined_behind_a_slow_request_waits_for_it(served: Served) -> None:
    slow = get("/v1/units/no-such-unit", "slow")  # an upstream call before its answer
    reader, writer = await sent(served.port, slow + get(PATH, "hit") + get(PATH, "3"))
    try:
        answers = [await read_response(reader) for _ in range(3)]
    finally:
        writer.close()
    assert [(s, h["x-request-id"]) for s, h, _ in answers] == [
        (404, "slow"),
        (200, "hit"),
        (200, "3"),
    ]


@pytest.mark.parametrize(
    ("version", "extra"), [("1.0", ""), ("1.1", "Connection: close\r\n")], ids=["http10", "close"]
)
async def test_a_read_that_closes_the_connection_closes_it(
    served: Served, version: str, extra: str
) -> None:
    # A read pipelined behind the one that closes is never answered.
    request = get(PATH, "last", extra, version) + get(PATH, "after")
    reader, writer = await sent(served.port, request)
    try:
        status, headers, body = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 20)  # EOF: the server closed
    finally:
        writer.close()
    assert status == 200 and headers["x-request-id"] == "last" and json.loads(body)["id"] == UNIT
    assert headers["connection"] == "close" and rest == b""


async def test_a_kept_alive_connection_is_served_again_then_closed_when_idle(
    served: Served,
) -> None:
    before = served.server.server_state.total_requests
    reader, writer = await sent(served.port, get(PATH, "a"))
    try:
        first = await read_response(reader)
        writer.write(get(PATH, "b"))
        second = await read_response(reader)
        assert served.server.server_state.total_requests == before + 2
        # The keep-alive timer (1 s here) was armed again after the answer.
        rest = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    assert (first[1]["x-request-id"], second[1]["x-request-id"], rest) == ("a", "b", b"")
    assert served.answered == [200, 200]


def _count(metrics: str, status: str) -> float:
    pattern = (
        r'canistry_gateway_requests_total\{method="GET",route="/v1/units/\{unit_id\}",'
        rf'status="{status}"\}} ([0-9.e+]+)'
    )
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


async def test_a_served_gateway_counts_and_logs_its_hits(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        assert (await http.get(PATH)).status_code == 200  # fills the cache
        before = (await http.get("/metrics")).text
        hit = await http.get(PATH, headers={"X-Request-ID": "direct-read-0001"})
        etag = hit.headers["etag"]
        not_modified = await http.get(
            PATH, headers={"X-Request-ID": "direct-read-0002", "If-None-Match": etag}
        )
        after = (await http.get("/metrics")).text
    assert (hit.status_code, not_modified.status_code) == (200, 304)
    assert _count(after, "200") == _count(before, "200") + 1
    assert _count(after, "304") == _count(before, "304") + 1

    def lines() -> list[dict[str, Any]]:
        records = [
            json.loads(line)
            for line in gateway.log_file.read_text().splitlines()
            if line.startswith("{")
        ]
        return [r for r in records if str(r.get("request_id", "")).startswith("direct-read-")]

    found = await eventually(lambda: len(lines()) == 2 and lines(), what="the access log lines")
    for record, status in zip(found, (200, 304), strict=True):
        assert record["event"] == "http_request" and record["level"] == "info"
        assert record["method"] == "GET" and record["route"] == "/v1/units/{unit_id}"
        assert record["status"] == status and record["service"] == "gateway"
        assert isinstance(record["ms"], float) and "timestamp" in record


async def test_a_request_stalled_behind_a_hit_gets_its_408(served: Served) -> None:
    # In one write: a hit, then a head that never ends. The hit's keep-alive timer
    # (1 s) must not close the connection: the head's own deadline (2 s) answers 408.
    stalled = b"GET /v1/units/math-002 HTTP/1.1\r\nHost: t\r\nX-Slow: "
    reader, writer = await sent(served.port, get(PATH, "hit") + stalled)
    try:
        status, headers, _ = await read_response(reader)
        rest = await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()
    assert (status, headers["x-request-id"]) == (200, "hit")
    assert rest.startswith(b"HTTP/1.1 408 "), rest[:200]
    assert served.answered == [200]


async def test_a_hit_at_the_concurrency_cap_gets_the_edges_503(served: Served) -> None:
    edge = served.reads.edge
    edge.in_flight += edge.max_concurrency  # as if that many requests were in progress
    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=30) as http:
            refused = await http.get(PATH)
    finally:
        edge.in_flight -= edge.max_concurrency
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert served.answered == []
