"""Plain ASGI routes for the two hot paths, in front of their documented FastAPI routes.

``GET /v1/units/{unit_id}`` and ``POST /v1/units/{unit_id}/submissions``
are most of a gateway's traffic. Their FastAPI routes (in
:mod:`gateway.app`) stay the schema and the reference behaviour; a
:class:`FastRoute` is matched first and serves the common, valid request
without FastAPI's per-request work (dependency solving, parameter models,
a ``Response`` object per request):

- a unit read sends the cached body with the headers its
  :class:`~gateway.caches.CachedBody` encoded once per unit version, or a
  304 when ``If-None-Match`` names its ETag;
- a submission checks its headers and body by the same rules (the same
  pydantic model on the same ``json.loads``), then authenticates, submits
  and sends the same bytes.

A cached unit read is shorter still: :class:`_Front`, the app's outermost
layer, sends a fresh cached unit through the layers above the app's own
:class:`~gateway.edge.Edge` (CORS grants, the error guard) and the Edge
itself (request id, limits, metrics, log line), and nothing else. A
submission takes the same way, then the app's exception middleware (so
that its errors get the same handlers), and then :func:`serve_submission`
without the router; what that hands to the FastAPI route goes down the rest
of the stack (the router) as it would have. Everything else goes down the
whole middleware stack as before. Shortest of all, the protocol answers
most cached reads itself, with no ASGI request (:mod:`gateway.direct_reads`,
which :func:`install_fast_routes` puts on the app's state).

Anything the fast path is not sure of (a malformed unit id, an over-long
header, a body that is not a valid JSON submission, an odd content type) is
handed to the FastAPI route unchanged (for a submission, with the body it
read replayed), before any side effect such as spending the nonce, so every
error is the FastAPI route's own. Domain errors raised after that (a bad
signature, an unknown unit, a shard down) reach the same exception handlers
as from the FastAPI route. The Edge middleware wraps both alike.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import models
from gateway.caches import MAX_IF_NONE_MATCH, RawHeaders, judgeable
from gateway.core import Gateway
from gateway.cors import Cors
from gateway.direct_reads import STATE_KEY, DirectReads
from gateway.edge import Edge
from gateway.idempotency import HEADER as IDEMPOTENCY_HEADER

__all__ = [
    "IDEMPOTENCY_KEY_PATTERN",
    "MAX_IF_NONE_MATCH",
    "FastRoute",
    "install_fast_routes",
    "signed_path",
]

#: What an ``Idempotency-Key`` may hold (its length limit is checked by idempotency.check_key).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]+$"

#: The bounds of :class:`~gateway.models.SubmissionRequest` (a test holds them equal).
_MAX_ANSWERS = 200
_MAX_ANSWER_ID = 100
_SLUG = re.compile(models.SLUG_PATTERN.removeprefix("^").removesuffix("$"))
_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN.removeprefix("^").removesuffix("$"))
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower().encode("latin-1")
_NO_STORE_JSON = ((b"cache-control", b"no-store"),)
_JSON = (b"content-type", b"application/json")

Handler = Callable[[Scope, Receive, Send, APIRoute], Awaitable[None]]


class FastRoute(Route):
    """A route that matches only what ``fallback`` would fully match, and serves it with
    ``handler``; the handler passes what it will not serve to ``fallback``."""

    def __init__(self, fallback: APIRoute, handler: Handler) -> None:
        self.fallback = fallback
        self.handler = handler
        super().__init__(
            fallback.path,
            endpoint=self._serve,
            methods=sorted(fallback.methods or ()),
            name=f"{fallback.name}_fast",
            include_in_schema=False,
        )
        # Route treats a bound method as a request/response endpoint; this one is ASGI.
        self.app = self._serve
        # Route adds HEAD to GET; serve exactly the methods the FastAPI route serves.
        self.methods = set(fallback.methods or ())

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        # Wrong methods are the FastAPI route's to refuse (405 with its Allow header).
        return (match, child) if match is Match.FULL else (Match.NONE, {})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send, self.fallback)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), as Starlette's ``Headers.get`` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _gateway(scope: Scope) -> Gateway:
    gw: Gateway = scope["app"].state.gateway
    return gw


async def _send(send: Send, status: int, headers: RawHeaders, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _fall_back(scope: Scope, receive: Receive, send: Send, route: APIRoute) -> None:
    scope["route"] = route
    await route.handle(scope, receive, send)


async def serve_unit(scope: Scope, receive: Receive, send: Send, fallback: APIRoute) -> None:
    """``GET /v1/units/{unit_id}``: the cached body and validators, or a 304."""
    unit_id: str = scope["path_params"]["unit_id"]
    if_none_match = _header(scope, b"if-none-match")
    if not _SLUG.fullmatch(unit_id) or not judgeable(if_none_match):
        await _fall_back(scope, receive, send, fallback)
        return
    entry = await _gateway(scope).unit(unit_id)
    await _send(send, *entry.reply(if_none_match))


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` with ``body`` delivered first again, for the fallback route."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json"


def _answers(body: bytes) -> dict[str, str] | None:
    """The answers of a valid submission body, or None if the FastAPI route must judge it."""
    try:
        doc = json.loads(body)
    except Exception:
        return None
    plain = _plain_answers(doc)
    if plain is not None:
        return plain
    try:
        return models.SubmissionRequest.model_validate(doc).answers
    except Exception:
        return None


def _plain_answers(doc: Any) -> dict[str, str] | None:
    """``doc["answers"]`` when ``doc`` is plainly a valid :class:`~gateway.models.SubmissionRequest`
    (only ``answers``: 1 to 200 pairs of ASCII ids of 1 to 100 characters), else None, and
    the model judges it: every body this accepts, the model accepts alike."""
    if type(doc) is not dict or len(doc) != 1:
        return None
    answers = doc.get("answers")
    if type(answers) is not dict or not 1 <= len(answers) <= _MAX_ANSWERS:
        return None
    for qid, cid in answers.items():
        if not (type(qid) is str and type(cid) is str and qid.isascii() and cid.isascii()):
            return None
        if not (0 < len(qid) <= _MAX_ANSWER_ID and 0 < len(cid) <= _MAX_ANSWER_ID):
            return None
    return answers


def signed_path(scope: Scope) -> str:
    """The path and query exactly as the client sent them (what it signed)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    text: str = raw.decode("latin-1")
    return text + "?" + query.decode("latin-1") if query else text


