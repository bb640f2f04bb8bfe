"""The gateway's gRPC side: stubs with deadlines, and routing users to their shards.

A principal's shard comes from the registry once and is then cached
(:class:`~gateway.caches.TtlCache`), so a cache hit costs no registry call.
If a shard answers "not mine" (``UnknownUser``/``WrongShard``) to a cached
route, or cannot be reached at all, the route is refreshed once and the call
retried. Every call carries an explicit deadline, and failures arrive as
domain errors via :func:`runtime.rpc.rpc_errors`.

Every shard call names the shard its route names (``canistry-shard``
metadata, see :class:`runtime.rpc.Server`), so a stale route to an address
that another shard now holds is refused ``WrongShard`` and refreshed, never
served by the wrong shard. Idempotent reads (registry ``Lookup`` and
``ListShards``, content ``GetUnit``, ``ListUnits`` and stats, hub
``GetTreasury``, shard status) are sent once more when the peer could not
be reached (:class:`~runtime.errors.PeerUnreachable`: a dropped connection,
a peer restarting), within what is left of the first attempt's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from gateway import metrics
from gateway.caches import TtlCache
from gateway.channels import ChannelPool, shard_stub
from gateway.config import GatewayConfig
from gateway.errors import NotRegistered
from gateway.submissions import ShardSubmissions
from protos import (
    content_pb2,
    content_pb2_grpc,
    hub_pb2,
    hub_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    shard_pb2,
    shard_pb2_grpc,
)
from runtime import logs
from runtime.errors import (
    CanistryError,
    PeerUnreachable,
    Unavailable,
    UnknownUser,
    WrongShard,
)
from runtime.rpc import rpc_errors
from runtime.tls import Role

__all__ = ["Route", "Upstream", "unreachable"]

T = TypeVar("T")
if TYPE_CHECKING:
    ShardCall = Callable[[shard_pb2_grpc.UserShardAsyncStub], Awaitable[T]]

log = logs.get_logger(__name__)

#: How long an idempotent read waits before it is sent again to a peer it could not reach.
RETRY_PAUSE_S = 0.05


@dataclass(frozen=True)
class Route:
    shard_id: str
    address: str


def unreachable(exc: CanistryError) -> bool:
    """Whether ``exc`` means the peer could not be reached (not a reason the peer gave)."""
    return isinstance(exc, PeerUnreachable)


class Upstream:
    """Stubs for registry, content and hub, shard stubs by address, and the route cache."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.channels = ChannelPool(config.tls)
        self.registry: registry_pb2_grpc.RegistryAsyncStub = registry_pb2_grpc.RegistryStub(
            self.channels.get(config.registry_address, Role.REGISTRY)
        )
        self.content: content_pb2_grpc.ContentAsyncStub = content_pb2_grpc.ContentStub(
            self.channels.get(config.content_address, Role.CONTENT)
        )
        self.hub: hub_pb2_grpc.HubAsyncStub = hub_pb2_grpc.HubStub(
            self.channels.get(config.hub_address, Role.HUB)
        )
        self.routes: TtlCache[str, Route] = TtlCache(
            config.route_cache_ttl_s, config.route_cache_size
        )
        self._deadline = config.rpc_deadline_s
        self._shard_stubs: dict[Route, shard_pb2_grpc.UserShardAsyncStub] = {}
        self._submissions: dict[Route, ShardSubmissions] = {}

    async def close(self) -> None:
        submissions, self._submissions = list(self._submissions.values()), {}
        for s in submissions:
            await s.close()
        self._shard_stubs.clear()
        await self.channels.close()

    def shard(self, route: Route) -> shard_pb2_grpc.UserShardAsyncStub:
        """A stub whose every call is meant for ``route``'s shard (refused by any other).

        Stubs are kept per route: building one binds a callable per RPC, a cost
        that every submission paid when it was built per call.
        """
        stub = self._shard_stubs.get(route)
        if stub is None:
            channel = self.channels.get(route.address, Role.SHARD, route.shard_id)
            stub = self._shard_stubs[route] = shard_stub(channel, route.shard_id)
        return stub

    def submissions(self, route: Route) -> ShardSubmissions:
        """Submissions to ``route``'s shard, merged into batched calls (one per route)."""
        found = self._submissions.get(route)
        if found is None:
            found = self._submissions[route] = ShardSubmissions(
                self.shard(route), route.shard_id, deadline_s=self.config.submit_deadline_s
            )
        return found

    async def _read(
        self, peer: str, call: Callable[[float], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        """``call(timeout)``, an idempotent read, sent once more if ``peer`` was unreachable.

        The retry gets what is left of the first deadline, not a new one, and
        waits :data:`RETRY_PAUSE_S` first: sent at once, it could go out on the
        connection that just failed, before gRPC has seen it close ("stream
        removed"). Raises what ``rpc_errors`` raises.
        """
        loop = asyncio.get_running_loop()
        budget = timeout_s or self._deadline
        deadline = loop.time() + budget
        try:
            async with _peer(peer):
                return await call(budget)
        except PeerUnreachable:
            if deadline - loop.time() <= RETRY_PAUSE_S:
                raise
            log.info("upstream_retry", peer=peer, left_s=round(deadline - loop.time(), 3))
        await asyncio.sleep(RETRY_PAUSE_S)
        async with _peer(peer):
            return await call(deadline - loop.time())

    # -- registry ---------------------------------------------------------------

    async def assign(self, principal: str) -> tuple[Route, registry_pb2.Assignment]:
        """The principal's shard, assigned if new (idempotent). Raises NoCapacity."""
        async with _peer("registry"):
            a = await self.registry.Assign(
                registry_pb2.AssignRequest(principal=principal), timeout=self._deadline
            )
        route = Route(a.shard_id, a.address)
        self.routes.put(principal, route)
        return route, a

    async def lookup(self, principal: str, *, fresh: bool = False) -> tuple[Route, bool]:
        """``(route, from_cache)``. Raises :class:`NotRegistered` if the registry has none."""
        if not fresh:
            cached = self.routes.get(principal)
            if cached is not None:
                metrics.CACHE.labels("route", "hit").inc()
                return cached, True
        metrics.CACHE.labels("route", "miss").inc()
        request = registry_pb2.LookupRequest(principal=principal)
        try:
            a = await self._read("registry", lambda t: self.registry.Lookup(request, timeout=t))
        except UnknownUser as exc:
            raise _not_registered(principal, exc) from None
        route = Route(a.shard_id, a.address)
        self.routes.put(principal, route)
        return route, False

    async def on_shard(
        self,
        principal: str,
        call: ShardCall[T],
        *,
        route: Route | None = None,
        retry_unreachable: bool = True,
    ) -> tuple[T, Route]:
        """Run ``call`` on the principal's shard; return its reply and the route used.

        The route is refreshed and the call retried once when the shard says
        "not mine" to a cached route, or cannot be reached. ``retry_unreachable``
        is False for calls that must not run twice (a submission without an
        idempotency key): a shard that dropped the connection may have done
        the work. Raises :class:`NotRegistered` when the shard does not know
        the principal even after a refresh.
        """
        return await self.on_route(
            principal,
            lambda r: call(self.shard(r)),
            route=route,
            retry_unreachable=retry_unreachable,
        )

    async def submit(
        self, principal: str, request: shard_pb2.SubmitQuizRequest, *, retry_unreachable: bool
    ) -> shard_pb2.SubmitQuizReply:
        """``request`` on the principal's shard, in a batch with others bound there
        (:mod:`gateway.submissions`); the rules of :meth:`on_shard`."""
        reply, _ = await self.on_route(
            principal,
            lambda route: self.submissions(route).submit(request),
            retry_unreachable=retry_unreachable,
        )
        return reply

    async def on_route(
        self,
        principal: str,
        call: Callable[[Route], Awaitable[T]],
        *,
        route: Route | None = None,
        retry_unreachable: bool = True,
    ) -> tuple[T, Route]:
        """:meth:`on_shard` with ``call`` given the route, not its stub."""
        from_cache = False
        if route is None:
            route, from_cache = await self.lookup(principal)
        try:
            async with _peer(route.shard_id):
                return await call(route), route
        except (UnknownUser, WrongShard) as exc:
            if not from_cache:
                raise _not_registered(principal, exc) from None
            reason = exc.code
        except Unavailable as exc:
            if not (retry_unreachable and unreachable(exc)):
                raise
            reason = "unreachable"
        metrics.ROUTE_RETRIES.labels(reason).inc()
        log.info("route_refresh", principal=principal, shard_id=route.shard_id, reason=reason)
        self.routes.invalidate(principal)
        route, _ = await self.lookup(principal, fresh=True)
        try:
            async with _peer(route.shard_id):
                return await call(route), route
        except (UnknownUser, WrongShard) as exc:
            raise _not_registered(principal, exc) from None

    async def shard_status(self, route: Route, timeout_s: float) -> shard_pb2.ShardStatus:
        stub = self.shard(route)
        status: shard_pb2.ShardStatus = await self._read(
            route.shard_id,
            lambda t: stub.GetShardStatus(shard_pb2.GetShardStatusRequest(), timeout=t),
            timeout_s,
        )
        return status

    # -- content ----------------------------------------------------------------

    async def get_unit(self, unit_id: str) -> content_pb2.Unit:
        request = content_pb2.GetUnitRequest(unit_id=unit_id)
        unit: content_pb2.Unit = await self._read(
            "content service", lambda t: self.content.GetUnit(request, timeout=t)
        )
        return unit

    async def list_units(self, subject: str, cursor: str, limit: int) -> content_pb2.ListUnitsReply:
        request = content_pb2.ListUnitsRequest(subject=subject, cursor=cursor, limit=limit)
        page: content_pb2.ListUnitsReply = await self._read(
            "content service", lambda t: self.content.ListUnits(request, timeout=t)
        )
        return page

    async def content_stats(self, timeout_s: float) -> content_pb2.ContentStats:
        request = content_pb2.GetContentStatsRequest()
        stats: content_pb2.ContentStats = await self._read(
            "content service", lambda t: self.content.GetContentStats(request, timeout=t), timeout_s
        )
        return stats

    # -- cluster ----------------------------------------------------------------

    async def list_shards(self, timeout_s: float | None = None) -> registry_pb2.ShardDirectory:
        request = registry_pb2.ListShardsRequest()
        d: registry_pb2.ShardDirectory = await self._read(
            "registry", lambda t: self.registry.ListShards(request, timeout=t), timeout_s
        )
        return d

    async def treasury(self) -> hub_pb2.Treasury:
        request = hub_pb2.GetTreasuryRequest()
        treasury: hub_pb2.Treasury = await self._read(
            "hub", lambda t: self.hub.GetTreasury(request, timeout=t)
        )
        return treasury

    async def shard_versions(self) -> dict[str, str]:
        """The template version each hub-created shard runs (empty if the hub cannot say)."""
        request = hub_pb2.ListHubShardsRequest()
        try:
            shards: hub_pb2.HubShards = await self._read(
                "hub", lambda t: self.hub.ListHubShards(request, timeout=t)
            )
        except CanistryError:
            return {}
        return {r.shard_id: r.template_version for r in shards.shards}


def _not_registered(principal: str, exc: CanistryError) -> CanistryError:
    if isinstance(exc, UnknownUser):
        # Assigned but never created (a registration cut short), or never assigned.
        return NotRegistered(f"{principal} is not registered; POST /v1/users first")
    return exc


@contextlib.asynccontextmanager
async def _peer(peer: str) -> AsyncIterator[None]:
    """``rpc_errors(peer)`` that also counts failures by peer and code."""
    try:
        async with rpc_errors(peer):
            yield
    except CanistryError as exc:
        kind = peer if peer in ("registry", "hub", "content service") else "shard"
        metrics.UPSTREAM_ERRORS.labels(kind, exc.code).inc()
        raise
