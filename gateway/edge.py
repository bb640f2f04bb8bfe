"""The HTTP edge: request ids, metrics, body limits, and every error as a problem document.

:class:`Edge` is pure ASGI middleware, outermost in the app: it binds the
request id (from ``X-Request-ID`` or a new one) so that it reaches every gRPC
call through :mod:`runtime.logs`, caps the body's size and the time it may
take to arrive (408 and close), caps the requests in progress (503 beyond),
times the request, and turns any exception that escaped the routes into a
bare 500 problem document.
:func:`install_handlers` maps domain errors, FastAPI's validation errors and
Starlette's 404/405 to problem documents.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import metrics
from gateway.errors import (
    BodyTooLarge,
    MethodNotAllowed,
    NoSuchRoute,
    Overloaded,
    RequestInvalid,
    RequestTimeout,
    Unauthenticated,
)
from gateway.problems import INTERNAL, MEDIA_TYPE, Problem, problem_for
from gateway.views import dumps
from runtime import logs
from runtime.errors import CanistryError, InvalidArgument, PermissionDenied

__all__ = ["Edge", "install_handlers", "problem_response", "request_id_in"]

log = logs.get_logger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_ID_HEADER = logs.REQUEST_ID_HEADER.encode()
#: Label sets whose metrics an Edge keeps looked up.
_MAX_METER_KEYS = 1024


def _safe(text: str) -> str:
    """Text that encodes as UTF-8 whatever the client sent (lone surrogates escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_response(problem: Problem, *, instance: str, request_id: str | None) -> Response:
    doc = problem.document(instance=_safe(instance), request_id=request_id)
    doc["detail"] = _safe(doc["detail"])
    return Response(
        dumps(doc), status_code=problem.status, media_type=MEDIA_TYPE, headers=problem.headers
    )


class Edge:
    """Outermost middleware; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout_s: float = 20.0,
        max_concurrency: int = 500,
        retry_after_s: int = 2,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.max_concurrency = max_concurrency
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_in(scope.get("headers", ()))
        scope.setdefault("state", {})["request_id"] = request_id
        token = logs.bind_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [
                    *message.get("headers", ()),
                    (_REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        self.in_flight += 1
        try:
            too_big = _declared_length(scope) > self.max_body_bytes
            if too_big:
                await self._reject_body(scope, send_with_id, request_id)
            elif self.in_flight > self.max_concurrency:
                await self._refuse_busy(scope, send_with_id, request_id)
            else:
                await self.app(scope, self._capped(receive), send_with_id)
        except Exception:
            log.exception("http_internal_error", path=_safe(scope.get("path", "")))
            if not response_started:
                response = problem_response(
                    INTERNAL, instance=scope.get("path", ""), request_id=request_id
                )
                await response(scope, receive, send_with_id)
            else:
                raise
        finally:
            self.in_flight -= 1
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.record(scope["method"], template, status, time.perf_counter() - started)
            logs.reset_request_id(token)

    @property
    def busy(self) -> bool:
        """Whether one more request would be over ``max_concurrency`` (and refused)."""
        return self.in_flight >= self.max_concurrency

    def record(
        self, method: str, template: str, status: int, elapsed_s: float, **context: Any
    ) -> None:
        """Count an answered request in the metrics and write its access log line
        (``http_request``; ``context`` adds fields, such as a ``request_id`` not bound)."""
        requests, latency = self._meters(method, template, status)
        requests.inc()
        latency.observe(elapsed_s)
        logs.info_line(
            "http_request",
            method=method,
            route=template,
            status=status,
            ms=round(elapsed_s * 1000, 2),
            **context,
        )

    def _meters(self, method: str, template: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of these labels, looked up once
        (a label lookup costs a lock and a tuple per request)."""
        key = (method, template, status)
        meters = self._children.get(key)
        if meters is None:
            meters = (
                metrics.REQUESTS.labels(method, template, str(status)),
                metrics.LATENCY.labels(method, template),
            )
            if len(self._children) < _MAX_METER_KEYS:  # methods come from clients: bounded
                self._children[key] = meters
        return meters

    def _capped(self, receive: Receive) -> Receive:
        """``receive`` with the body capped in size, and in time from the first read."""
        seen = 0
        limit = self.max_body_bytes
        deadline: float | None = None
        complete = False

        async def capped() -> Message:
            nonlocal seen, deadline, complete
            if complete:  # later reads wait for a disconnect: no deadline for those
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.body_timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408, f"the body did not arrive within {self.body_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the body is larger than {limit} bytes")
                complete = not message.get("more_body", False)
            else:
                complete = True
            return message

        return capped

    async def _refuse_busy(self, scope: Scope, send: Send, request_id: str) -> None:
        busy = Overloaded("this server has its most requests in progress; retry shortly")
        await _refuse(busy, self.retry_after_s, scope, send, request_id)

    async def _reject_body(self, scope: Scope, send: Send, request_id: str) -> None:
        too_big = BodyTooLarge(f"the body is larger than {self.max_body_bytes} bytes")
        await _refuse(too_big, 1, scope, send, request_id)


async def _refuse(
    error: CanistryError, retry_after_s: int, scope: Scope, send: Send, request_id: str
) -> None:
    """Answer ``error`` as a problem document without reading the body, and close."""
    problem = problem_for(error, retry_after_s=retry_after_s, now_s=time.time())
    response = problem_response(problem, instance=scope.get("path", ""), request_id=request_id)
    response.headers["Connection"] = "close"

    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)


def request_id_in(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's id: its first ``X-Request-ID`` if that is a valid id, else a new one."""
    for name, value in headers:
        if name == _REQUEST_ID_HEADER:
            text: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return logs.new_request_id()


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def install_handlers(app: FastAPI, *, retry_after_s: int) -> None:
    """Make every error the routes raise a problem document."""

    def respond(request: Request, exc: BaseException) -> Response:
        problem = problem_for(exc, retry_after_s=retry_after_s, now_s=time.time())
        if problem.status >= 500 and problem is INTERNAL:
            log.error("upstream_internal_error", error=repr(exc))
        if isinstance(exc, Unauthenticated):
            metrics.AUTH_FAILURES.labels(exc.code).inc()
        return problem_response(
            problem,
            instance=request.url.path,
            request_id=getattr(request.state, "request_id", None),
        )

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        return respond(request, exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [_error_entry(e) for e in exc.errors()]
        where = ", ".join(".".join(e["loc"]) for e in errors[:5])
        return respond(
            request, RequestInvalid(f"the request does not match its schema: {where}", errors)
        )

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        mapped: CanistryError
        if exc.status_code == 404:
            mapped = NoSuchRoute(f"no route for {request.method} {request.url.path}")
        elif exc.status_code == 405:
            mapped = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
        elif exc.status_code == 413:
            mapped = BodyTooLarge(str(exc.detail))
        elif exc.status_code == 408:
            mapped = RequestTimeout(str(exc.detail))
        elif exc.status_code in (401, 403):
            mapped = PermissionDenied(str(exc.detail))
        elif 400 <= exc.status_code < 500:
            mapped = InvalidArgument("the request could not be read")
        else:
            return respond(request, exc)
        response = respond(request, mapped)
        if exc.status_code in (408, 413):  # the rest of the body is not worth reading
            response.headers["Connection"] = "close"
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response

    app.add_exception_handler(CanistryError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)


def _error_entry(error: Any) -> dict[str, Any]:
    return {
        "loc": [_safe(str(part)) for part in error.get("loc", ())],
        "msg": _safe(str(error.get("msg", ""))),
        "type": _safe(str(error.get("type", ""))),
    }