async def serve_submission(scope: Scope, receive: Receive, send: Send, fallback: APIRoute) -> None:
    """``POST /v1/units/{unit_id}/submissions``: check, authenticate, submit, reply."""
    if scope.pop(_TO_FALLBACK, False):  # judged by the direct path already (see _Direct)
        await _fall_back(scope, receive, send, fallback)
        return
    await _submission(scope, receive, send, lambda r: _fall_back(scope, r, send, fallback))


async def _submission(
    scope: Scope, receive: Receive, send: Send, fall_back: Callable[[Receive], Awaitable[None]]
) -> None:
    """The submission; ``fall_back(receive)`` hands it, unread, to the FastAPI route."""
    body = await _read_body(receive)
    unit_id: str = scope["path_params"]["unit_id"]
    key = _header(scope, _IDEMPOTENCY)
    answers = None
    if (
        _SLUG.fullmatch(unit_id)
        and (key is None or _KEY.fullmatch(key))
        and _is_json(_header(scope, b"content-type"))
    ):
        answers = _answers(body)
    if answers is None:
        await fall_back(_replaying(body, receive))
        return
    gw = _gateway(scope)
    caller = await gw.authenticate(
        method=scope["method"],
        path=signed_path(scope),
        body=body,
        authorization=_header(scope, b"authorization"),
    )
    reply = await gw.submit(caller.principal, unit_id, answers, key)
    headers = (*_NO_STORE_JSON, (b"content-length", str(len(reply)).encode("latin-1")), _JSON)
    await _send(send, 200, headers, reply)


_UNITS_PREFIX = "/v1/units/"
_SUBMISSIONS_SUFFIX = "/submissions"
#: The scope key by which :class:`_Front` hands a cache hit or a submission through the Edge.
_HIT = "canistry.cached_unit"
#: Set when the direct path hands a submission down the stack: the route falls back at once.
_TO_FALLBACK = "canistry.submission_fallback"


class _Submission:
    """What :class:`_Front` found: a submission for this unit id."""

    __slots__ = ("unit_id",)

    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id


