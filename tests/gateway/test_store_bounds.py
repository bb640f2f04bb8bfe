"""The gateway's LMDB stays bounded: per-principal quotas, a reserve for deletes, a sweeper
that outlives any failure, and a nonce window without a replayable edge."""

from __future__ import annotations

from pathlib import Path

import pytest

from canistry.client import Identity
from gateway import idempotency, signing
from gateway.config import GatewayConfig
from gateway.core import Gateway
from gateway.errors import (
    IdempotencyKeyTooLong,
    IdempotencyQuotaExceeded,
    NonceReused,
    StaleTimestamp,
)
from gateway.store import GatewayStore
from runtime.errors import StoreFull
from tests.polling import eventually

TTL = 86_400_000
FP = b"f" * 32


def config(tmp_path: Path, **kw: object) -> GatewayConfig:
    return GatewayConfig(
        registry_address="127.0.0.1:1",
        content_address="127.0.0.1:1",
        hub_address="127.0.0.1:1",
        data_dir=tmp_path,
        **kw,  # type: ignore[arg-type]
    )


async def claim(store: GatewayStore, principal: str, key: str, now_ms: int = 1_000) -> object:
    skey = idempotency.store_key(principal, key)
    return await store.claim(skey, FP, now_ms=now_ms, ttl_ms=TTL, claim_ms=30_000)


async def test_each_principal_keeps_at_most_its_quota_of_replies(tmp_path: Path) -> None:
    async with GatewayStore(tmp_path / "gw", quota=3) as store:
        for i in range(3):
            assert await claim(store, "p", f"k{i}") is None
        with pytest.raises(IdempotencyQuotaExceeded):
            await claim(store, "p", "k3")
        assert await claim(store, "q", "k3") is None  # another principal has its own
        # A replay of a stored key costs nothing more.
        skey = idempotency.store_key("p", "k0")
        await store.complete(skey, FP, status=200, body=b"{}", now_ms=1_001, ttl_ms=TTL)
        stored = await claim(store, "p", "k0", now_ms=1_002)
        assert stored is not None
        # A released claim gives its place back.
        await store.release(idempotency.store_key("p", "k1"), FP)
        assert await claim(store, "p", "k3") is None
        with pytest.raises(IdempotencyQuotaExceeded):
            await claim(store, "p", "k4")
        # Expired replies are swept, and with them the count.
        assert await store.sweep(1_001 + TTL, reply_ttl_ms=TTL) >= 3
        for i in range(3):
            assert await claim(store, "p", f"new{i}", now_ms=2_000 + TTL) is None


def test_idempotency_keys_longer_than_64_are_refused() -> None:
    assert idempotency.check_key("k" * 64) == "k" * 64
    with pytest.raises(IdempotencyKeyTooLong):
        idempotency.check_key("k" * 65)


async def test_a_full_store_refuses_writes_as_store_full_and_recovers_by_sweeping(
    tmp_path: Path,
) -> None:
    """The map fills with replies; new nonces and claims get StoreFull (never a raw LMDB
    error), the sweep still has room to delete, and then writes work again."""
    body = b"x" * 3000
    async with GatewayStore(tmp_path / "gw", map_size=256 * 1024, quota=10_000) as store:
        stored = 0
        with pytest.raises(StoreFull):
            for i in range(1000):
                skey = idempotency.store_key("p", f"k{i}")
                await store.claim(skey, FP, now_ms=1_000, ttl_ms=TTL, claim_ms=30_000)
                await store.complete(skey, FP, status=200, body=body, now_ms=1_000, ttl_ms=TTL)
                stored += 1
        assert stored > 10
        with pytest.raises(StoreFull):
            await store.remember_nonce(b"k" * 32, b"n" * 16, expires_ms=5_000, now_ms=1_000)
        assert await store.sweep(2_000 + TTL, reply_ttl_ms=TTL) >= stored
        await store.remember_nonce(b"k" * 32, b"n" * 16, expires_ms=9_000 + TTL, now_ms=3_000 + TTL)
        again = 0
        with pytest.raises(StoreFull):
            for i in range(1000):  # about as many as before fit again
                skey = idempotency.store_key("p", f"again{i}")
                await store.claim(skey, FP, now_ms=3_000 + TTL, ttl_ms=TTL, claim_ms=30_000)
                await store.complete(
                    skey, FP, status=200, body=body, now_ms=3_000 + TTL, ttl_ms=TTL
                )
                again += 1
        assert again >= stored - 2, (again, stored)


async def test_the_sweeper_survives_any_exception(tmp_path: Path) -> None:
    calls: list[int] = []

    async def flaky_sweep(now_ms: int, *, reply_ttl_ms: int) -> int:
        calls.append(now_ms)
        if len(calls) <= 2:
            raise (RuntimeError if len(calls) == 1 else OSError)("disk on fire")
        return 0

    async with Gateway(config(tmp_path, sweep_interval_s=0.01)) as gw:
        gw.store.sweep = flaky_sweep  # type: ignore[method-assign]
        await eventually(lambda: len(calls) >= 4, 10, "sweeps after two failures")
        assert [t.get_name() for t in gw._loops._tasks] == ["gateway-sweeper"], "still running"


async def test_a_request_at_the_edge_of_the_window_is_accepted_only_once(
    tmp_path: Path,
) -> None:
    """ts + skew is the last accepted instant; the nonce must still be known then."""
    now = [1_000_000_000]
    skew_ms = 300_000
    me = Identity.generate()
    async with Gateway(config(tmp_path), clock_ms=lambda: now[0]) as gw:

        async def auth(header: str) -> str:
            caller = await gw.authenticate(
                method="GET", path="/v1/me", body=b"", authorization=header
            )
            return caller.principal

        ts = now[0]
        for offset in (-skew_ms, skew_ms):  # first used at either edge of its window
            header = me.authorization("GET", "/v1/me", b"", ts_ms=ts)
            now[0] = ts + offset
            assert await auth(header) == me.principal
            for replay_at in (offset, skew_ms - 1, skew_ms, skew_ms + 1):
                now[0] = ts + replay_at
                with pytest.raises((NonceReused, StaleTimestamp)):
                    await auth(header)
        assert signing.last_accepted_ms(ts, skew_ms) == ts + skew_ms
