"""Every log line a cluster writes is a JSON line, library logs included (README, Logs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from canistry.client import Identity
from canistry.up import Cluster
from tests.polling import eventually


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


async def test_one_request_id_follows_a_request_through_the_hops(shared_cluster: Cluster) -> None:
    identity = Identity.generate()
    path = "/v1/me"
    headers = {
        "Authorization": identity.authorization("GET", path, b""),
        "x-request-id": "trace-me-0001",
    }
    async with httpx.AsyncClient(base_url=shared_cluster.gateway_url, timeout=10) as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == 404 and response.headers["x-request-id"] == "trace-me-0001"
    logs = shared_cluster.layout.data_dir / "logs"

    def seen() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        gateway = [
            r for r in _records(logs / "gateway.log") if r.get("request_id") == "trace-me-0001"
        ]
        registry = [
            r for r in _records(logs / "registry.log") if r.get("request_id") == "trace-me-0001"
        ]
        return gateway, registry

    # The gateway logs the request once its answer is sent: wait for the line.
    gateway, registry = await eventually(lambda: all(seen()) and seen(), what="the log lines")
    assert [r["event"] for r in gateway] == ["http_request"], gateway
    assert gateway[0]["status"] == 404 and gateway[0]["route"] == "/v1/me"
    assert [r["event"] for r in registry] == ["rpc_error"], "the registry's Lookup carried it"


def test_every_service_log_line_is_json(shared_cluster: Cluster) -> None:
    # Traffic that makes uvicorn and the scheduler log, then read every log file.
    with httpx.Client(base_url=shared_cluster.gateway_url, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        assert http.get("/v1/units?limit=1").status_code == 200
    lay = shared_cluster.layout
    files = [*sorted((lay.data_dir / "logs").glob("*.log")),
             *sorted(lay.shards_dir.glob("*/shard.log"))]  # fmt: skip
    assert {f.stem for f in files} >= {"gateway", "hub", "registry", "content", "shard"}
    bad = []
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                bad.append(f"{path.name}:{n}: {line[:160]}")
                continue
            if not {"event", "level", "timestamp", "service"} <= record.keys():
                bad.append(f"{path.name}:{n}: fields missing: {line[:160]}")
    assert not bad, "\n".join(bad[:20])
