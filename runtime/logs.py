"""Structured JSON logs, with a request id carried across every hop.

``configure(service)`` is called once per process. The request id lives in a
context variable: the server side binds it from incoming gRPC metadata (or
makes one), and the client side copies it into outgoing metadata, so one id
follows a request through gateway, shard and content service.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import uuid
from typing import TextIO, cast

import structlog

__all__ = [
    "REQUEST_ID_HEADER",
    "LossyStream",
    "configure",
    "current_request_id",
    "get_logger",
    "new_request_id",
]

REQUEST_ID_HEADER = "x-request-id"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "canistry_request_id", default=None
)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(request_id: str) -> contextvars.Token[str | None]:
    return _request_id.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def _add_request_id(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    rid = _request_id.get()
    if rid is not None:
        event.setdefault("request_id", rid)
    return event


class LossyStream:
    """A log stream that drops what it cannot write instead of raising.

    A service's log usually sits on the same disk as its data: when that disk
    is full, a log line that cannot be written must not fail the request that
    logged it, nor kill the task that was logging a failed write (the store's
    writer would then never answer again, even once room is made).
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.dropped = 0
        """Writes lost since start (lines, or parts of them)."""

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError:
            self.dropped += 1
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError:
            self.dropped += 1

    def __getattr__(self, name: str) -> object:  # isatty(), fileno(), encoding...
        return getattr(self.stream, name)


def configure(service: str, *, level: str = "info", stream: TextIO | None = None) -> None:
    """Send JSON lines to ``stream`` (stderr), each tagged with ``service`` and the request id.

    Libraries that log through the standard library (uvicorn, asyncio) are
    rendered as the same JSON lines, with their ``logger`` name. A line that
    cannot be written (a full disk) is dropped, never raised (:class:`LossyStream`).
    """
    stream = cast(TextIO, LossyStream(stream or sys.stderr))

    def add_service(
        _logger: object, _method: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    stamped: list[structlog.types.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
    ]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*stamped, structlog.stdlib.add_logger_name, add_service],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # Their own handlers (if any were set up) would print plain text beside ours.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *stamped,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
