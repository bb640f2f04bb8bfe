"""Every log line a cluster writes is a JSON line, library logs included (README, Logs)."""

from __future__ import annotations

import json

import httpx

from canistry.up import Cluster


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
