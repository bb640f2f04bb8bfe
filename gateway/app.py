"""The FastAPI app: docs/design.md §7's routes, thin over :class:`gateway.core.Gateway`.

Routes validate input (pydantic, :mod:`gateway.models`), authenticate signed
requests (:func:`signed`), call the gateway core and send its JSON bytes.
Errors are raised, never built here: :mod:`gateway.edge` turns them into
problem documents.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request, Security
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles

from gateway import metrics, models
from gateway.caches import CachedBody, etag_matches
from gateway.config import GatewayConfig
from gateway.core import Caller, Gateway, Reply, wall_clock_ms
from gateway.cors import Cors
from gateway.edge import Edge, install_handlers
from gateway.fast_routes import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IF_NONE_MATCH,
    install_fast_routes,
    signed_path,
)
from gateway.governance_routes import install_governance_routes
from gateway.idempotency import HEADER as IDEMPOTENCY_HEADER
from gateway.idempotency import MAX_KEY as MAX_IDEMPOTENCY_KEY
from gateway.problems import MEDIA_TYPE
from gateway.views import dumps

__all__ = ["create_app"]

_AUTH_DOC = (
    "Every user request is signed (docs/design.md §5): `Authorization: Canistry key=<b64url raw "
    "Ed25519 public key>, ts=<unix ms>, nonce=<b64url>, sig=<b64url>`, where `sig` signs "
    "`canistry-v1\\n<METHOD>\\n<path with query>\\n<ts>\\n<nonce>\\n<hex sha256 of body>`."
)
_authorization = APIKeyHeader(
    name="Authorization", scheme_name="CanistrySignature", description=_AUTH_DOC, auto_error=False
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        # Documented, but checked by idempotency.check_key: a 400 that names the limit.
        json_schema_extra={"maxLength": MAX_IDEMPOTENCY_KEY},
        description="replays within 24 h return the first reply and change nothing",
    ),
]
IfNoneMatch = Annotated[str | None, Header(alias="If-None-Match", max_length=MAX_IF_NONE_MATCH)]
UnitId = Annotated[str, Path(pattern=models.SLUG_PATTERN)]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    schema = {"$ref": "#/components/schemas/ProblemDocument"}
    doc: dict[int | str, dict[str, Any]] = {
        s: {"description": "problem document", "content": {MEDIA_TYPE: {"schema": schema}}}
        for s in statuses
    }
    doc["default"] = {
        "description": "problem document",
        "content": {MEDIA_TYPE: {"schema": schema}},
    }
    return doc


_SIGNED = (400, 401, 413, 422, 503)


@dataclass(frozen=True)
class Signed:
    """A verified request: who signed it, and what (for idempotency fingerprints)."""

    caller: Caller
    method: str
    path: str
    body: bytes

    @property
    def principal(self) -> str:
        return self.caller.principal

    @property
    def request(self) -> tuple[str, str, bytes]:
        return (self.method, self.path, self.body)


def _gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


async def signed(
    request: Request, authorization: Annotated[str | None, Security(_authorization)] = None
) -> Signed:
    body = await request.body()
    path = signed_path(request.scope)
    caller = await _gateway(request).authenticate(
        method=request.method, path=path, body=body, authorization=authorization
    )
    return Signed(caller, request.method, path, body)


SignedRequest = Annotated[Signed, Depends(signed)]


def _registration_admitted(request: Request) -> None:
    """Spend a registration token of the client's address, before the signature is checked."""
    client = request.client
    _gateway(request).admit_registration(client.host if client is not None else "")


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


def _reply(reply: Reply) -> Response:
    return _json(reply.body, reply.status)


def _cacheable(entry: CachedBody, if_none_match: str | None, max_age_s: int) -> Response:
    headers = {"ETag": entry.etag, "Cache-Control": f"public, max-age={max_age_s}"}
    if etag_matches(if_none_match, entry.etag):
        return Response(status_code=304, headers=headers)
    return Response(entry.body, media_type="application/json", headers=headers)


