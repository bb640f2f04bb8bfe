"""Every gRPC server and channel in Canistry is made here.

One place builds them so that transport policy (mutual TLS, deadlines,
request ids, error mapping) changes in one module. A :class:`Server` carries
the standard health and reflection services, the read-only ``Introspect``
counters, and an edge that maps :class:`~runtime.errors.CanistryError` to a
status code with the stable ``canistry-error`` trailer. Anything else a
handler raises is logged whole and answered ``INTERNAL`` with nothing leaked.

With a :class:`~runtime.tls.TLSConfig`, a server accepts only peers holding a
certificate of the cluster CA (mutual TLS) and the edge authorizes every call
by the peer's identity against the service's rules (``runtime.authz``);
:func:`make_channel` then presents this process's certificate and checks the
server's. Without one, both speak plain text: that is for in-process tests
and an explicit ``--insecure`` only.

One kind of listener asks for no client certificate (``client_auth=False``,
:func:`make_anonymous_channel` dials it): a bootstrap port for callers that
have none yet. It serves only bindings marked ``anonymous``, which authorize
each call by what it carries, and not even health or reflection.

Both ends share one :class:`Keepalive` policy, so a server never answers a
client's idle pings with ``GOAWAY too_many_pings`` (which failed calls in
flight). The edge authorizes a call before it decodes the request: the
handler is registered with no deserializer, so gRPC hands the edge raw
bytes, and only an authorized caller's bytes are parsed; bytes that do not
parse are ``INVALID_ARGUMENT "malformed request"`` with nothing internal in
it. A server may also name the shard it is (``shard_id``): then a call whose
``canistry-shard`` metadata names another shard is refused as
:class:`~runtime.errors.WrongShard`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos import introspect_pb2, introspect_pb2_grpc
from runtime import authz, logs
from runtime.errors import (
    ERROR_TRAILER,
    CanistryError,
    DeadlineExceeded,
    InvalidArgument,
    PeerUnreachable,
    Unavailable,
    WrongShard,
    answered,
    from_rpc_error,
)
from runtime.lifecycle import Lifecycle
from runtime.metrics import observe_rpc
from runtime.tls import Role, TLSConfig, server_host

__all__ = [
    "DEFAULT_DEADLINE_S",
    "KEEPALIVE",
    "SHARD_HEADER",
    "Context",
    "DirectStub",
    "Keepalive",
    "Server",
    "ServerConfig",
    "ServiceBinding",
    "make_anonymous_channel",
    "make_channel",
    "outgoing_metadata",
    "rpc_errors",
    "wait_healthy",
]

log = logs.get_logger(__name__)

#: What every servicer method receives as its second argument.
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

#: Deadline applied to any call that does not set its own.
DEFAULT_DEADLINE_S = 5.0

#: Metadata naming the shard a call is meant for (see :class:`Server`'s ``shard_id``).
SHARD_HEADER = "canistry-shard"

#: What a server tells a caller whose bytes are not the request message.
MALFORMED = "malformed request"


@dataclass(frozen=True)
class Keepalive:
    """The one keepalive policy both ends of every Canistry connection follow.

    A client pings each connection, idle or not, so that a dead peer is
    noticed before a call is made on it. A server must then accept pings at
    that rate: gRPC's default server policy allows one idle ping per five
    minutes and answers more with ``GOAWAY too_many_pings``, failing any call
    in flight on that connection.
    """

    ping_interval_ms: int = 30_000
    """How often a client pings a connection, with or without calls on it."""
    ping_timeout_ms: int = 10_000
    """How long a client waits for a ping's answer before dropping the connection."""

    def __post_init__(self) -> None:
        if self.ping_interval_ms < 10 or self.ping_timeout_ms < 10:
            raise ValueError("keepalive intervals must be >= 10 ms")

    def client_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.keepalive_time_ms", self.ping_interval_ms),
            ("grpc.keepalive_timeout_ms", self.ping_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            # 0: keep pinging an idle connection (the default stops after two).
            # gRPC then spaces a client's pings at least 1 s apart.
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def server_options(self) -> list[tuple[str, int]]:
        # Half the client's interval: a ping that arrives a little early (timer
        # slack, a busy loop) must not count as a strike.
        floor = self.ping_interval_ms // 2
        return [
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", floor),
            ("grpc.http2.min_ping_interval_without_data_ms", floor),
            ("grpc.http2.max_pings_without_data", 0),
        ]


#: The policy every server and channel uses unless a test shortens it.
KEEPALIVE = Keepalive()

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    # A peer that restarts must be reachable again within a second or two, not
    # after gRPC's default reconnect backoff (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    # A peer replaced under the same name (a swarm task healed or upgraded, a pod
    # rescheduled) comes back at a new address: look the name up again after a
    # second, not after gRPC's default 30 s of dialling the old one.
    ("grpc.dns_min_time_between_resolutions_ms", 1000),
]


