"""The edge against hostile clients, over real sockets to a real ``canistry serve gateway``:
malformed HTTP, slow headers and bodies, too many connections, registration floods."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from canistry.up import Cluster
from gateway.edge import Edge
from tests.gateway.support import GatewayProcess, registered, start_gateway
from tests.polling import eventually

PROBLEM = "application/problem+json"
TYPES = "https://canistry.dev/problems/"


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_problem(raw: bytes, status: int, code: str) -> dict[str, str]:
    got, headers, body = parse(raw)
    assert got == status, raw[:500]
    assert headers["content-type"] == PROBLEM, headers
    doc = json.loads(body)
    assert doc["type"] == TYPES + code and doc["status"] == status, doc
    return headers


async def read_to_eof(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """Everything the server sends until it closes; fails if it keeps the connection."""
    return await asyncio.wait_for(reader.read(), timeout_s)


async def test_malformed_http_is_a_problem_document(url: str) -> None:
    host, port = address(url)
    junk = (
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello
        b"GET /healthz HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    )
    for data in junk:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(data)
        await writer.drain()
        raw = await read_to_eof(reader, 10)
        writer.close()
        assert_problem(raw, 400, "malformed-request")
    async with httpx.AsyncClient(base_url=url) as http:  # and the server is fine
        assert (await http.get("/healthz")).status_code == 200


async def test_an_oversized_head_on_a_kept_alive_connection_gets_431(url: str) -> None:
    """The head-size cap holds for the second request on a connection too, when its
    whole head arrives in one read (the parser itself would take any size): 50 KB
    fit one loopback segment (it was answered 200 before)."""
    reader, writer = await asyncio.open_connection(*address(url))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status, headers, _ = parse(head)
        assert status == 200
        await reader.readexactly(int(headers["content-length"]))
        big = b"X-Big: " + b"a" * 50_000 + b"\r\n"
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + big + b"\r\n")
        assert_problem(await read_to_eof(reader, 10), 431, "headers-too-large")
    finally:
        writer.close()


async def test_slow_clients_are_cut_off_while_others_are_served(
    gw_cluster: Cluster, tmp_path: Path
) -> None:
    """50 connections stall in their headers and 50 in their bodies; the server closes all
    of them within its deadlines (408), and serves a normal user meanwhile."""
    gw = start_gateway(
        gw_cluster, tmp_path / "gw", extra=("--header-timeout", "2", "--body-timeout", "2")
    )
    try:
        host, port = address(gw.url)
        slow: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        started = time.monotonic()
        for i in range(100):
            reader, writer = await asyncio.open_connection(host, port)
            if i % 2:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                writer.write(
                    b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 1000\r\n\r\n{"name":'
                )
            await writer.drain()
            slow.append((reader, writer))
        api = await registered(gw.url, "Norma")  # another user, served meanwhile
        assert (await api.me()).profile.name == "Norma"
        answers = await asyncio.gather(*(read_to_eof(r, 20) for r, _ in slow))
        elapsed = time.monotonic() - started
        for raw in answers:
            assert_problem(raw, 408, "request-timeout")
        assert elapsed < 15, elapsed
        for _, writer in slow:
            writer.close()
        assert (await api.balance()) is not None
        await api.aclose()
    finally:
        assert gw.stop() == 0, gw.log_file.read_text()[-3000:]


async def test_connections_past_the_cap_get_503(gw_cluster: Cluster, tmp_path: Path) -> None:
    gw = start_gateway(gw_cluster, tmp_path / "gw", extra=("--max-connections", "10"))
    held: list[asyncio.StreamWriter] = []
    try:
        host, port = address(gw.url)
        for _ in range(10):
            _, writer = await asyncio.open_connection(host, port)
            held.append(writer)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        headers = assert_problem(await read_to_eof(reader, 10), 503, "overloaded")
        assert int(headers["retry-after"]) >= 1
        writer.close()
        held.pop().close()

        async def served() -> bool:
            async with httpx.AsyncClient(base_url=gw.url) as http:
                return (await http.get("/healthz")).status_code == 200

        await eventually(served, 10, "a connection once one is freed")
    finally:
        for writer in held:
            writer.close()
        assert gw.stop() == 0, gw.log_file.read_text()[-3000:]


async def test_registrations_are_rate_limited_per_client_address(
    gw_cluster: Cluster, tmp_path: Path
) -> None:
    gw: GatewayProcess = start_gateway(
        gw_cluster, tmp_path / "gw", extra=("--register-rate", "1", "--register-burst", "3")
    )
    body = {"name": "Flood", "email": "flood@example.org"}
    try:
        async with httpx.AsyncClient(base_url=gw.url) as http:
            # Unsigned, so nothing is created: the bucket is spent before the signature check.
            for _ in range(3):
                assert (await http.post("/v1/users", json=body)).status_code == 401
            r = await http.post("/v1/users", json=body)
            assert r.status_code == 429 and r.headers["content-type"] == PROBLEM, r.text
            assert r.json()["type"] == TYPES + "rate-limited"
            assert int(r.headers["retry-after"]) >= 1
            assert (await http.get("/healthz")).status_code == 200  # other routes are not
            # Another client address has its own bucket.
            other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(base_url=gw.url, transport=other) as second:
                assert (await second.post("/v1/users", json=body)).status_code == 401
            # The bucket refills at the rate.
            await eventually(lambda: _status_is(http, body, 401), 10, "a registration token again")
    finally:
        assert gw.stop() == 0, gw.log_file.read_text()[-3000:]


async def _status_is(http: httpx.AsyncClient, body: dict[str, str], status: int) -> bool:
    return (await http.post("/v1/users", json=body)).status_code == status


async def test_requests_past_the_concurrency_cap_get_503() -> None:
    release = asyncio.Event()

    async def slow_app(scope: object, receive: object, send: object) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    edge = Edge(slow_app, max_body_bytes=10, max_concurrency=2)
    sent: list[list[dict[str, object]]] = [[], [], []]

    async def call(i: int) -> None:
        scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            sent[i].append(message)

        await edge(scope, receive, send)  # type: ignore[arg-type]

    tasks = [asyncio.create_task(call(i)) for i in range(2)]
    await eventually(lambda: edge.in_flight == 2, 5, "two requests in flight")
    await call(2)
    assert sent[2][0]["status"] == 503
    release.set()
    await asyncio.gather(*tasks)
    assert [s[0]["status"] for s in sent[:2]] == [200, 200] and edge.in_flight == 0


async def test_long_idempotency_keys_are_a_clear_400(url: str) -> None:
    api = await registered(url, "Keyes")
    for path, method, doc in (
        ("/v1/me", "PATCH", {"name": "K"}),
        ("/v1/units/science-001/submissions", "POST", {"answers": {"q1": "a"}}),
    ):
        body = json.dumps(doc).encode()
        assert api.identity is not None
        r = await api.http.request(
            method,
            path,
            content=body,
            headers={
                "Authorization": api.identity.authorization(method, path, body),
                "Content-Type": "application/json",
                "Idempotency-Key": "k" * 65,
            },
        )
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, r.text
        assert r.json()["type"] == TYPES + "idempotency-key-too-long"
        assert "64" in r.json()["detail"]
    await api.aclose()
