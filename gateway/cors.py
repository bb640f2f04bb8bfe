"""Cross-origin grants for browser pages (docs/design.md §7): pure ASGI middleware.

:class:`Cors` is the outermost layer of the app, outside :class:`gateway.edge.Edge`,
so every response a page can get, problem documents included, carries the grant.
Only the origins given at start (``--cors-origin``) are granted; with none, no
response carries ``Access-Control-Allow-Origin`` and a browser keeps every
cross-origin reply from the page.

- A request with an allowed ``Origin`` gets ``Access-Control-Allow-Origin``
  naming it, and ``Access-Control-Expose-Headers`` so the page can read
  ``ETag``, ``Retry-After``, ``Location`` and ``X-Request-ID``.
- A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an
  allowed origin, for a method and headers the API takes, is answered 204 here;
  any other preflight gets a 403 problem document without a grant.
- With any origin configured, every response says ``Vary: Origin``, so a shared
  cache never hands one origin's grant to another.

No credentials (cookies) are granted: requests are signed, not cookie-borne.
The answers :mod:`gateway.http_protocol` writes below the app (a connection
over ``max_connections``, malformed HTTP, headers too slow) carry no grant:
no request, so no ``Origin``, has been read when they are written; a page
sees those as network failures.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.edge import problem_response
from gateway.problems import Problem

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "EXPOSED_HEADERS", "Cors"]

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PATCH")
ALLOWED_HEADERS = ("authorization", "content-type", "idempotency-key", "if-none-match",
                   "x-request-id")  # fmt: skip
EXPOSED_HEADERS = ("ETag", "Retry-After", "Location", "X-Request-ID")
_PREFLIGHT_MAX_AGE_S = 600

_REFUSED = Problem(
    "cors-refused",
    403,
    "Cross-origin request refused",
    "this origin, method or header is not allowed; the gateway grants only the origins "
    "given with --cors-origin",
)


class Cors:
    """See the module docstring. ``origins`` are exact ``scheme://host[:port]`` strings."""

    def __init__(self, app: ASGIApp, *, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.origins:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        origin = headers.get(b"origin")
        granted = origin is not None and origin.decode("latin-1") in self.origins
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await self._preflight(scope, receive, send, headers, granted)
            return
        extra = self.headers_for(origin)

        async def send_granted(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_granted)

    def headers_for(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """The headers added to the response (not a preflight's) to a request from ``origin``."""
        if not self.origins:
            return []
        if origin is not None and origin.decode("latin-1") in self.origins:
            return [(b"vary", b"Origin"), *_grant(origin)]
        return [(b"vary", b"Origin")]

    async def _preflight(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], granted: bool
    ) -> None:
        method = headers[b"access-control-request-method"].decode("latin-1").strip().upper()
        asked = headers.get(b"access-control-request-headers", b"").decode("latin-1")
        wanted = {h.strip().lower() for h in asked.split(",") if h.strip()}
        if not granted or method not in ALLOWED_METHODS or not wanted <= set(ALLOWED_HEADERS):
            response = problem_response(_REFUSED, instance=scope.get("path", ""), request_id=None)
            response.headers["Vary"] = "Origin"
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 204,
                "headers": [
                    *_grant(headers[b"origin"]),
                    (b"access-control-allow-methods", ", ".join(ALLOWED_METHODS).encode()),
                    (b"access-control-allow-headers", ", ".join(ALLOWED_HEADERS).encode()),
                    (b"access-control-max-age", str(_PREFLIGHT_MAX_AGE_S).encode()),
                    (b"vary", b"Origin"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _grant(origin: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-expose-headers", ", ".join(EXPOSED_HEADERS).encode()),
    ]
