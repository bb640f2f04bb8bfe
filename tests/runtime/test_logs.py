import io
import json
import logging

import structlog

from runtime import logs


def test_library_logs_are_json_lines_like_ours() -> None:
    out = io.StringIO()
    logs.configure("hub", stream=out)
    try:
        logging.getLogger("grpc._cython.cygrpc").info("Added job %r", "capacity")
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        token = logs.bind_request_id("r-1")
        try:
            logs.get_logger("hub.test").info("ours", shard_id="shard-0001")
        finally:
            logs.reset_request_id(token)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("asyncio").exception("task failed")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "Added job 'capacity'",
        "Invalid HTTP request received.",
        "ours",
        "task failed",
    ]
    assert all(line["service"] == "hub" and "timestamp" in line for line in lines)
    assert lines[0]["logger"] == "grpc._cython.cygrpc" and lines[1]["level"] == "warning"
    assert lines[2]["request_id"] == "r-1"
    assert "ValueError: boom" in lines[3]["exception"]


def test_info_line_writes_the_line_structlog_writes() -> None:
    out = io.StringIO()
    logs.configure("gateway", stream=out)
    try:
        token = logs.bind_request_id("r-2")
        try:
            fields = {"method": "GET", "route": "/v1/units/{unit_id}", "status": 200, "ms": 0.25}
            logs.get_logger("gateway.edge").info("http_request", **fields)
            logs.info_line("http_request", **fields)
            logs.info_line("odd", text='a"é\n\x00', flag=True, none=None, nan=float("nan"), n=[1])
            logs.info_line("given", request_id="explicit")
        finally:
            logs.reset_request_id(token)
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = out.getvalue().splitlines()
    by_structlog, by_hand, odd, given = (json.loads(line) for line in lines)
    assert by_structlog.pop("timestamp") <= by_hand.pop("timestamp")
    assert by_hand == by_structlog
    assert by_hand["service"] == "gateway" and by_hand["request_id"] == "r-2"
    assert odd["text"] == 'a"é\n\x00' and odd["flag"] is True and odd["none"] is None
    assert odd["nan"] != odd["nan"] and odd["n"] == [1]  # as the encoder writes NaN
    assert given["request_id"] == "explicit"
    assert all(line.isascii() for line in lines)


def test_info_line_follows_the_level_and_structlog_once_reset() -> None:
    out = io.StringIO()
    logs.configure("gateway", level="warning", stream=out)
    try:
        logs.info_line("http_request", status=200)
        assert out.getvalue() == ""
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    logs.info_line("after_reset", status=200)  # structlog's defaults (stdout), not ``out``
    assert out.getvalue() == ""


def test_json_lines_are_what_the_encoder_writes() -> None:
    for value in ['a"é\n\x00', 1, -0.0, 1.5, 1e300, 10**30, True, None, float("inf"), {"a": 1}]:
        fields = {"k": value, "é": "x"}
        assert logs._json_line(dict(fields)) == logs._encode(fields) + "\n", value


def test_request_ids_are_16_hex_digits() -> None:
    ids = {logs.new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
