"""A gateway whose LMDB fills answers 503 with Retry-After (never 500), and recovers by
itself once its sweeper expires old entries. In-process, over real HTTP, with a fake clock."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from canistry.client import Identity
from canistry.up import Cluster
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.server import protocol_factory
from tests.polling import eventually

DAY_MS = 86_400_000
#: A profile as large as the schema allows, in 4-byte characters.
BIG = {
    "name": "😀" * 100,
    "email": "😀" * 250 + "@x.y",
    "education": "😀" * 50,
    "gender": "😀" * 50,
}


@pytest.fixture
async def small_gateway(
    gw_cluster: Cluster, tmp_path: Path
) -> AsyncIterator[tuple[str, list[int]]]:
    """A gateway with a 256 KiB store, a fast sweeper and a clock the test moves."""
    addr = {n: c.address for n, c in gw_cluster.children.items()}
    config = GatewayConfig(
        registry_address=addr["registry"],
        content_address=addr["content"],
        hub_address=addr["hub"],
        data_dir=tmp_path / "gw",
        tls=gw_cluster.tls("gateway"),
        store_map_bytes=256 * 1024,
        sweep_interval_s=0.1,
        idempotency_quota=10_000,
    )
    now = [1_900_000_000_000]
    app = create_app(config, clock_ms=lambda: now[0])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="on", http=protocol_factory(config))  # type: ignore[arg-type]
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started, 20, "the gateway to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", now
    server.should_exit = True
    await task
    sock.close()


async def test_a_full_store_is_503_then_recovers_by_itself(
    small_gateway: tuple[str, list[int]],
) -> None:
    url, now = small_gateway
    me = Identity.generate()

    async def signed(http: httpx.AsyncClient, method: str, path: str, doc: object = None,
                     key: str | None = None) -> httpx.Response:  # fmt: skip
        body = b"" if doc is None else json.dumps(doc).encode()
        headers = {"Authorization": me.authorization(method, path, body, ts_ms=now[0])}
        if doc is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        return await http.request(method, path, content=body, headers=headers)

    def assert_full(r: httpx.Response) -> None:
        assert r.status_code == 503, r.text
        assert r.json()["type"] == "https://canistry.dev/problems/store-full"
        assert int(r.headers["retry-after"]) >= 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        r = await signed(http, "POST", "/v1/users", {"name": "Fill", "email": "fill@example.org"})
        assert r.status_code in (200, 201), r.text
        stored = 0
        for i in range(300):
            r = await signed(http, "PATCH", "/v1/me", BIG, key=f"fill-{i:03d}")
            if r.status_code != 200:
                break
            stored += 1
        assert_full(r)
        assert stored >= 3
        assert_full(await signed(http, "GET", "/v1/me"))  # every signed request: 503, not 500

        now[0] += DAY_MS + 60_000  # every reply and nonce expires; the sweeper frees them

        async def served() -> bool:
            return (await signed(http, "GET", "/v1/me")).status_code == 200

        await eventually(served, 20, "the gateway to recover after the sweep")
        r = await signed(http, "PATCH", "/v1/me", BIG, key="after")
        assert r.status_code == 200, r.text
