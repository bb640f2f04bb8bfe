"""The fast unit-read and submission paths answer exactly as the FastAPI routes they front.

Two gateways run in this process over real HTTP against the same real
cluster: one with :mod:`gateway.fast_routes` in front (as served), one with
the FastAPI routes alone. Every request is sent to both and the answers are
compared: bytes, status, headers (all but the per-request id and date), and
problem documents for each way a request can be wrong.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from canistry.client import Identity
from canistry.up import Cluster
from gateway.app import create_app
from gateway.fast_routes import _MAX_ANSWERS, FastRoute, _plain_answers
from gateway.models import SubmissionRequest
from tests.gateway.support import cluster_gateway_config, in_process

UNIT = "math-001"
PER_REQUEST = {"x-request-id", "date"}


@contextlib.asynccontextmanager
async def serving(cluster: Cluster, data_dir: Path, *, fast: bool) -> AsyncIterator[str]:
    config = cluster_gateway_config(cluster, data_dir, register_rate=1000.0, register_burst=1000)
    app = create_app(config, fast_paths=fast)
    assert isinstance(app.router.routes[0], FastRoute) == fast
    async with in_process(app, config) as (url, _):
        yield url


@pytest.fixture
async def pair(gw_cluster: Cluster, tmp_path: Path) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    async with (
        serving(gw_cluster, tmp_path / "fast", fast=True) as fast_url,
        serving(gw_cluster, tmp_path / "plain", fast=False) as plain_url,
        httpx.AsyncClient(base_url=fast_url, timeout=30) as fast,
        httpx.AsyncClient(base_url=plain_url, timeout=30) as plain,
    ):
        yield {"fast": fast, "plain": plain}


def headers_of(r: httpx.Response) -> list[tuple[str, str]]:
    return [(k, v) for k, v in r.headers.multi_items() if k not in PER_REQUEST]


def problem(r: httpx.Response) -> dict[str, Any]:
    doc: dict[str, Any] = r.json()
    doc.pop("request_id", None)
    return doc


async def both(
    pair: dict[str, httpx.AsyncClient], method: str, path: str, **kw: Any
) -> tuple[httpx.Response, httpx.Response]:
    fast = await pair["fast"].request(method, path, **kw)
    plain = await pair["plain"].request(method, path, **kw)
    return fast, plain


async def test_a_cached_unit_read_is_byte_identical(pair: dict[str, httpx.AsyncClient]) -> None:
    for _ in range(2):  # a miss that fills the cache, then a hit
        fast, plain = await both(pair, "GET", f"/v1/units/{UNIT}")
        assert fast.status_code == plain.status_code == 200, fast.text
        assert fast.content == plain.content
        assert headers_of(fast) == headers_of(plain)
    assert fast.headers["content-type"] == "application/json"
    assert fast.headers["cache-control"] == "public, max-age=30"
    assert int(fast.headers["content-length"]) == len(fast.content)
    assert fast.headers["etag"].startswith('"') and fast.headers["etag"].endswith('"')
    assert json.loads(fast.content)["id"] == UNIT


async def test_if_none_match_gives_the_same_304s(pair: dict[str, httpx.AsyncClient]) -> None:
    etag = (await pair["fast"].get(f"/v1/units/{UNIT}")).headers["etag"]
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        fast, plain = await both(pair, "GET", f"/v1/units/{UNIT}", headers={"If-None-Match": value})
        assert fast.status_code == plain.status_code == 304, value
        assert fast.content == plain.content == b""
        assert headers_of(fast) == headers_of(plain)
        assert fast.headers["etag"] == etag
        assert fast.headers["cache-control"] == "public, max-age=30"
    fast, plain = await both(pair, "GET", f"/v1/units/{UNIT}", headers={"If-None-Match": '"x"'})
    assert fast.status_code == plain.status_code == 200
    assert fast.content == plain.content


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/units/Not_A_Slug", {}, 422),
        (f"/v1/units/{UNIT}", {"If-None-Match": '"' + "x" * 1100 + '"'}, 422),
        ("/v1/units/no-such-unit", {}, 404),
    ],
)
async def test_a_bad_unit_read_gets_the_same_problem(
    pair: dict[str, httpx.AsyncClient], path: str, headers: dict[str, str], status: int
) -> None:
    fast, plain = await both(pair, "GET", path, headers=headers)
    assert fast.status_code == plain.status_code == status, fast.text
    assert problem(fast) == problem(plain)
    assert headers_of(fast) == headers_of(plain)


async def test_other_methods_are_refused_alike(pair: dict[str, httpx.AsyncClient]) -> None:
    for method, path in (("HEAD", f"/v1/units/{UNIT}"), ("PUT", f"/v1/units/{UNIT}/submissions")):
        fast, plain = await both(pair, method, path)
        assert fast.status_code == plain.status_code == 405, method
        assert fast.headers.get("allow") == plain.headers.get("allow")


def signed(
    me: Identity, path: str, doc: object, *, key: str | None = None, ctype: str = "application/json"
) -> dict[str, Any]:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    headers = {"Authorization": me.authorization("POST", path, body), "Content-Type": ctype}
    if key is not None:
        headers["Idempotency-Key"] = key
    return {"content": body, "headers": headers}


async def registered(pair: dict[str, httpx.AsyncClient]) -> Identity:
    me = Identity.generate()
    r = await pair["fast"].post(
        "/v1/users", **signed(me, "/v1/users", {"name": "Fast", "email": "fast@example.org"})
    )
    assert r.status_code == 201, r.text
    return me


async def test_a_submission_answers_as_the_fastapi_route_does(
    pair: dict[str, httpx.AsyncClient],
) -> None:
    me = await registered(pair)
    path = f"/v1/units/{UNIT}/submissions"
    answers = {"answers": {"q1": "b"}}
    fast = await pair["fast"].post(path, **signed(me, path, answers, key="k1"))
    plain = await pair["plain"].post(path, **signed(me, path, answers, key="k2"))
    assert fast.status_code == plain.status_code == 200, fast.text
    assert [k for k, _ in headers_of(fast)] == [k for k, _ in headers_of(plain)]
    assert fast.headers["cache-control"] == plain.headers["cache-control"] == "no-store"
    assert fast.headers["content-type"] == plain.headers["content-type"] == "application/json"
    first, second = fast.json(), plain.json()
    assert first.keys() == second.keys()
    assert second["attempts_today"] == first["attempts_today"] + 1
    # The same key again (on either gateway: the shard keeps the reply) replays the bytes.
    again = await pair["plain"].post(path, **signed(me, path, answers, key="k1"))
    replay = await pair["fast"].post(path, **signed(me, path, answers, key="k1"))
    assert replay.content == again.content == fast.content


async def test_a_wrong_submission_gets_the_same_problem(
    pair: dict[str, httpx.AsyncClient],
) -> None:
    me = await registered(pair)
    path = f"/v1/units/{UNIT}/submissions"
    good = {"answers": {"q1": "b"}}
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("no signature", path, {"json": good}, 401),
        ("empty answers", path, signed(me, path, {"answers": {}}), 422),
        ("extra field", path, signed(me, path, {**good, "x": 1}), 422),
        ("not json", path, signed(me, path, b"{nope"), 422),
        ("text body", path, signed(me, path, good, ctype="text/plain"), 422),
        ("bad key", path, signed(me, path, good, key="has space"), 422),
        ("long key", path, signed(me, path, good, key="k" * 300), 400),
        ("bad unit id", "/v1/units/BAD/submissions",
         signed(me, "/v1/units/BAD/submissions", good), 422),
        ("unknown unit", "/v1/units/no-such-unit/submissions",
         signed(me, "/v1/units/no-such-unit/submissions", good), 404),
    ]  # fmt: skip
    for what, where, kw, status in cases:
        fast = await pair["fast"].post(where, **kw)
        # A fresh signature for the other gateway: the same one would be a replay there
        # only if both shared a nonce store, which they do not; sign again all the same.
        plain = await pair["plain"].post(where, **kw)
        assert fast.status_code == plain.status_code == status, (what, fast.text, plain.text)
        assert problem(fast) == problem(plain), what
        assert headers_of(fast) == headers_of(plain), what
    # A bad signature, and a replayed one, on a valid body.
    kw = signed(me, path, good)
    kw["headers"]["Authorization"] = kw["headers"]["Authorization"][:-4] + "AAAA"
    fast, plain = await pair["fast"].post(path, **kw), await pair["plain"].post(path, **kw)
    assert fast.status_code == plain.status_code == 401
    assert problem(fast) == problem(plain)
    kw = signed(me, path, good)
    assert (await pair["fast"].post(path, **kw)).status_code == 200
    assert (await pair["plain"].post(path, **kw)).status_code == 200
    fast, plain = await pair["fast"].post(path, **kw), await pair["plain"].post(path, **kw)
    assert fast.status_code == plain.status_code == 401
    assert problem(fast) == problem(plain)


def test_the_plain_answers_check_accepts_only_what_the_model_accepts_alike() -> None:
    """The fast path's check without pydantic: never looser than the model, same answers."""
    ok = {"q1": "a"}
    many = {f"q{i}": "a" for i in range(200)}
    docs: list[Any] = [
        {"answers": ok},
        {"answers": many},
        {"answers": {**many, "q200": "a"}},
        {"answers": {"q" * 100: "c" * 100}},
        {"answers": {"q" * 101: "a"}},
        {"answers": {"q1": "c" * 101}},
        {"answers": {}},
        {"answers": {"": "a"}},
        {"answers": {"q1": ""}},
        {"answers": {"q1": 1}},
        {"answers": {"q1": None}},
        {"answers": {"q1": ["a"]}},
        {"answers": {"q1": "é"}},
        {"answers": {"q1": "\ud800"}},
        {"answers": ok, "extra": 1},
        {"answers": [["q1", "a"]]},
        {"Answers": ok},
        [ok],
        "answers",
        None,
    ]
    for doc in docs:
        plain = _plain_answers(doc)
        try:
            model: dict[str, str] | None = SubmissionRequest.model_validate(doc).answers
        except ValidationError:
            model = None
        if plain is not None:
            assert plain == model, doc
    assert _MAX_ANSWERS == SubmissionRequest.model_fields["answers"].metadata[1].max_length
    assert _plain_answers({"answers": many}) == many
    assert _plain_answers({"answers": {**many, "q200": "a"}}) is None
