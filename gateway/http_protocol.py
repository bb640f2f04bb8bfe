"""uvicorn's httptools protocol with the limits a public edge needs, and problem documents.

uvicorn closes idle keep-alive connections but has no deadline for a request's
headers or body, no cap on connections, and answers unparseable requests
``text/plain``. :class:`GatewayProtocol` adds, per worker:

- a header deadline: a request's line and headers must arrive within
  ``header_timeout_s`` of its first byte (of the connection opening, for the
  first request), else ``408`` and close;
- a body backstop: once the headers are in, the body must be complete a
  second after ``body_timeout_s`` (:class:`gateway.edge.Edge` answers 408 at
  ``body_timeout_s`` when the app reads it; this closes connections whose body
  nobody reads);
- a header size cap: a request line and headers longer than ``max_header_bytes``
  get ``431`` (the parser would read any amount), and the connection closes;
- a connection cap: past ``max_connections`` open connections, a new one gets
  ``503`` with ``Retry-After`` and is closed;
- malformed HTTP answered as a ``malformed-request`` problem document;
- one socket write per response: uvicorn writes a response's head and its
  body separately, and :class:`_Corked` joins them (a send on loopback costs
  as much as the rest of a cached read);
- cached unit reads answered here, without an ASGI request, when nothing
  else is in progress on the connection (:mod:`gateway.direct_reads` says
  why, and builds the answer).

uvicorn builds one protocol per connection by calling ``config.http``;
:class:`ProtocolFactory` is that callable (picklable, for spawned workers).
"""

from __future__ import annotations

import asyncio
import http
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.direct_reads import STATE_KEY, DirectReads
from gateway.errors import HeadersTooLarge, MalformedRequest, Overloaded, RequestTimeout
from gateway.problems import MEDIA_TYPE, problem_for
from gateway.views import dumps
from runtime import logs
from runtime.errors import CanistryError

__all__ = ["GatewayProtocol", "ProtocolFactory"]

log = logs.get_logger(__name__)

#: How long a refused connection is read (and ignored) after its answer, before closing.
_LINGER_S = 1.0


