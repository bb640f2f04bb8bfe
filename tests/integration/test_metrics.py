"""Every service serves Prometheus metrics, and `canistry status --metrics` says where."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

from canistry.up import Cluster
from tests.integration.direct import SAMPLE, Direct, new_principal, right_answers


def _samples(url: str) -> dict[str, float]:
    text = httpx.get(url, timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def _total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix))


async def test_every_service_serves_metrics(shared_cluster: Cluster) -> None:
    direct = Direct(shared_cluster)
    principal = new_principal()
    await direct.register(principal)
    unit = SAMPLE[0]
    assert (await direct.submit(principal, unit["id"], right_answers(unit))).passed

    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "canistry", "status", "--metrics",
         "--data-dir", str(shared_cluster.config.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    urls = dict(
        line.split()
        for line in result.stdout.split("Metrics (Prometheus)")[1].splitlines()
        if line.strip()
    )
    assert {"content", "registry", "hub", "shard-0001", "gateway"} <= urls.keys(), urls

    content = _samples(urls["content"])
    assert content["canistry_content_units{}"] == len(SAMPLE)
    assert _total(content, "canistry_content_verifications_total{outcome=passed}") >= 1
    batch = "canistry_rpc_requests_total{code=ok,method=Content/VerifyQuizBatch"
    assert _total(content, batch) >= 1
    shard = _samples(urls["shard-0001"])
    assert _total(shard, "canistry_commit_batch_jobs_count") >= 1
    assert _total(shard, "canistry_rpc_seconds_count{method=UserShard/SubmitQuiz") >= 1
    registry = _samples(urls["registry"])
    assert _total(registry, "canistry_rpc_requests_total{code=ok,method=Registry/Assign") >= 1
    assert registry["canistry_registry_users{}"] >= 1
    assert shard["canistry_shard_users{}"] >= 1 and shard["canistry_shard_staked_tokens{}"] > 0
    hub = _samples(urls["hub"])
    assert hub["canistry_hub_treasury_cap_tokens{}"] == shared_cluster.config.cap
    assert hub["canistry_hub_treasury_granted_tokens{}"] > 0
    assert hub["canistry_hub_allowance_calls{}"] >= 1
    assert hub["canistry_hub_shards_registered{}"] >= 1
    assert hub["canistry_hub_spawns_done{}"] >= hub["canistry_hub_shards_registered{}"]
    assert hub["canistry_hub_shards_in_progress{}"] >= 0
    assert hub["canistry_hub_shard_restarts{}"] >= 0
