"""A gateway whose LMDB fills answers 503 with Retry-After (never 500), and recovers by
itself once its sweeper expires old entries. In-process, over real HTTP, with a fake clock."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from canistry.client import Identity
from canistry.up import Cluster
from gateway.app import create_app
from tests.gateway.support import cluster_gateway_config, in_process
from tests.polling import eventually

DAY_MS = 86_400_000
#: A profile as large as the schema allows, in 4-byte characters.
BIG = {
    "name": "😀" * 100,
    "email": "😀" * 250 + "@x.y",
    "education": "😀" * 50,
    "gender": "😀" * 50,
}


@contextlib.asynccontextmanager
async def in_process_gateway(
    cluster: Cluster, data_dir: Path, **overrides: Any
) -> AsyncIterator[tuple[str, list[int]]]:
    """A gateway served by uvicorn in this process, with a fast sweeper and a clock the
    test moves; yields its URL and the clock (ms)."""
    config = cluster_gateway_config(cluster, data_dir, sweep_interval_s=0.1, **overrides)
    now = [1_900_000_000_000]
    app = create_app(config, clock_ms=lambda: now[0])
    async with in_process(app, config) as (url, _):
        yield url, now


def signer(
    http: httpx.AsyncClient, me: Identity, now: list[int]
) -> Callable[..., Awaitable[httpx.Response]]:
    async def signed(
        method: str, path: str, doc: object = None, key: str | None = None
    ) -> httpx.Response:
        body = b"" if doc is None else json.dumps(doc).encode()
        headers = {"Authorization": me.authorization(method, path, body, ts_ms=now[0])}
        if doc is not None:
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        return await http.request(method, path, content=body, headers=headers)

    return signed


async def test_a_full_store_is_503_then_recovers_by_itself(
    gw_cluster: Cluster, tmp_path: Path
) -> None:
    gateway = in_process_gateway(
        gw_cluster, tmp_path / "gw", store_map_bytes=256 * 1024, idempotency_quota=10_000
    )

    def assert_full(r: httpx.Response) -> None:
        assert r.status_code == 503, r.text
        assert r.json()["type"] == "https://canistry.dev/problems/store-full"
        assert int(r.headers["retry-after"]) >= 1

    async with gateway as (url, now), httpx.AsyncClient(base_url=url, timeout=30) as http:
        signed = signer(http, Identity.generate(), now)
        r = await signed("POST", "/v1/users", {"name": "Fill", "email": "fill@example.org"})
        assert r.status_code in (200, 201), r.text
        stored = 0
        for i in range(300):
            r = await signed("PATCH", "/v1/me", BIG, key=f"fill-{i:03d}")
            if r.status_code != 200:
                break
            stored += 1
        assert_full(r)
        assert stored >= 3
        assert_full(await signed("GET", "/v1/me"))  # every signed request: 503, not 500

        now[0] += DAY_MS + 60_000  # every reply and nonce expires; the sweeper frees them

        async def served() -> bool:
            return (await signed("GET", "/v1/me")).status_code == 200

        await eventually(served, 20, "the gateway to recover after the sweep")
        r = await signed("PATCH", "/v1/me", BIG, key="after")
        assert r.status_code == 200, r.text


async def test_a_user_past_the_reply_quota_gets_429_until_replies_expire(
    gw_cluster: Cluster, tmp_path: Path
) -> None:
    gateway = in_process_gateway(gw_cluster, tmp_path / "gw", idempotency_quota=3)
    async with gateway as (url, now), httpx.AsyncClient(base_url=url, timeout=30) as http:
        signed = signer(http, Identity.generate(), now)
        r = await signed("POST", "/v1/users", {"name": "Quo", "email": "quo@example.org"}, "r")
        assert r.status_code == 201, r.text
        for key in ("p1", "p2"):
            assert (await signed("PATCH", "/v1/me", {"name": key}, key)).status_code == 200
        r = await signed("PATCH", "/v1/me", {"name": "p3"}, "p3")
        assert r.status_code == 429 and r.json()["type"].endswith("/idempotency-quota"), r.text
        assert (await signed("PATCH", "/v1/me", {"name": "p1"}, "p1")).status_code == 200  # replay
        assert (await signed("PATCH", "/v1/me", {"name": "free"})).status_code == 200  # no key
        now[0] += DAY_MS + 60_000

        async def admitted() -> bool:
            r = await signed("PATCH", "/v1/me", {"name": "p3"}, "p3")
            return r.status_code == 200

        await eventually(admitted, 20, "the quota to free once replies expire")
