"""Caching and routing through the gateway, against real processes; the HTTP edge's contract."""

from __future__ import annotations

import uuid

import pytest

from canistry.client import ApiError
from canistry.up import Cluster
from tests.gateway.support import client, registered, rpc_counts
from tests.gateway.test_auth import assert_problem
from tests.integration.direct import SAMPLE
from tests.polling import eventually

LOOKUP = "/canistry.registry.v1.Registry/Lookup"
GET_UNIT = "/canistry.content.v1.Content/GetUnit"
RIGHT = {u["id"]: {q["id"]: q["answer"] for q in u["quiz"]["questions"]} for u in SAMPLE}


async def test_a_cached_route_makes_no_registry_call(url: str, gw_cluster: Cluster) -> None:
    api = await registered(url)  # Assign put the route in the cache
    before = (await rpc_counts(gw_cluster, "registry")).get(LOOKUP, 0)
    for _ in range(3):
        await api.me()
        await api.balance()
    await api.submit("math-002", RIGHT["math-002"])
    await api.update_profile(name="Ada Cached")
    assert (await rpc_counts(gw_cluster, "registry")).get(LOOKUP, 0) == before
    await api.aclose()


async def test_etags_give_304_and_cache_hits_skip_the_content_service(
    url: str, gw_cluster: Cluster
) -> None:
    api = client(url)
    unit = await api.unit("history-002")
    assert unit.etag and unit.etag.startswith('"')
    r = await api.http.get("/v1/units/history-002")
    assert r.headers["cache-control"].startswith("public, max-age=")
    assert r.headers["etag"] == unit.etag
    calls = (await rpc_counts(gw_cluster, "content")).get(GET_UNIT, 0)
    assert await api.unit_if_changed("history-002", unit.etag) is None
    r = await api.http.get("/v1/units/history-002", headers={"If-None-Match": f'"x", {unit.etag}'})
    assert r.status_code == 304 and r.headers["etag"] == unit.etag and not r.content
    assert (await api.unit_if_changed("history-002", '"stale"')) == unit
    assert (await rpc_counts(gw_cluster, "content")).get(GET_UNIT, 0) == calls

    page = await api.units(subject="history", limit=2)
    assert page.etag
    r = await api.http.get(
        "/v1/units?subject=history&limit=2", headers={"If-None-Match": page.etag}
    )
    assert r.status_code == 304
    assert_problem(await api.http.get("/v1/units/no-such-unit"), 404, "unknown-unit")
    assert_problem(await api.http.get("/v1/units?cursor=garbage"), 400, "invalid-argument")
    await api.aclose()


async def test_content_down_submit_is_503_and_changes_nothing(
    url: str, gw_cluster: Cluster
) -> None:
    api = await registered(url)
    await api.unit("math-003")  # cached: reads keep working while content is down
    before = await api.me()
    content = gw_cluster.children["content"]
    content.stop()
    try:
        api.retry_unavailable_s = 0
        with pytest.raises(ApiError) as down:
            await api.submit("math-003", RIGHT["math-003"])
        assert down.value.status == 503 and down.value.retry_after is not None
        assert down.value.code == "unavailable"
        after = await api.me()
        assert after.today.attempts == before.today.attempts
        assert after.completed_units == before.completed_units
        assert after.balance == before.balance
        assert (await api.unit("math-003")).id == "math-003"
        r = await api.http.get("/readyz")
        assert_problem(r, 503, "unavailable")
        assert "content" in r.json()["detail"]
    finally:
        content.start()
        content.wait_ready(30)
    await eventually(
        api.ready, timeout_s=30, what="readiness after content restarts", ignore=(Exception,)
    )
    result = await eventually(
        lambda: api.submit("math-003", RIGHT["math-003"]),
        timeout_s=30,
        what="a submission",
        ignore=(Exception,),
    )
    assert result.first_completion
    await api.aclose()


