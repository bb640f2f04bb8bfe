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
