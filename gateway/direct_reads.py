"""Cached unit reads answered by the HTTP protocol itself, with no ASGI request at all.

Why: a cached ``GET /v1/units/{unit_id}`` is most of a gateway's traffic,
and one worker serves it. Even through :mod:`gateway.fast_routes`, most of
its CPU went not into the read but into the machinery around it: a
uvicorn request cycle and a task per request, then the proxy-headers,
server-error, telemetry, body-limit, CORS and Edge layers, each wrapping
``send``. Here :class:`gateway.http_protocol.GatewayProtocol`, once a
request's head is parsed, asks :meth:`DirectReads.answer` and, given a
response, writes it at once: the gateway then serves about twice the reads
per second.

The response is the one the app would send, built by the functions the app
uses: the cache's reply (:meth:`~gateway.caches.CachedBody.reply`: the 200,
or the 304 on a matching ``If-None-Match``), the request id
(:func:`~gateway.edge.request_id_in`), the CORS headers
(:meth:`~gateway.cors.Cors.headers_for`), and the Edge's metrics and access
log line (:meth:`~gateway.edge.Edge.record`), in the order the app's layers
add them.

Anything else is left to the app unchanged (``answer`` returns None): a
unit this worker does not hold fresh, any path but ``/v1/units/`` and a
valid unit id (a query string, an escape), a body, an over-long
``If-None-Match``, the Edge at its concurrency cap. The protocol leaves to
the app what only it can order or close (see
:meth:`~gateway.http_protocol.GatewayProtocol.on_headers_complete`).
"""

from __future__ import annotations

import re
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from gateway.caches import judgeable
from gateway.cors import Cors
from gateway.edge import Edge, request_id_in
from gateway.models import SLUG_PATTERN
from runtime import logs

__all__ = ["STATE_KEY", "DirectReads"]

#: Where on the app's ``state`` the protocol finds the :class:`DirectReads`.
STATE_KEY = "direct_reads"

_PREFIX = b"/v1/units/"
_SLUG = re.compile(SLUG_PATTERN.removeprefix("^").removesuffix("$").encode("ascii"))
_REQUEST_ID = logs.REQUEST_ID_HEADER.encode("latin-1")


class DirectReads:
    """Answers for the protocol; see the module docstring.

    ``state`` is the app's (its gateway is ``state.gateway`` once started),
    ``edge`` the app's Edge, ``cors`` its CORS layer (None: none), and
    ``route`` the template the Edge labels unit reads with.
    """

    def __init__(self, state: Any, edge: Edge, cors: Cors | None, route: str) -> None:
        self.state = state
        self.edge = edge
        self.cors = cors
        self.route = route

    def answer(
        self,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        default_headers: list[tuple[bytes, bytes]],
    ) -> tuple[bytes, int, str] | None:
        """The whole response to ``GET url`` with ``headers`` (names in lower case), its
        status and request id; or None: the app answers this one. A hit is counted."""
        if not url.startswith(_PREFIX) or not _SLUG.fullmatch(url, len(_PREFIX)):
            return None
        if_none_match: str | None = None
        origin: bytes | None = None
        for name, value in headers:
            if name == b"if-none-match":
                if if_none_match is None:  # the first, as Starlette reads it
                    if_none_match = value.decode("latin-1")
            elif name == b"origin":
                origin = value  # the last, as gateway.cors reads it
            elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return None
        gw = getattr(self.state, "gateway", None)
        if gw is None or self.edge.busy or not judgeable(if_none_match):
            return None
        entry = gw.cached_unit(url[len(_PREFIX) :].decode("ascii"))
        if entry is None:
            return None
        status, entry_headers, body = entry.reply(if_none_match)
        request_id = request_id_in(headers)
        head = [STATUS_LINE[status]]
        for group in (
            default_headers,
            entry_headers,
            ((_REQUEST_ID, request_id.encode("latin-1")),),
            self.cors.headers_for(origin) if self.cors is not None else (),
        ):
            for name, value in group:
                head += (name, b": ", value, b"\r\n")
        head += (b"\r\n", body)
        return b"".join(head), status, request_id

    def record(self, status: int, elapsed_s: float, request_id: str) -> None:
        """The Edge's metrics and access log line for an answered read."""
        self.edge.record("GET", self.route, status, elapsed_s, request_id=request_id)