async def test_idempotency_keys_replay_the_first_reply(url: str) -> None:
    api = client(url)
    key = f"reg-{uuid.uuid4().hex}"
    first = await api.register("Ida", "ida@example.org", idempotency_key=key)
    replay = await api.register("Ida", "ida@example.org", idempotency_key=key)
    assert first.created and replay == first  # 201 again, the same body
    with pytest.raises(ApiError) as reused:
        await api.register("Other", "ida@example.org", idempotency_key=key)
    assert reused.value.status == 422 and reused.value.code == "idempotency-key-reused"

    renamed = await api.update_profile(name="Ida One", idempotency_key="patch-1")
    await api.update_profile(name="Ida Two")
    again = await api.update_profile(name="Ida One", idempotency_key="patch-1")
    assert again == renamed and (await api.me()).profile.name == "Ida Two"

    sub1 = await api.submit("science-001", RIGHT["science-001"], idempotency_key="sub-1")
    sub2 = await api.submit("science-001", RIGHT["science-001"], idempotency_key="sub-1")
    assert sub1 == sub2 and sub1.first_completion
    assert (await api.me()).today.attempts == sub1.attempts_today
    with pytest.raises(ApiError) as reused:
        await api.submit("science-002", RIGHT["science-002"], idempotency_key="sub-1")
    assert reused.value.status == 422
    # Keys are per principal: another user's "sub-1" is their own.
    other = await registered(url)
    mine = await other.submit("science-001", RIGHT["science-001"], idempotency_key="sub-1")
    assert mine.first_completion
    await api.aclose()
    await other.aclose()


async def test_the_edge_answers_problems_and_carries_request_ids(
    url: str, gw_cluster: Cluster
) -> None:
    api = await registered(url)
    http = api.http
    assert (await http.get("/healthz")).json()["status"] == "ok"
    ready = (await http.get("/readyz")).json()
    assert ready["status"] == "ready" and set(ready["checks"]) == {"registry", "content", "shard"}
    assert_problem(await http.get("/nowhere"), 404, "no-such-route")
    r = await http.delete("/v1/me")
    assert_problem(r, 405, "method-not-allowed")
    big = b'{"answers":{"q1":"' + b"a" * 70_000 + b'"}}'
    r = await api.send_signed("POST", "/v1/units/math-001/submissions",
                              json={"answers": {"q1": "a" * 70_000}})  # fmt: skip
    assert_problem(r, 413, "body-too-large")
    r = await http.post("/v1/units/math-001/submissions", content=big)
    assert_problem(r, 413, "body-too-large")
    r = await api.send_signed("POST", "/v1/units/math-001/submissions", json={"answers": []})
    doc = assert_problem(r, 422, "validation-error")
    assert doc["errors"]
    r = await api.send_signed("PATCH", "/v1/me", json={})
    assert_problem(r, 422, "validation-error")
    r = await api.send_signed(
        "POST", "/v1/units/NOT_A_SLUG/submissions", json={"answers": {"q": "a"}}
    )
    assert_problem(r, 422, "validation-error")

    trace = f"trace-{uuid.uuid4().hex[:12]}"
    r = await api.send_signed(
        "POST", "/v1/units/math-001/submissions",
        json={"answers": {"q1": "no-such-choice"}}, headers={"X-Request-ID": trace},
    )  # fmt: skip
    doc = assert_problem(r, 400, "invalid-argument")
    assert doc["request_id"] == trace == r.headers["x-request-id"]
    # The id went gateway -> shard -> content service, which logged the refusal.
    log = gw_cluster.layout.log_file("content")
    await eventually(
        lambda: _contains(log, trace),
        timeout_s=5,
        what="the request id in the content log",
        ignore=(Exception,),
    )

    metrics = (await http.get("/metrics")).text
    assert (
        'canistry_gateway_requests_total{method="POST",route="/v1/users",status="201"}' in metrics
    )
    assert 'route="unmatched",status="404"' in metrics
    assert 'canistry_gateway_cache_total{cache="route",result="hit"}' in metrics
    await api.aclose()


async def _contains(path, text: str) -> bool:  # type: ignore[no-untyped-def]
    return text in path.read_text()