@dataclass(frozen=True)
class ServerConfig:
    """Where and how a service listens."""

    host: str = "127.0.0.1"
    """Interface to bind; ``0.0.0.0`` inside containers."""
    port: int = 0
    """TCP port; 0 lets the OS pick one (read it from :attr:`Server.address`)."""
    grace_s: float = 5.0
    """How long in-flight calls may finish once a stop starts."""
    tls: TLSConfig | None = None
    """This process's cluster certificate: serve mutual TLS and authorize each call
    by the caller's identity. None serves plain text and checks nobody (tests only).
    The service dials its peers with the same certificate."""
    keepalive: Keepalive = KEEPALIVE
    """The pings this server accepts; the channels dialling it must use the same."""
    max_receive_bytes: int = 64 * 1024 * 1024
    """Largest request accepted; a bigger one is refused ``RESOURCE_EXHAUSTED`` unread."""
    reuse_port: bool = False
    """Bind with SO_REUSEPORT, so that replicas of one service share one port and the
    kernel spreads connections over them (content replicas). Off: a second process
    binding the port fails, as it should for a service that must be alone."""
    client_auth: bool = True
    """With ``tls``: every caller presents a cluster certificate and each call is
    authorized by it. False: server-only TLS, for a bootstrap listener whose callers
    have no certificate yet (the hub's enrollment port). There is then no identity
    to check, so such a server serves only ``anonymous`` bindings, which authorize
    each call by what it carries, and none of the built-in services."""

    def __post_init__(self) -> None:
        if not self.client_auth and self.tls is None:
            raise ValueError("client_auth=False is server-only TLS: it needs tls")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        if self.grace_s < 0:
            raise ValueError("grace_s must be >= 0")
        if self.max_receive_bytes < 1024:
            raise ValueError("max_receive_bytes must be >= 1024")


@dataclass(frozen=True)
class ServiceBinding:
    """One servicer to serve: its full service name and how to add it."""

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]
    access: authz.Rules | None = None
    """Who may call each RPC; required when the server runs TLS (see ``runtime.authz``)."""
    anonymous: bool = False
    """Served to callers without a certificate, and only on a server with
    ``client_auth=False``; its handlers authorize each call themselves."""


