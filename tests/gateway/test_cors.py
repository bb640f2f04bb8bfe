"""CORS at the gateway (docs/design.md §7): grants only to the origins given at start.

The unit tests wrap a tiny app in :class:`gateway.cors.Cors`; the last test runs a
real ``canistry serve gateway --cors-origin`` process in front of the test cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from canistry.up import Cluster
from gateway.config import GatewayConfig
from gateway.cors import Cors
from tests.gateway.support import GatewayProcess, start_gateway

PAGE = "http://127.0.0.1:5173"
OTHER = "http://evil.example"


async def _unit(_request: object) -> Response:
    return JSONResponse({"id": "u"}, headers={"ETag": '"abc"'})


async def _problem(_request: object) -> Response:
    return Response(b"{}", status_code=401, media_type="application/problem+json")


def _client(origins: tuple[str, ...]) -> httpx.AsyncClient:
    inner = Starlette(routes=[Route("/unit", _unit), Route("/me", _problem)])
    app = Cors(inner, origins=origins)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def _preflight(origin: str, method: str = "POST", headers: str = "authorization") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers}  # fmt: skip


async def test_an_allowed_origin_gets_the_grant_and_can_read_etag() -> None:
    async with _client((PAGE,)) as api:
        r = await api.get("/unit", headers={"Origin": PAGE})
    assert r.headers["access-control-allow-origin"] == PAGE
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"etag", "retry-after", "location", "x-request-id"} <= exposed
    assert "Origin" in r.headers["vary"]
    assert "access-control-allow-credentials" not in r.headers


async def test_problem_documents_carry_the_grant() -> None:
    async with _client((PAGE,)) as api:
        r = await api.get("/me", headers={"Origin": PAGE})
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == PAGE


async def test_other_origins_and_no_configuration_get_no_grant() -> None:
    async with _client((PAGE,)) as api:
        assert (
            "access-control-allow-origin"
            not in (await api.get("/unit", headers={"Origin": OTHER})).headers
        )
    async with _client(()) as api:
        r = await api.get("/unit", headers={"Origin": PAGE})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


async def test_preflights_are_answered_for_what_the_api_takes() -> None:
    async with _client((PAGE,)) as api:
        ok = await api.options(
            "/me",
            headers=_preflight(PAGE, "POST", "Authorization, Idempotency-Key, Content-Type"),
        )
        assert ok.status_code == 204
        assert ok.headers["access-control-allow-origin"] == PAGE
        assert "POST" in ok.headers["access-control-allow-methods"]
        allowed = ok.headers["access-control-allow-headers"]
        for header in ("authorization", "idempotency-key", "if-none-match", "content-type"):
            assert header in allowed
        for refused in (
            _preflight(OTHER),
            _preflight(PAGE, "DELETE"),
            _preflight(PAGE, "POST", "authorization, x-secret"),
        ):
            r = await api.options("/me", headers=refused)
            assert r.status_code == 403, refused
            assert r.headers["content-type"] == "application/problem+json"
            assert "access-control-allow-origin" not in r.headers


def test_origins_are_checked_at_start(tmp_path: Path) -> None:
    peers = {"registry_address": "h:1", "content_address": "h:2", "hub_address": "h:3"}
    GatewayConfig(data_dir=tmp_path, cors_origins=(PAGE, "https://app.example.org"), **peers)
    for bad in ("*", "http://x.org/", "app.example.org", "http://x.org/path"):
        with pytest.raises(ValueError, match="CORS origin"):
            GatewayConfig(data_dir=tmp_path, cors_origins=(bad,), **peers)


@pytest.fixture(scope="module")
def cors_gateway(gw_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app_dir = tmp_path_factory.mktemp("app")
    (app_dir / "index.html").write_text("<!doctype html><title>app</title>")
    gw: GatewayProcess = start_gateway(
        gw_cluster,
        tmp_path_factory.mktemp("corsgw"),
        extra=("--cors-origin", PAGE, "--cors-origin", "http://localhost:5173",
               "--app-dir", str(app_dir)),
    )  # fmt: skip
    yield gw.url
    assert gw.stop() == 0


async def test_a_real_gateway_grants_its_flagged_origins(cors_gateway: str) -> None:
    async with httpx.AsyncClient(base_url=cors_gateway, timeout=10) as api:
        asked = _preflight(PAGE, "POST", "authorization,content-type,idempotency-key")
        pre = await api.options("/v1/users", headers=asked)
        assert pre.status_code == 204, pre.text
        units = await api.get("/v1/units", headers={"Origin": "http://localhost:5173"})
        assert units.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "etag" in units.headers["access-control-expose-headers"].lower()
        me = await api.get("/v1/me", headers={"Origin": PAGE})
        assert me.status_code == 401 and me.headers["access-control-allow-origin"] == PAGE
        assert me.json()["type"].endswith("/missing-authorization")
        assert (
            "access-control-allow-origin"
            not in (await api.get("/v1/units", headers={"Origin": OTHER})).headers
        )
        # A unit read served from the worker's cache (its fast path) is granted too.
        unit_id = units.json()["units"][0]["id"]
        for _ in range(3):
            unit = await api.get(f"/v1/units/{unit_id}", headers={"Origin": PAGE})
            assert unit.status_code == 200
            assert unit.headers.get("access-control-allow-origin") == PAGE, unit.headers


async def test_app_dir_is_served_at_app(cors_gateway: str) -> None:
    async with httpx.AsyncClient(base_url=cors_gateway, timeout=10) as api:
        page = await api.get("/app/")
        assert page.status_code == 200 and "<title>app</title>" in page.text
        assert (await api.get("/app", follow_redirects=True)).url.path == "/app/"
        missing = await api.get("/app/nothing.js")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