def create_app(
    config: GatewayConfig,
    *,
    on_ready: Callable[[], None] | None = None,
    clock_ms: Callable[[], int] = wall_clock_ms,
    fast_paths: bool = True,
) -> FastAPI:
    """The gateway app; its lifespan starts and stops one :class:`Gateway`.

    ``fast_paths`` puts :mod:`gateway.fast_routes` in front of the unit read and
    the submission routes; off, only the FastAPI routes serve (tests compare both).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Gateway(config, clock_ms=clock_ms) as gw:
            app.state.gateway = gw
            if on_ready is not None:
                on_ready()
            yield

    app = FastAPI(
        title="Canistry gateway",
        version="1",
        description="The HTTP API of a Canistry cluster (docs/design.md §7). Errors are RFC 9457 "
        "problem documents.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        # Both doc pages load their scripts from a CDN, blank offline; the
        # schema at /openapi.json is what tools and people read.
        docs_url=None,
        redoc_url=None,
    )
    install_handlers(app, retry_after_s=config.retry_after_s)
    app.add_middleware(
        Edge,
        max_body_bytes=config.max_body_bytes,
        body_timeout_s=config.body_timeout_s,
        max_concurrency=config.max_concurrency,
        retry_after_s=config.retry_after_s,
    )
    app.add_middleware(Cors, origins=config.cors_origins)  # outermost: problems get grants too
    if config.app_dir is not None:
        app.mount("/app", StaticFiles(directory=config.app_dir, html=True), name="app")
    max_age = config.content_max_age_s

    @app.post(
        "/v1/users",
        status_code=201,
        response_model=models.Registration,
        responses={
            200: {"model": models.Registration, "description": "already registered"},
            **_problems(*_SIGNED, 409, 429),
        },
        summary="Register the signing principal",
        dependencies=[Depends(_registration_admitted)],
    )
    async def register(
        body: models.RegisterRequest,
        req: SignedRequest,
        request: Request,
        key: IdempotencyKey = None,
    ) -> Response:
        gw = _gateway(request)
        reply = await gw.idempotent(
            req.caller, key, req.request, lambda: gw.register(req.principal, body.model_dump())
        )
        return _reply(reply)

    @app.get(
        "/v1/me", response_model=models.Me, responses=_problems(*_SIGNED, 404), summary="My account"
    )
    async def me(req: SignedRequest, request: Request) -> Response:
        return _json(await _gateway(request).me(req.principal))

    @app.patch(
        "/v1/me",
        response_model=models.Me,
        responses=_problems(*_SIGNED, 404, 409, 429),
        summary="Change profile fields",
    )
    async def patch_me(
        body: models.ProfilePatch, req: SignedRequest, request: Request, key: IdempotencyKey = None
    ) -> Response:
        gw = _gateway(request)
        reply = await gw.idempotent(
            req.caller, key, req.request, lambda: gw.update_profile(req.principal, body.fields())
        )
        return _reply(reply)

    @app.get(
        "/v1/me/balance",
        response_model=models.Balance,
        responses=_problems(*_SIGNED, 404),
        summary="My balance",
    )
    async def balance(req: SignedRequest, request: Request) -> Response:
        return _json(await _gateway(request).balance(req.principal))

    @app.get(
        "/v1/units",
        response_model=models.UnitPage,
        responses={304: {"description": "not modified"}, **_problems(400, 422, 503)},
        summary="Unit summaries, a page at a time",
    )
    async def units(
        request: Request,
        subject: Annotated[str | None, Query(pattern=models.SLUG_PATTERN)] = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        if_none_match: IfNoneMatch = None,
    ) -> Response:
        entry = await _gateway(request).unit_page(subject or "", cursor or "", limit)
        return _cacheable(entry, if_none_match, max_age)

    @app.get(
        "/v1/units/{unit_id}",
        response_model=models.Unit,
        responses={304: {"description": "not modified"}, **_problems(404, 422, 503)},
        summary="A unit and its quiz, without answers",
    )
    async def unit(
        request: Request, unit_id: UnitId, if_none_match: IfNoneMatch = None
    ) -> Response:
        entry = await _gateway(request).unit(unit_id)
        return _cacheable(entry, if_none_match, max_age)

    @app.post(
        "/v1/units/{unit_id}/submissions",
        response_model=models.SubmissionResult,
        responses=_problems(*_SIGNED, 404, 409, 429),
        summary="Submit quiz answers",
    )
    async def submit(
        unit_id: UnitId,
        body: models.SubmissionRequest,
        req: SignedRequest,
        request: Request,
        key: IdempotencyKey = None,
    ) -> Response:
        return _json(await _gateway(request).submit(req.principal, unit_id, body.answers, key))

    @app.get(
        "/v1/cluster",
        response_model=models.ClusterView,
        responses=_problems(503),
        summary="Shards and treasury",
    )
    async def cluster(request: Request) -> Response:
        return _json(await _gateway(request).cluster())

    install_governance_routes(
        app, signed=SignedRequest, idempotency_key=IdempotencyKey, problems=_problems, json=_json
    )

    @app.get("/healthz", response_model=models.Health, summary="Liveness")
    async def healthz(request: Request) -> Response:
        return _json(dumps({"status": "ok", "worker": _gateway(request).worker}))

    @app.get(
        "/readyz",
        response_model=models.Ready,
        responses=_problems(503),
        summary="Readiness: registry, content and an active shard answer",
    )
    async def readyz(request: Request) -> Response:
        checks = await _gateway(request).readiness()
        return _json(dumps({"status": "ready", "checks": checks}))

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "content": {metrics.CONTENT_TYPE: {"schema": {"type": "string"}}},
                "description": "Prometheus text format",
            }
        },
        summary="Prometheus metrics",
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["ProblemDocument"] = models.ProblemDocument.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if fast_paths:
        install_fast_routes(app)
    return app