class _Front:
    """The app's middleware stack, with cached unit reads taken out in front of it.

    A ``GET /v1/units/{unit_id}`` for a unit this worker holds fresh goes
    through ``hit``: the layers above the Edge (CORS, the server-error
    guard), then the Edge itself (the same instance as in ``stack``), then
    straight to :class:`_Behind`, which sends it; anything else goes to
    ``stack``.
    """

    def __init__(
        self, stack: Any, hit: Any, route: FastRoute, submit_route: FastRoute | None
    ) -> None:
        self.stack = stack
        self.hit = hit
        self.route = route
        self.submit_route = submit_route
        """None: submissions go down the whole stack."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = self._hit(scope) if scope["type"] == "http" else None
        if entry is None:
            await self.stack(scope, receive, send)
            return
        scope[_HIT] = entry
        scope["route"] = self.submit_route if isinstance(entry, _Submission) else self.route
        await self.hit(scope, receive, send)

    def _hit(self, scope: Scope) -> Any:
        path: str = scope["path"]
        if not path.startswith(_UNITS_PREFIX) or scope.get("root_path"):
            return None
        method = scope["method"]
        if method == "POST":
            if self.submit_route is None or not path.endswith(_SUBMISSIONS_SUFFIX):
                return None
            unit_id = path[len(_UNITS_PREFIX) : -len(_SUBMISSIONS_SUFFIX)]
            return _Submission(unit_id) if _SLUG.fullmatch(unit_id) else None
        if method != "GET":
            return None
        unit_id = path[len(_UNITS_PREFIX) :]
        if not _SLUG.fullmatch(unit_id):
            return None
        gw: Gateway | None = getattr(scope["app"].state, "gateway", None)
        return None if gw is None else gw.cached_unit(unit_id)


class _Behind:
    """Inside the Edge: sends what :class:`_Front` found, or goes on down the stack.

    ``submit`` (when the stack below the Edge starts with the exception
    middleware) is that middleware's copy over :class:`_Direct`.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.submit: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry = scope.pop(_HIT, None)
        if entry is None:
            await self.app(scope, receive, send)
            return
        if isinstance(entry, _Submission):
            scope["path_params"] = {"unit_id": entry.unit_id}
            await self.submit(scope, receive, send)
            return
        if_none_match = _header(scope, b"if-none-match")
        if judgeable(if_none_match):
            await _send(send, *entry.reply(if_none_match))
        else:
            await self.app(scope, receive, send)  # the FastAPI route's 422


class _Direct:
    """A submission served without the router, below the exception middleware.

    What the submission hands to the FastAPI route goes to ``below`` (the
    stack under the exception middleware: the router), marked so that the
    fast route passes it on at once.
    """

    def __init__(self, below: ASGIApp) -> None:
        self.below = below

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def fall_back(replay: Receive) -> None:
            scope[_TO_FALLBACK] = True
            await self.below(scope, replay, send)

        await _submission(scope, receive, send, fall_back)


def _edge_in(stack: Any) -> tuple[list[Any], Edge] | None:
    """The layers above the stack's Edge (outermost first), and the Edge; None if none."""
    above: list[Any] = []
    layer = stack
    while layer is not None:
        if isinstance(layer, Edge):
            return above, layer
        above.append(layer)
        layer = getattr(layer, "app", None)
    return None


def _through(above: list[Any], edge: Edge) -> Any:
    """Copies of ``above`` chained down to ``edge``: the stack's outer layers, then the Edge."""
    chain: Any = edge
    for layer in reversed(above):
        outer = copy.copy(layer)
        outer.app = chain
        chain = outer
    return chain


#: Layers that may sit above the Edge and add nothing to a cached read's answer (they act
#: on errors and bodies), so that the protocol may answer it (:mod:`gateway.direct_reads`).
_TRANSPARENT = {
    "starlette.middleware.errors.ServerErrorMiddleware",
    "fastapi.telemetry._asgi.ExceptionTelemetryMiddleware",
    "fastapi._body_limit.AppBodyLimitMiddleware",
}


def _name(layer: Any) -> str:
    return f"{type(layer).__module__}.{type(layer).__qualname__}"


def _find(routes: Iterable[Any], path: str, method: str) -> APIRoute:
    for route in routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            return route
    raise LookupError(f"no FastAPI route {method} {path} to put a fast path in front of")


def install_fast_routes(app: FastAPI) -> None:
    """Put the fast routes in front of their FastAPI routes, which must be declared already."""
    fast = [
        FastRoute(_find(app.router.routes, "/v1/units/{unit_id}", "GET"), serve_unit),
        FastRoute(
            _find(app.router.routes, "/v1/units/{unit_id}/submissions", "POST"),
            serve_submission,
        ),
    ]
    app.router.routes[:0] = fast
    build = app.build_middleware_stack

    def build_with_front() -> Any:
        stack = build()
        found = _edge_in(stack)
        if found is None:  # no Edge to send through: the routes alone serve
            return stack
        above, edge = found
        behind = _Behind(edge.app)
        submit_route: FastRoute | None = None
        if isinstance(edge.app, ExceptionMiddleware):
            handled = copy.copy(edge.app)
            handled.app = _Direct(edge.app.app)
            behind.submit, submit_route = handled, fast[1]
        edge.app = behind
        if all(isinstance(layer, Cors) or _name(layer) in _TRANSPARENT for layer in above):
            cors = next((layer for layer in above if isinstance(layer, Cors)), None)
            setattr(app.state, STATE_KEY, DirectReads(app.state, edge, cors, fast[0].path))
        return _Front(stack, _through(above, edge), fast[0], submit_route)

    app.build_middleware_stack = build_with_front  # type: ignore[method-assign]
