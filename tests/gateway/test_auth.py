"""Each failed signature check is a 401 problem document; a user reaches only their own state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from canistry.client import Identity
from canistry.up import Cluster
from gateway import signing
from tests.gateway.support import registered, start_gateway

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert doc["type"] == f"https://canistry.dev/problems/{code}", doc
    assert doc["status"] == status and doc["title"] and doc["detail"] and doc["instance"]
    assert doc["request_id"] == r.headers["x-request-id"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Canistry"
    return doc  # type: ignore[no-any-return]


def fields(value: str) -> dict[str, str]:
    _, _, rest = value.partition(" ")
    return dict(part.strip().split("=", 1) for part in rest.split(","))


def header(f: dict[str, str]) -> str:
    return "Canistry " + ", ".join(f"{k}={v}" for k, v in f.items())


async def test_each_auth_failure_is_a_401_problem(url: str) -> None:
    api = await registered(url)
    me = api.identity
    assert me is not None
    http = api.http

    async def get_me(authorization: str | bytes | None) -> httpx.Response:
        headers = {} if authorization is None else {"Authorization": authorization}
        return await http.get("/v1/me", headers=headers)

    assert_problem(await get_me(None), 401, "missing-authorization")
    assert_problem(await get_me(""), 401, "missing-authorization")
    for garbled in ("Bearer x", "Canistry", "Canistry key=abc, ts=1", b"Canistry k\xe9y=1, \xff"):
        assert_problem(await get_me(garbled), 401, "bad-authorization")

    good = me.authorization("GET", "/v1/me", b"")
    assert (await get_me(good)).status_code == 200
    # Reused nonce: the very same header again.
    assert_problem(await get_me(good), 401, "nonce-reused")

    now = int(time.time() * 1000)
    for ts in (now - 301_000, now + 301_000):
        stale = me.authorization("GET", "/v1/me", b"", ts_ms=ts)
        assert_problem(await get_me(stale), 401, "stale-timestamp")

    # Signed for another path, another method, or another body.
    assert_problem(
        await get_me(me.authorization("GET", "/v1/me/balance", b"")), 401, "bad-signature"
    )
    assert_problem(await get_me(me.authorization("POST", "/v1/me", b"")), 401, "bad-signature")
    body = b'{"name":"Mallory"}'
    signed_other_body = me.authorization("PATCH", "/v1/me", b'{"name":"Ada"}')
    json_type = {"Content-Type": "application/json"}
    r = await http.patch(
        "/v1/me", content=body, headers={"Authorization": signed_other_body, **json_type}
    )
    assert_problem(r, 401, "bad-signature")
    # A garbage signature of the right length.
    f = fields(me.authorization("GET", "/v1/me", b""))
    f["sig"] = signing.b64url_encode(bytes(64))
    assert_problem(await get_me(header(f)), 401, "bad-signature")
    assert (await api.me()).profile.name == "Ada"
    await api.aclose()


async def test_a_user_cannot_act_as_another(url: str) -> None:
    alice, bob = await registered(url, "Alice"), await registered(url, "Bob")
    a, b = alice.identity, bob.identity
    assert a is not None and b is not None
    # Alice's signature under Bob's key (the header fields of Bob's own request).
    sig_a = fields(a.authorization("PATCH", "/v1/me", b'{"name":"Mallory"}'))
    f = fields(b.authorization("PATCH", "/v1/me", b'{"name":"Mallory"}'))
    f["sig"] = sig_a["sig"]
    r = await alice.http.patch(
        "/v1/me", content=b'{"name":"Mallory"}',
        headers={"Authorization": header(f), "Content-Type": "application/json"},
    )  # fmt: skip
    assert_problem(r, 401, "bad-signature")
    # Bob's key with Alice's ts and nonce, and Alice's signature: still Bob's key, still bad.
    f = {**sig_a, "key": fields(b.authorization("GET", "/", b""))["key"]}
    r = await alice.http.patch(
        "/v1/me", content=b'{"name":"Mallory"}',
        headers={"Authorization": header(f), "Content-Type": "application/json"},
    )  # fmt: skip
    assert_problem(r, 401, "bad-signature")
    assert (await bob.me()).profile.name == "Bob"
    # There is no route that names another principal: /v1/me is whoever signed.
    assert (await alice.me()).principal == a.principal
    assert (await bob.me()).principal == b.principal
    r = await alice.send_signed("GET", f"/v1/users/{b.principal}")
    assert_problem(r, 404, "no-such-route")
    r = await alice.send_signed("GET", f"/v1/me?principal={b.principal}")
    assert r.status_code == 200 and r.json()["principal"] == a.principal
    # An unregistered key reaches nothing.
    stranger = Identity.generate()
    r = await alice.http.get(
        "/v1/me", headers={"Authorization": stranger.authorization("GET", "/v1/me", b"")}
    )
    assert_problem(r, 404, "not-registered")
    await alice.aclose()
    await bob.aclose()


async def test_nonces_and_idempotent_replies_hold_across_workers(
    gw_cluster: Cluster, tmp_path: Path
) -> None:
    gw = start_gateway(gw_cluster, tmp_path / "gw2", workers=2)
    try:
        async with httpx.AsyncClient(base_url=gw.url) as probe:
            workers: set[int] = set()
            for _ in range(40):
                async with httpx.AsyncClient(base_url=gw.url) as fresh:  # a new connection
                    workers.add((await fresh.get("/healthz")).json()["worker"])
                if len(workers) == 2:
                    break
            assert len(workers) == 2, "both workers should take connections"

            me = Identity.generate()
            body = b'{"name":"Ada","email":"ada@example.org"}'
            auth = me.authorization("POST", "/v1/users", body)
            headers = {"Authorization": auth, "Content-Type": "application/json",
                       "Idempotency-Key": "reg-1"}  # fmt: skip

            async def send() -> httpx.Response:
                async with httpx.AsyncClient(base_url=gw.url, timeout=30) as fresh:
                    return await fresh.post("/v1/users", content=body, headers=headers)

            first = await send()
            for _ in range(30):  # no room yet: wait as told, retry signed anew (bounded)
                if first.status_code != 503:
                    break
                await asyncio.sleep(float(first.headers["retry-after"]))
                headers["Authorization"] = me.authorization("POST", "/v1/users", body)
                first = await send()
            assert first.status_code == 201, first.text
            replays = await asyncio.gather(*(send() for _ in range(8)))
            assert {r.status_code for r in replays} == {401}
            assert {r.json()["type"].rsplit("/", 1)[1] for r in replays} == {"nonce-reused"}

            # The same Idempotency-Key, signed anew, gets the first reply from either worker.
            for _ in range(6):
                headers["Authorization"] = me.authorization("POST", "/v1/users", body)
                again = await send()
                assert (again.status_code, again.content) == (201, first.content)

            metrics = (await probe.get("/metrics")).text
            assert 'canistry_gateway_auth_failures_total{reason="nonce-reused"} 8.0' in metrics
        assert gw.stop() == 0
        # A new gateway on the same data directory still has the reply and the nonces.
        gw = start_gateway(gw_cluster, tmp_path / "gw2", workers=1)
        async with httpx.AsyncClient(base_url=gw.url) as fresh:
            headers["Authorization"] = me.authorization("POST", "/v1/users", body)
            again = await fresh.post("/v1/users", content=body, headers=headers)
            assert (again.status_code, again.content) == (201, first.content)
            headers["Authorization"] = auth
            r = await fresh.post("/v1/users", content=body, headers=headers)
            assert r.status_code == 401 and r.json()["type"].endswith("/nonce-reused")
    finally:
        assert gw.stop() == 0
