"""What the gateway does for each route, apart from HTTP: auth, routing, caching, idempotency.

:class:`Gateway` owns one worker's resources: the shared LMDB
(:class:`~gateway.store.GatewayStore`), the gRPC side
(:class:`~gateway.upstream.Upstream`), the content caches and a sweeper task
that forgets expired nonces and replies. Its methods take validated input
and return JSON bytes (or raise domain errors); :mod:`gateway.app` turns
those into HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from gateway import idempotency, metrics, signing, views
from gateway.caches import CachedBody, TtlCache, body_etag
from gateway.config import GatewayConfig
from gateway.errors import MissingAuthorization, RateLimited
from gateway.ratelimit import TokenBuckets
from gateway.store import GatewayStore
from gateway.upstream import Route, Upstream
from protos import registry_pb2, shard_pb2
from runtime import logs
from runtime.errors import CanistryError, Unavailable
from runtime.lifecycle import BackgroundTasks, Lifecycle

__all__ = ["Caller", "Gateway", "Reply", "wall_clock_ms"]

log = logs.get_logger(__name__)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Caller:
    """Who signed the request."""

    principal: str
    public_key: bytes


@dataclass(frozen=True)
class Reply:
    """A status and a JSON body, as sent (and as an idempotent replay sends it again)."""

    status: int
    body: bytes


class Gateway(Lifecycle):
    """One worker's gateway. ``async with Gateway(config) as gw:``; ``stop()`` is idempotent."""

    def __init__(
        self, config: GatewayConfig, *, clock_ms: Callable[[], int] = wall_clock_ms
    ) -> None:
        self.config = config
        self._clock_ms = clock_ms
        self.store = GatewayStore(
            config.data_dir / "gateway.lmdb",
            map_size=config.store_map_bytes,
            quota=config.idempotency_quota,
        )
        self._upstream: Upstream | None = None
        self.units: TtlCache[str, CachedBody] = TtlCache(
            config.content_cache_ttl_s, config.content_cache_size
        )
        self.pages: TtlCache[tuple[str, str, int], CachedBody] = TtlCache(
            config.content_cache_ttl_s, config.content_cache_size
        )
        self._cluster: TtlCache[str, bytes] = TtlCache(config.cluster_cache_ttl_s, 1)
        # Bound here, in the worker: a cached read should not look its counter up each time.
        self._unit_hits = metrics.CACHE.labels("unit", "hit")
        # In this worker's memory only: see gateway.ratelimit.
        self.registrations = TokenBuckets(
            config.register_rate, config.register_burst, max_clients=config.rate_limit_clients
        )
        self._loops = BackgroundTasks()
        self._started = False
        self._stopped = False

    @property
    def upstream(self) -> Upstream:
        if self._upstream is None:
            raise RuntimeError("gateway not started")
        return self._upstream

    async def start(self) -> None:
        """Open the store and the channels, start the sweeper; a failure closes what opened."""
        self._started = True
        try:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            await self.store.start()
            self._upstream = Upstream(self.config)
            self._loops.spawn(self._sweep_forever(), name="gateway-sweeper")
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._stopped or not self._started:
            return
        self._stopped = True
        await self._loops.stop()
        if self._upstream is not None:
            await self._upstream.close()
        await self.store.stop()

    async def _sweep_forever(self) -> None:
        """Sweep every ``sweep_interval_s`` until cancelled; a failed sweep is logged, and
        the next one tries again (a sweeper that died would leave the store to fill)."""
        while True:
            await asyncio.sleep(self.config.sweep_interval_s)
            try:
                gone = await self.store.sweep(
                    self._clock_ms(), reply_ttl_ms=int(self.config.idempotency_ttl_s * 1000)
                )
                if gone:
                    log.info("gateway_swept", entries=gone)
            except Exception:
                log.exception("gateway_sweep_failed")

    # -- auth -------------------------------------------------------------------

    async def authenticate(
        self, *, method: str, path: str, body: bytes, authorization: str | None
    ) -> Caller:
        """Verify a signed request (docs/design.md §5) and spend its nonce.

        Raises a :class:`~gateway.errors.Unauthenticated` subclass.
        """
        if authorization is None:
            raise MissingAuthorization(
                "sign the request: Authorization: Canistry key=…, ts=…, nonce=…, sig=…"
            )
        header = signing.parse_authorization(authorization)
        now = self._clock_ms()
        skew_ms = int(self.config.clock_skew_s * 1000)
        principal = signing.verify(
            header, method=method, path=path, body=body, now_ms=now, max_skew_ms=skew_ms
        )
        # A nonce kept past the last instant verify accepts its ts is known at every
        # instant its request could be replayed, in every worker.
        await self.store.remember_nonce(
            header.public_key,
            header.nonce_bytes,
            expires_ms=signing.last_accepted_ms(header.ts_ms, skew_ms) + 1,
            now_ms=now,
        )
        return Caller(principal, header.public_key)

    async def idempotent(
        self,
        caller: Caller,
        key: str | None,
        request: tuple[str, str, bytes],
        run: Callable[[], Awaitable[Reply]],
    ) -> Reply:
        """Run ``run`` once per (principal, ``key``); replay its 2xx reply for 24 h.

        ``request`` is (method, path, body): a replay must match it, or it
        gets :class:`~runtime.errors.IdempotencyKeyReused`.
        """
        if key is None:
            return await run()
        skey = idempotency.store_key(caller.principal, idempotency.check_key(key))
        fp = idempotency.fingerprint(*request)
        ttl_ms = int(self.config.idempotency_ttl_s * 1000)
        stored = await self.store.claim(
            skey,
            fp,
            now_ms=self._clock_ms(),
            ttl_ms=ttl_ms,
            claim_ms=int(self.config.idempotency_claim_s * 1000),
        )
        if stored is not None:
            return Reply(stored.status, stored.body)
        try:
            reply = await run()
            await self.store.complete(
                skey,
                fp,
                status=reply.status,
                body=reply.body,
                now_ms=self._clock_ms(),
                ttl_ms=ttl_ms,
            )
        except BaseException:
            # The claim must not block a retry for claim_s; a release that fails too (a
            # full store) leaves it to expire, and the first error is the one to report.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release(skey, fp))
            raise
        return reply

    # -- users ------------------------------------------------------------------

    def admit_registration(self, client_address: str) -> None:
        """Spend a token of ``client_address``'s registration bucket.

        Raises :class:`RateLimited` (429, with ``Retry-After``) when it is empty.
        """
        wait_s = self.registrations.take(client_address)
        if wait_s > 0:
            raise RateLimited(
                f"at most {self.config.register_burst} registrations at once and "
                f"{self.config.register_rate:g} a second from one address",
                self.registrations.retry_after_s(wait_s),
            )

    async def register(self, principal: str, profile: Mapping[str, str]) -> Reply:
        """Assign a shard (idempotent), create the user there (idempotent); 201 new, 200 known."""
        route, _ = await self.upstream.assign(principal)
        request = shard_pb2.CreateUserRequest(
            principal=principal, profile=shard_pb2.Profile(**profile)
        )
        reply, route = await self.upstream.on_shard(
            principal,
            lambda stub: stub.CreateUser(request, timeout=self.config.rpc_deadline_s),
            route=route,
        )
        status = 201 if reply.created else 200
        return Reply(status, views.dumps(views.registration_view(principal, route.shard_id, reply)))

    async def me(self, principal: str) -> bytes:
        reply, route = await self.upstream.on_shard(
            principal,
            lambda stub: stub.GetUser(
                shard_pb2.GetUserRequest(principal=principal), timeout=self.config.rpc_deadline_s
            ),
        )
        return views.dumps(views.me_view(principal, route.shard_id, reply))

    async def update_profile(self, principal: str, fields: Mapping[str, str]) -> Reply:
        request = shard_pb2.UpdateProfileRequest(
            principal=principal, profile=shard_pb2.Profile(**fields), fields=sorted(fields)
        )
        reply, route = await self.upstream.on_shard(
            principal,
            lambda stub: stub.UpdateProfile(request, timeout=self.config.rpc_deadline_s),
        )
        return Reply(200, views.dumps(views.me_view(principal, route.shard_id, reply)))

    async def balance(self, principal: str) -> bytes:
        reply, _ = await self.upstream.on_shard(
            principal,
            lambda stub: stub.GetBalance(
                shard_pb2.GetBalanceRequest(principal=principal), timeout=self.config.rpc_deadline_s
            ),
        )
        return views.dumps(views.balance_view(reply.staked, reply.pending))

    async def submit(
        self, principal: str, unit_id: str, answers: Mapping[str, str], key: str | None
    ) -> bytes:
        """Submit answers through the user's shard. The shard replays a known (principal, key)."""
        request = shard_pb2.SubmitQuizRequest(
            principal=principal,
            unit_id=unit_id,
            answers=dict(answers),
            idempotency_key=idempotency.check_key(key) if key is not None else "",
        )
        reply = await self.upstream.submit(principal, request, retry_unreachable=key is not None)
        return views.submission_body(reply)

    # -- content ----------------------------------------------------------------

    def cached_unit(self, unit_id: str) -> CachedBody | None:
        """The unit's cached body if this worker holds a fresh one (a hit is counted)."""
        cached = self.units.get(unit_id)
        if cached is not None:
            self._unit_hits.inc()
        return cached

    async def unit(self, unit_id: str) -> CachedBody:
        cached = self.cached_unit(unit_id)
        if cached is not None:
            return cached
        metrics.CACHE.labels("unit", "miss").inc()
        unit = await self.upstream.get_unit(unit_id)
        # The digest covers the answer key too, so any change to the unit changes the ETag.
        entry = CachedBody(
            views.dumps(views.unit_view(unit)),
            f'"{unit.digest[:32]}-{unit.version}"',
            self.config.content_max_age_s,
        )
        self.units.put(unit_id, entry)
        return entry

    async def unit_page(self, subject: str, cursor: str, limit: int) -> CachedBody:
        key = (subject, cursor, limit)
        cached = self.pages.get(key)
        if cached is not None:
            metrics.CACHE.labels("units", "hit").inc()
            return cached
        metrics.CACHE.labels("units", "miss").inc()
        page = await self.upstream.list_units(subject, cursor, limit)
        body = views.dumps(views.unit_page_view(page))
        entry = CachedBody(body, body_etag(body), self.config.content_max_age_s)
        self.pages.put(key, entry)
        return entry

    # -- cluster ----------------------------------------------------------------

    async def cluster(self) -> bytes:
        cached = self._cluster.get("")
        if cached is not None:
            return cached
        directory, treasury, versions = await asyncio.gather(
            self.upstream.list_shards(), self.upstream.treasury(), self.upstream.shard_versions()
        )
        body = views.dumps(views.cluster_view(directory, treasury, versions))
        self._cluster.put("", body)
        return body

    async def readiness(self, timeout_s: float = 1.0) -> dict[str, str]:
        """Check registry, content and one active shard; raise Unavailable naming what failed."""
        checks: dict[str, str] = {}
        failed: list[str] = []

        async def probe(name: str, fn: Callable[[], Awaitable[str]]) -> None:
            try:
                checks[name] = await fn()
            except CanistryError as exc:
                checks[name] = exc.message
                failed.append(name)

        async def registry_and_shard() -> str:
            directory = await self.upstream.list_shards(timeout_s)
            active = [s for s in directory.shards if s.state == registry_pb2.SHARD_STATE_ACTIVE]
            await probe("shard", lambda: self._probe_shards(active, timeout_s))
            return f"ok ({len(directory.shards)} shards)"

        async def content() -> str:
            stats = await self.upstream.content_stats(timeout_s)
            return f"ok ({stats.unit_count} units)"

        await asyncio.gather(probe("registry", registry_and_shard), probe("content", content))
        if failed:
            raise Unavailable(
                "not ready: " + "; ".join(f"{n}: {checks[n]}" for n in sorted(failed))
            )
        return checks

    async def _probe_shards(self, active: list[registry_pb2.ShardInfo], timeout_s: float) -> str:
        if not active:
            raise Unavailable("no active shard")
        errors: list[str] = []
        for info in sorted(active, key=lambda s: -s.registration_seq):
            try:
                await self.upstream.shard_status(Route(info.shard_id, info.address), timeout_s)
                return f"ok ({info.shard_id})"
            except CanistryError as exc:
                errors.append(f"{info.shard_id}: {exc.message}")
        raise Unavailable("no active shard answers: " + "; ".join(errors))

    @property
    def worker(self) -> int:
        return os.getpid()
