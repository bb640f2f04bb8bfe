"""Structured JSON logs, with a request id carried across every hop.

``configure(service)`` is called once per process. The request id lives in a
context variable: the server side binds it from incoming gRPC metadata (or
makes one), and the client side copies it into outgoing metadata, so one id
follows a request through gateway, shard and content service.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import sys
import time
from typing import Any, TextIO, cast

import structlog

__all__ = [
    "REQUEST_ID_HEADER",
    "LossyStream",
    "configure",
    "current_request_id",
    "get_logger",
    "info_line",
    "new_request_id",
]

REQUEST_ID_HEADER = "x-request-id"

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "canistry_request_id", default=None
)


def new_request_id() -> str:
    """16 hex digits, unique enough to correlate a request's lines (not a secret: the
    random module's generator, a tenth of ``uuid4``'s cost on a hot path)."""
    return f"{random.getrandbits(64):016x}"


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


def _utc_timestamp() -> str:
    """Now, as ``TimeStamper(fmt="iso", utc=True)`` writes it (microseconds always shown);
    the date and time of day are formatted once a second."""
    global _stamped_second, _stamped_prefix
    now = time.time()
    second = int(now)
    if second != _stamped_second:
        _stamped_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _stamped_second = second
    return f"{_stamped_prefix}.{int((now - second) * 1_000_000):06d}Z"


_stamped_second = -1
_stamped_prefix = ""


def _timestamp(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    event["timestamp"] = _utc_timestamp()
    return event


def _fallback(obj: Any) -> Any:
    """What structlog's JSONRenderer writes for a value JSON has no form for."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


#: ``json.dumps`` as structlog's JSONRenderer calls it, with its encoder built once.
_encode = json.JSONEncoder(default=_fallback).encode


def _render(_logger: object, _method: str, event: structlog.types.EventDict) -> str:
    return _encode(event)


#: Where :func:`info_line` writes, set by :func:`configure`: the stream, and whether
#: the level lets ``info`` through. None: not configured, structlog writes.
_lines: tuple[TextIO, bool] | None = None


def info_line(event: str, **fields: Any) -> None:
    """``get_logger().info(event, **fields)`` for a hot path (the gateway's access log):
    the same JSON line, with the same fields, written without structlog's processor
    chain (a fifth of its cost). ``fields`` must be JSON values."""
    if _lines is None or not structlog.is_configured():  # (reset since: structlog's defaults)
        get_logger().info(event, **fields)
        return
    stream, enabled = _lines
    if not enabled:
        return
    fields["event"] = event
    for key, value in structlog.contextvars.get_contextvars().items():
        fields.setdefault(key, value)
    fields["level"] = "info"
    fields["timestamp"] = _utc_timestamp()
    rid = _request_id.get()
    if rid is not None:
        fields.setdefault("request_id", rid)
    stream.write(_json_line(fields))
    stream.flush()


def _json_line(fields: dict[str, Any]) -> str:
    """``fields`` as :data:`_encode` writes them, and a newline: strings and numbers
    by hand (twice as fast), anything else by the encoder."""
    parts = []
    for key, value in fields.items():
        kind = type(value)
        quoted = _keys.get(key)
        if quoted is None:
            quoted = _quote(key) + ": "
            if len(_keys) < 256:  # keys are names in the code: few
                _keys[key] = quoted
        if kind is str:
            parts.append(quoted + _quote(value))
        elif kind is int or (kind is float and -_HUGE < value < _HUGE):  # not bool, nor NaN
            parts.append(quoted + repr(value))
        else:
            return _encode(fields) + "\n"
    return "{" + ", ".join(parts) + "}\n"


_keys: dict[str, str] = {}


_quote = json.encoder.encode_basestring_ascii
_HUGE = float("inf")


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
        _timestamp,
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
            _render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        # One write and a flush per line (print() writes the newline apart).
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    global _lines
    _lines = (stream, logging.getLevelNamesMapping()[level.upper()] <= logging.INFO)


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
