"""Pure rules: problem mapping, caches and ETags, idempotency decisions; and the LMDB store."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import idempotency
from gateway.caches import TtlCache, body_etag, etag_matches
from gateway.errors import (
    BadSignature,
    IdempotencyKeyInFlight,
    NonceReused,
    NotRegistered,
    RequestInvalid,
)
from gateway.problems import problem_for
from gateway.store import GatewayStore
from runtime import errors


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidArgument("x"), 400, "invalid-argument"),
        (RequestInvalid("x"), 422, "validation-error"),
        (errors.UnknownUnit("x"), 404, "unknown-unit"),
        (NotRegistered("x"), 404, "not-registered"),
        (errors.DailyLimitExceeded("x"), 429, "daily-limit-exceeded"),
        (errors.NoCapacity("x"), 503, "no-capacity"),
        (errors.Unavailable("x"), 503, "unavailable"),
        (errors.DeadlineExceeded("x"), 503, "deadline-exceeded"),
        (errors.IdempotencyKeyReused("x"), 422, "idempotency-key-reused"),
        (IdempotencyKeyInFlight("x"), 409, "idempotency-key-in-flight"),
        (errors.PermissionDenied("x"), 403, "permission-denied"),
        (BadSignature("x"), 401, "bad-signature"),
        (errors.CanistryError("peer crashed: secret"), 500, "internal"),
        (RuntimeError("secret"), 500, "internal"),
    ],
)
def test_each_error_has_its_status_and_stable_type(
    exc: BaseException, status: int, code: str
) -> None:
    p = problem_for(exc, retry_after_s=2, now_s=86_400 * 100 + 3600)
    assert (p.status, p.code) == (status, code)
    assert p.type == f"https://canistry.dev/problems/{code}"
    doc = p.document(instance="/v1/me", request_id="r1")
    assert {"type", "title", "status", "detail", "instance", "request_id"} <= doc.keys()
    if status == 500:
        assert "secret" not in str(doc)
    if status == 503:
        assert p.headers["Retry-After"] == "2"
    if status == 401:
        assert p.headers["WWW-Authenticate"] == "Canistry"


def test_daily_limit_retry_after_points_at_the_next_utc_day() -> None:
    p = problem_for(errors.DailyLimitExceeded(), retry_after_s=2, now_s=86_400 * 100 + 3600)
    assert p.headers["Retry-After"] == str(86_400 - 3600)


def test_ttl_cache_expires_and_evicts_least_recent() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(10, 2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    now[0] = 10.0
    assert cache.get("a") is None and len(cache) == 1


def test_etag_matching() -> None:
    tag = body_etag(b"{}")
    assert etag_matches(tag, tag)
    assert etag_matches(f'"x", W/{tag}', tag)
    assert etag_matches("*", tag)
    assert not etag_matches('"other"', tag)
    assert not etag_matches(None, tag)


def test_idempotency_decisions() -> None:
    fp, other = b"a" * 32, b"b" * 32
    kw = {"now_ms": 1_000_000, "ttl_ms": 86_400_000, "claim_ms": 30_000}
    assert idempotency.decide(None, fp, **kw) is None
    done = idempotency.Record(True, fp, 999_000, 201, b"{}")
    assert idempotency.decide(done, fp, **kw) == done
    with pytest.raises(errors.IdempotencyKeyReused):
        idempotency.decide(done, other, **kw)
    pending = idempotency.Record(False, fp, 999_000)
    with pytest.raises(IdempotencyKeyInFlight):
        idempotency.decide(pending, fp, **kw)
    stale = idempotency.Record(False, fp, 1_000_000 - 30_000)
    assert idempotency.decide(stale, fp, **kw) is None
    expired = idempotency.Record(True, fp, 1_000_000 - 86_400_000, 200, b"{}")
    assert idempotency.decide(expired, other, **kw) is None
    assert idempotency.decode(idempotency.encode(done)) == done
    with pytest.raises(errors.InvalidArgument):
        idempotency.check_key("has space")


async def test_store_nonces_replies_and_sweep(tmp_path: Path) -> None:
    async with GatewayStore(tmp_path / "gw") as store:
        key = b"k" * 32
        await store.remember_nonce(key, b"nonce-1", expires_ms=2_000, now_ms=1_000)
        with pytest.raises(NonceReused):
            await store.remember_nonce(key, b"nonce-1", expires_ms=2_100, now_ms=1_100)
        await store.remember_nonce(b"j" * 32, b"nonce-1", expires_ms=2_000, now_ms=1_000)
        # Past its window the nonce is forgotten; the request's timestamp is stale by then.
        await store.remember_nonce(key, b"nonce-1", expires_ms=4_000, now_ms=2_500)

        skey, fp = idempotency.store_key("p", "k1"), b"f" * 32
        ttl = 86_400_000
        assert await store.claim(skey, fp, now_ms=1_000, ttl_ms=ttl, claim_ms=30_000) is None
        with pytest.raises(IdempotencyKeyInFlight):
            await store.claim(skey, fp, now_ms=1_001, ttl_ms=ttl, claim_ms=30_000)
        await store.release(skey, fp)
        assert await store.claim(skey, fp, now_ms=1_002, ttl_ms=ttl, claim_ms=30_000) is None
        await store.complete(skey, fp, status=201, body=b'{"a":1}', now_ms=1_003, ttl_ms=ttl)
        stored = await store.claim(skey, fp, now_ms=1_004, ttl_ms=ttl, claim_ms=30_000)
        assert stored is not None and (stored.status, stored.body) == (201, b'{"a":1}')

        assert await store.sweep(3_000, reply_ttl_ms=ttl) >= 2
        await store.remember_nonce(b"j" * 32, b"nonce-1", expires_ms=9_000, now_ms=3_000)
        with pytest.raises(NonceReused):  # the one re-used at 2_500 is still live
            await store.remember_nonce(key, b"nonce-1", expires_ms=9_000, now_ms=3_000)
        assert await store.sweep(ttl + 10_000, reply_ttl_ms=ttl) >= 1
        assert (
            await store.claim(skey, b"g" * 32, now_ms=ttl + 10_000, ttl_ms=ttl, claim_ms=1) is None
        )