@dataclass(frozen=True)
class ProtocolFactory:
    """What uvicorn calls for each connection (pass it as ``uvicorn.Config(http=...)``)."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    retry_after_s: int
    max_header_bytes: int

    def __call__(self, **kwargs: Any) -> GatewayProtocol:
        return GatewayProtocol(limits=self, **kwargs)


class GatewayProtocol(HttpToolsProtocol):
    """See the module docstring."""

    def __init__(self, *, limits: ProtocolFactory, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False
        self._in_head = True
        """Between a request's first byte (or the connection opening) and its last header."""
        self._head_bytes = 0
        """Bytes received while in a request's head."""
        self._corked: _Corked | None = None
        self._reads: DirectReads | None = None
        """Found on the app's state at the first request that could use it."""
        self._answered = False
        """The request being parsed was answered here: the app never sees it."""
        self._head_begun = False
        """A keep-alive request began in the chunk being parsed (its deadline is due)."""

    # -- connection -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            log.warning("http_connection_refused", open=len(self.connections))
            self._reply_and_close(
                Overloaded("this server holds its most connections; retry shortly"), "/"
            )
            return
        super().connection_made(transport)
        self._corked = _Corked(transport, self.loop)
        self.transport = self._corked  # type: ignore[assignment]
        self._arm(self.limits.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            # Before the parser sees it: the head's bytes in this chunk (up to the blank
            # line, or all of it) must keep the head within the limit, whatever the
            # chunking (asyncio reads up to 256 KiB at once).
            end = data.find(b"\r\n\r\n")
            head = len(data) if end < 0 else end + 4
            if self._head_bytes + head > self.limits.max_header_bytes:
                log.info("http_headers_too_large", client=str(self.client))
                self._reply_and_close(
                    HeadersTooLarge(
                        f"the request line and headers exceed {self.limits.max_header_bytes} bytes"
                    ),
                    "/",
                )
                return
            self._head_bytes += head
        super().data_received(data)
        if self._head_begun:
            # A request began in this chunk: its head has ``header_timeout_s`` from now,
            # unless it is complete already (as a keep-alive request's mostly is).
            self._head_begun = False
            if self._in_head and self._deadline is None and not self._refused:
                self._arm(self.limits.header_timeout_s, self._headers_late)

    # -- parser callbacks -------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A response answered here arms the keep-alive timer, which must not time a
        # request pipelined behind it (uvicorn cancels it only as data arrives).
        self._unset_keepalive_if_required()
        if not self._in_head:
            self._in_head, self._head_bytes = True, 0
        if self._deadline is None:  # a keep-alive request: its clock starts now
            self._head_begun = True  # (armed after this chunk, if the head is not in it)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        if self._answer_directly():
            return
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s + 1.0, self._body_late)

    def on_body(self, body: bytes) -> None:
        if not self._answered:  # (a request answered here has no body)
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        # The next bytes on this connection are the next request's head: the size cap
        # must count them from their first read, before the parser begins it.
        self._in_head, self._head_bytes = True, 0
        if self._answered:
            self._answered = False
            return
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser rejects: here a problem document."""
        self._reply_and_close(
            MalformedRequest("the request is not HTTP/1.1 that this server can read"), "/"
        )

    # -- cached reads -----------------------------------------------------------

    def _answer_directly(self) -> bool:
        """Answer a cached unit read here (:mod:`gateway.direct_reads`); False: the app answers.

        Only a plain keep-alive HTTP/1.1 ``GET`` (no upgrade, no ``Expect``),
        when no response is in progress on this connection (it would be
        overtaken), and the transport takes writes (else the app waits for it
        to drain). A request that closes the connection is the app's: uvicorn
        then drops any request pipelined behind it.
        """
        started = time.perf_counter()
        cycle = self.cycle
        parser = self.parser
        if (
            self._corked is None
            or (cycle is not None and not cycle.response_complete)
            or self.flow.write_paused
            or self.transport.is_closing()
            or parser.get_method() != b"GET"
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or self.expect_100_continue
            or self.root_path
            or self.limit_concurrency is not None
        ):
            return False
        reads = self._reads or self._find_reads()
        if reads is None:
            return False
        try:
            answer = reads.answer(self.url, self.headers, self.server_state.default_headers)
        except Exception:  # a bug here must cost speed, not the answer: the app answers
            log.exception("direct_read_failed")
            return False
        if answer is None:
            return False
        response, status, request_id = answer
        self._answered = True
        self._corked.write_now(response)
        reads.record(status, time.perf_counter() - started, request_id)
        # What uvicorn does once a response is complete (on_response_complete).
        self.server_state.total_requests += 1
        self.flow.resume_reading()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        return True

    def _find_reads(self) -> DirectReads | None:
        """The app's :class:`DirectReads`, below uvicorn's wrappers (proxy headers...)."""
        layer = self.app
        for _ in range(8):
            reads = getattr(getattr(layer, "state", None), STATE_KEY, None)
            if isinstance(reads, DirectReads):
                self._reads = reads
                return reads
            layer = getattr(layer, "app", None)
            if layer is None:
                break
        return None

    # -- deadlines --------------------------------------------------------------

    def _arm(self, delay_s: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _headers_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("http_headers_timeout", client=str(self.client))
            self._reply_and_close(
                RequestTimeout(
                    f"the request headers did not arrive within {self.limits.header_timeout_s:g} s"
                ),
                "/",
            )

    def _body_late(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("http_body_timeout", client=str(self.client))
            self.transport.close()

    # -- raw replies ------------------------------------------------------------

    def _reply_and_close(self, error: CanistryError, instance: str) -> None:
        """Write ``error`` as a whole problem-document response, then close.

        The write side closes at once; reading goes on (and is ignored) until the
        client closes or a second passes: closing with unread bytes would send a
        reset, and the client could lose the answer.
        """
        self._refused = True
        self.transport.write(
            raw_problem(error, instance, self.server_state.default_headers, self.limits)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._arm(_LINGER_S, self.transport.close)
        else:
            self.transport.close()


class _Corked:
    """A transport whose writes wait for the next write or the end of this turn of the loop.

    A write is held, and goes out joined with the next one (a response's
    body after its head) or, at the latest, in a callback that runs after
    whatever is ready now: the bytes and their order are unchanged, and no
    write waits for anything but the loop. ``close``, ``write_eof`` and
    ``set_protocol`` send what is held first; everything else is the
    transport's own.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held = b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._transport.write(held + bytes(data))
        elif data:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)

    def write_now(self, data: bytes) -> None:
        """Write ``data`` (after what is held) at once: a whole response, nothing to join."""
        if self._held:
            data, self._held = self._held + data, b""
        self._transport.write(data)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._transport.write(held)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def abort(self) -> None:
        self._held = b""
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return len(self._held) + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def raw_problem(
    error: CanistryError,
    instance: str,
    default_headers: list[tuple[bytes, bytes]],
    limits: ProtocolFactory,
) -> bytes:
    """An HTTP/1.1 response carrying ``error``'s problem document, ``Connection: close``."""
    request_id = logs.new_request_id()
    problem = problem_for(error, retry_after_s=limits.retry_after_s, now_s=time.time())
    body = dumps(problem.document(instance=instance, request_id=request_id))
    status = http.HTTPStatus(problem.status)
    lines = [f"HTTP/1.1 {status.value} {status.phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    headers = {
        "content-type": MEDIA_TYPE,
        "content-length": str(len(body)),
        "connection": "close",
        logs.REQUEST_ID_HEADER.lower(): request_id,
        **{k.lower(): v for k, v in problem.headers.items()},
    }
    lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