class _Edge(grpc.aio.ServerInterceptor):
    """Authorizes, checks the target shard, decodes, binds the request id, counts
    calls, and maps errors for every unary RPC.

    ``access`` (full method -> roles) is None without TLS: then nobody is checked.
    ``shard_id`` is the shard this server is, if it is one.

    The handler is re-registered without a request deserializer, so gRPC
    passes raw bytes and the edge decodes them only after the caller is
    authorized: an unauthorized peer's bytes are never parsed. (The caller's
    identity is not known in ``intercept_service``, which sees only the
    method and metadata, so authorization cannot happen any earlier; gRPC
    has then read the message, within ``max_receive_bytes``, but not
    parsed it.)
    """

    def __init__(
        self,
        service: str,
        counts: collections.Counter[str],
        access: dict[str, frozenset[Role]] | None = None,
        shard_id: str | None = None,
    ) -> None:
        self._service = service
        self._counts = counts
        self._access = access
        self._shard_id = shard_id

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        method: str = details.method
        allowed = None if self._access is None else self._access.get(method, frozenset())
        if handler is None or handler.unary_unary is None:
            # Streams (health Watch, reflection) are open to any cluster peer:
            # the handshake checked it. compile_rules allows nothing narrower.
            return handler if allowed is None or allowed == authz.ANY else None
        inner = handler.unary_unary
        decode = handler.request_deserializer
        counts = self._counts
        shard_id = self._shard_id
        service = self._service

        async def wrapped(raw: Any, context: Context) -> Any:
            started = time.perf_counter()
            outcome = "ok"
            metadata = dict(context.invocation_metadata() or ())
            token = logs.bind_request_id(
                str(metadata.get(logs.REQUEST_ID_HEADER) or logs.new_request_id())
            )
            counts[method] += 1
            try:
                if allowed is not None:
                    _authorize(method, allowed, context)
                if shard_id is not None:
                    _check_target(shard_id, metadata.get(SHARD_HEADER))
                request = _decode(decode, raw)
                return await inner(request, context)  # type: ignore[arg-type]
            except CanistryError as exc:
                outcome = exc.code
                log.info("rpc_error", method=method, code=exc.code, detail=exc.message)
                context.set_trailing_metadata(((ERROR_TRAILER, exc.code),))
                await context.abort(exc.status, exc.message)
            except asyncio.CancelledError:
                outcome = "cancelled"
                raise
            except grpc.aio.AbortError:
                raise
            except NotImplementedError:
                # A generated base method nobody overrode (grpc's aio health
                # servicer has no List): the client's mistake, not our bug.
                outcome = "unimplemented"
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
            except Exception:
                outcome = "internal"
                log.exception("rpc_internal_error", method=method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                logs.reset_request_id(token)
                observe_rpc(service, method, outcome, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )


def _decode(decode: Callable[[bytes], Any] | None, raw: Any) -> Any:
    """The request message parsed from ``raw``. Raises InvalidArgument, naming nothing internal."""
    if decode is None:
        return raw
    try:
        return decode(raw)
    except Exception as exc:
        # DecodeError, or RuntimeWarning-like errors from the C parser: the
        # class and text describe our internals, so they go to the log only.
        log.info("rpc_malformed", error=type(exc).__name__, size=len(raw or b""))
        raise InvalidArgument(MALFORMED) from None


def _check_target(shard_id: str, target: str | bytes | None) -> None:
    """Refuse a call that names a shard other than ``shard_id``. Raises WrongShard."""
    if target is None:
        return
    name = target.decode(errors="replace") if isinstance(target, bytes) else target
    if name != shard_id:
        raise WrongShard(f"this is shard {shard_id}, not {name}")


def _authorize(method: str, allowed: frozenset[Role], context: Context) -> None:
    who = authz.caller(context)
    if who is None or who.role not in allowed:
        log.warning("rpc_denied", method=method, caller=str(who))
        raise authz.NotAuthorized(f"{who or 'this caller'} may not call {method}")


class _Introspect(introspect_pb2_grpc.IntrospectServicer):
    def __init__(self, service: str, counts: collections.Counter[str]) -> None:
        self._service = service
        self._counts = counts

    async def GetRpcCounts(
        self, request: introspect_pb2.GetRpcCountsRequest, context: Context
    ) -> introspect_pb2.RpcCounts:
        return introspect_pb2.RpcCounts(service=self._service, calls=dict(self._counts))


class Server(Lifecycle):
    """A gRPC server with health, reflection and the Canistry edge.

    ``shard_id`` names the user shard this server is. Every call the gateway
    sends a shard names the shard it means in ``canistry-shard`` metadata
    (the route it took says which), and the edge refuses one that names
    another shard with :class:`~runtime.errors.WrongShard` before decoding
    it; the gateway then refreshes its route and retries. So a stale route
    to an address that a new shard now listens on can never act on the
    wrong shard. (The alternative, a certificate per shard checked in the
    handshake, would turn a stale route into a handshake failure that looks
    like an unreachable peer, and a retry policy that must not retry
    non-idempotent writes on unreachable peers could not recover it.) A
    call without the metadata (operators, the hub, tests) is not checked.

    ``start()`` binds and reports SERVING; :attr:`address` is valid after it.
    ``stop()`` is idempotent: it reports NOT_SERVING, lets in-flight calls
    finish within ``grace_s``, then closes.
    """

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        bindings: Sequence[ServiceBinding],
        *,
        shard_id: str | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.shard_id = shard_id
        self.rpc_counts: collections.Counter[str] = collections.Counter()
        self._server = grpc.aio.server(
            interceptors=[_Edge(name, self.rpc_counts, _access(config, bindings), shard_id)],
            options=[
                ("grpc.so_reuseport", int(config.reuse_port)),
                ("grpc.max_receive_message_length", config.max_receive_bytes),
                *config.keepalive.server_options(),
            ],
        )
        self._health = health.aio.HealthServicer()
        self._names = [b.full_name for b in bindings]
        for binding in bindings:
            binding.add_to_server(self._server)
        if config.client_auth:  # an anonymous listener serves its bindings and nothing else
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
            introspect_pb2_grpc.add_IntrospectServicer_to_server(
                _Introspect(name, self.rpc_counts), self._server
            )
            reflection.enable_server_reflection(
                [
                    *self._names,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    introspect_pb2.DESCRIPTOR.services_by_name["Introspect"].full_name,
                    reflection.SERVICE_NAME,
                ],
                self._server,
            )
        self._port: int | None = None
        self._stopped = False

    @property
    def address(self) -> str:
        if self._port is None:
            raise RuntimeError("server not started")
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"{host}:{self._port}"

    async def start(self) -> None:
        where = f"{self.config.host}:{self.config.port}"
        if self.config.tls is None:
            self._port = self._server.add_insecure_port(where)
        else:
            m = self.config.tls.read()
            auth = self.config.client_auth
            creds = grpc.ssl_server_credentials(
                [(m.key, m.cert)],
                root_certificates=m.ca_cert if auth else None,
                require_client_auth=auth,
            )
            self._port = self._server.add_secure_port(where, creds)
        if self._port == 0:
            raise Unavailable(f"{self.name}: cannot bind {self.config.host}:{self.config.port}")
        await self._server.start()
        for name in ("", *self._names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "server_started",
            server=self.name,
            address=self.address,
            tls=self.config.tls is not None,
        )

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._health.enter_graceful_shutdown()
        await self._server.stop(self.config.grace_s)
        log.info("server_stopped", server=self.name)

    async def wait_for_termination(self) -> None:
        await self._server.wait_for_termination()


_BUILTIN_SERVICES = (
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    introspect_pb2.DESCRIPTOR.services_by_name["Introspect"].full_name,
    reflection.SERVICE_NAME,
)


def _access(
    config: ServerConfig, bindings: Sequence[ServiceBinding]
) -> dict[str, frozenset[Role]] | None:
    """The compiled rules of a TLS server (None without TLS, or without client
    certificates). Raises ValueError if incomplete, or if a binding is served to
    anonymous callers on a server that checks certificates or the other way round."""
    if config.tls is None:
        return None
    anonymous = [b.full_name for b in bindings if b.anonymous]
    if not config.client_auth:
        if not bindings or len(anonymous) != len(bindings):
            raise ValueError("a server without client certificates serves anonymous bindings only")
        return None  # no caller has an identity here: each handler authorizes the call
    if anonymous:
        raise ValueError(f"{anonymous}: an anonymous binding needs a server with client_auth=False")
    services: list[tuple[str, authz.Rules]] = []
    for name in _BUILTIN_SERVICES:
        methods = descriptor_pool.Default().FindServiceByName(name).methods
        services.append((name, {m.name: authz.ANY for m in methods}))
    for binding in bindings:
        if binding.access is None:
            raise ValueError(f"{binding.full_name}: a TLS server needs access rules for it")
        services.append((binding.full_name, binding.access))
    return authz.compile_rules(services)


class _ClientEdge(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the current request id, a default deadline and the target shard to every call."""

    def __init__(self, shard_id: str | None = None) -> None:
        self._shard_id = shard_id

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        metadata = outgoing_metadata(self._shard_id, details.metadata or ())
        new_details = grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout if details.timeout is not None else DEFAULT_DEADLINE_S,
            metadata=grpc.aio.Metadata(*metadata),
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )
        return await continuation(new_details, request)


def outgoing_metadata(
    shard_id: str | None, metadata: Iterable[tuple[str, Any]] = ()
) -> list[tuple[str, Any]]:
    """``metadata`` and what every call adds: the current request id, the target shard."""
    out = list(metadata)
    rid = logs.current_request_id()
    if rid is not None:
        out.append((logs.REQUEST_ID_HEADER, rid))
    if shard_id is not None:
        out.append((SHARD_HEADER, shard_id))
    return out


class DirectStub:
    """A generated stub over a channel made with ``intercept=False``, whose calls carry
    what :func:`make_channel`'s interceptor would add: :func:`outgoing_metadata` and
    the default deadline.

    An interceptor costs each call a task and a pass through grpc's
    interceptor chain; a hot path (the gateway's shard calls) saves both.
    Use it as the stub it wraps: ``DirectStub(FooStub(channel), shard_id).Bar(request,
    timeout=1.0)``.
    """

    def __init__(self, stub: object, shard_id: str | None = None) -> None:
        self._stub = stub
        self._shard_id = shard_id

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        shard_id = self._shard_id

        def call(
            request: Any,
            *,
            timeout: float | None = None,
            metadata: Iterable[tuple[str, Any]] = (),
            **kwargs: Any,
        ) -> Any:
            return method(
                request,
                timeout=DEFAULT_DEADLINE_S if timeout is None else timeout,
                metadata=outgoing_metadata(shard_id, metadata),
                **kwargs,
            )

        self.__dict__[name] = call  # bound once per method
        return call


def make_channel(
    address: str,
    tls: TLSConfig | None = None,
    *,
    server_role: Role | str | None = None,
    shard_id: str | None = None,
    keepalive: Keepalive = KEEPALIVE,
    intercept: bool = True,
) -> grpc.aio.Channel:
    """A long-lived channel to ``address`` with request-id propagation and default deadlines.

    With ``tls`` the channel is mutual TLS: it presents ``tls``'s certificate
    and accepts only a server certified by the same cluster CA, and, if
    ``server_role`` is given, only one of that role (a shard dialling the hub
    talks to a hub, whatever listens at the address). Without ``tls`` it is
    plain text, which a cluster server refuses. ``shard_id`` names the shard
    every call on the channel is meant for (see :class:`Server`), and
    ``keepalive`` must match the server's. With ``intercept=False`` the
    channel adds nothing to calls, and its stubs must be wrapped in
    :class:`DirectStub` (made with the same ``shard_id``), which does. Raises
    ``TLSError`` if the files cannot be read.
    """
    options: list[tuple[str, Any]] = [*_CHANNEL_OPTIONS, *keepalive.client_options()]
    interceptors = [_ClientEdge(shard_id)] if intercept else []
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    m = tls.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=m.ca_cert, private_key=m.key, certificate_chain=m.cert
    )
    options.append(("grpc.ssl_target_name_override", server_host(server_role)))
    return grpc.aio.secure_channel(address, creds, options=options, interceptors=interceptors)


def make_anonymous_channel(
    address: str,
    ca_cert: bytes,
    *,
    server_role: Role | str,
    keepalive: Keepalive = KEEPALIVE,
) -> grpc.aio.Channel:
    """A channel with server-only TLS, for a caller that holds no certificate yet.

    It accepts only a server certified by ``ca_cert`` (PEM) for
    ``server_role``, and presents nothing: only a server with
    ``client_auth=False`` answers it (a shard enrolling at the hub).
    """
    options: list[tuple[str, Any]] = [*_CHANNEL_OPTIONS, *keepalive.client_options()]
    options.append(("grpc.ssl_target_name_override", server_host(server_role)))
    creds = grpc.ssl_channel_credentials(root_certificates=ca_cert)
    return grpc.aio.secure_channel(address, creds, options=options, interceptors=[_ClientEdge()])


@contextlib.asynccontextmanager
async def rpc_errors(peer: str) -> AsyncIterator[None]:
    """Translate failed calls inside the block into domain errors.

    This is the one place that decides whether a peer could be reached. A
    status the peer raised on purpose (it carries the ``canistry-error``
    trailer) comes back as its own class; ``UNAVAILABLE`` without the
    trailer means the call never reached a handler (refused, reset, dropped,
    a server shutting down) and becomes :class:`PeerUnreachable` naming
    ``peer``. A peer that reports *its* peer unreachable answered, so that
    arrives as plain :class:`Unavailable`: only the hop that failed to
    connect sees :class:`PeerUnreachable`.
    """
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAVAILABLE and not _has_trailer(exc):
            raise PeerUnreachable(f"{peer} is unavailable") from exc
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise DeadlineExceeded(f"{peer} did not answer in time") from exc
        if exc.code() == grpc.StatusCode.CANCELLED and not _has_trailer(exc):
            # The server cancelled it while shutting down (a drain, a restart): it may
            # have run, so not PeerUnreachable, but worth another try, not a 500.
            raise Unavailable(f"{peer} is restarting; try again") from exc
        raise answered(from_rpc_error(exc)) from exc


def _has_trailer(exc: grpc.aio.AioRpcError) -> bool:
    return any(k == ERROR_TRAILER for k, _ in (exc.trailing_metadata() or ()))


async def wait_healthy(
    address: str,
    *,
    timeout_s: float = 10.0,
    service: str = "",
    tls: TLSConfig | None = None,
    server_role: Role | str | None = None,
) -> None:
    """Poll the standard health service until it says SERVING.

    ``tls`` and ``server_role`` are as for :func:`make_channel`. Raises
    :class:`Unavailable` if it does not within ``timeout_s``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with make_channel(address, tls, server_role=server_role) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        delay = 0.02
        while True:
            try:
                reply = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1.0
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() >= deadline:
                raise Unavailable(f"{address} not healthy after {timeout_s:.1f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
