"""``canistry up``: the whole cluster on this machine, in the foreground.

It makes the cluster CA and the certificates of every core service, the
gateway and the operator (once; later runs reuse them until they near their
end), starts content, registry and hub as child processes, waits until the
hub's minimum shards serve (the newest first; on a resume the hub brings the
rest back at a bounded rate meanwhile), starts the gateway, prints where
everything listens, then supervises: a core service that dies is restarted
with the hub's :class:`~hub.backoff.Backoff`. Waits go on while progress is
made and give up only after ``stall_timeout_s`` without any. The first
SIGINT, SIGTERM or SIGHUP (the terminal closed) stops everything, shards
included, in order (hub first, so it spawns nothing new); a second one kills
what is left at once. Running it again on
the same data directory resumes the same cluster: ports are kept in
``cluster.json`` because shards and the registry remember addresses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import fcntl
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from canistry.children import Child, ChildFailed, restart_exited, serve_argv
from canistry.layout import CERTIFIED, CORE_SERVICES, DEFAULT_DATA_DIR, ClusterLayout
from canistry.progress import Progress
from canistry.replicas import MAX_REPLICAS, default_content_replicas
from gateway.config import GatewayConfig, default_workers
from hub.config import MAX_WARM_POOL, HubSettings, kept_notes
from hub.spawner import stop_shards
from hub.store import stored_config
from protos import hub_pb2
from runtime import logs
from runtime.net import free_port, port_is_free
from runtime.tls import ClusterCA, Identity, Role, TLSConfig, TLSError

__all__ = ["UpConfig", "UpError", "run_up"]

#: The sample web app, served at /app/ when this is a checkout (docs/design.md §7).
WEB_APP = Path(__file__).resolve().parents[1] / "examples" / "web"


class UpError(RuntimeError):
    """Something the operator must fix before the cluster can start."""


@dataclass(frozen=True)
class UpConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    """Where all cluster state lives; running again here resumes it."""
    port: int = 8080
    """The HTTP gateway's port on 127.0.0.1; 0 picks a free one (kept for resumes)."""
    gateway_workers: int = field(default_factory=default_workers)
    """Gateway worker processes; they share nonces and replies through LMDB."""
    register_rate: float = GatewayConfig.register_rate
    """Registrations per second per client address at each gateway worker."""
    register_burst: int = GatewayConfig.register_burst
    """Registrations one client address may send at once."""
    soft_limit: int = HubSettings.soft_limit
    """Users per shard at which the hub spawns another shard (fixed at first start)."""
    hard_limit: int = HubSettings.hard_limit
    """Users per shard at which it takes no more (fixed at first start)."""
    min_shards: int = HubSettings.min_shards
    """Shards the hub keeps at least (fixed at first start)."""
    scale_interval_s: float = HubSettings.scale_interval_s
    """Seconds between the hub's capacity checks (fixed at first start)."""
    content_pack: Path | None = None
    """A content pack to import at start; none: the shipped sample pack."""
    cap: int = HubSettings.cap
    """Tokens the treasury may ever grant (fixed at first start)."""
    base_allowance: int = HubSettings.base_allowance
    """The allowance a shard asks the hub for by default (fixed at first start)."""
    daily_attempt_limit: int = HubSettings.daily_attempt_limit
    """Quiz attempts per user per UTC day (fixed at first start)."""
    daily_token_limit: int = HubSettings.daily_token_limit
    """Tokens a user may earn per UTC day (fixed at first start)."""
    shard_group_commit: bool = True
    """Shards share fsyncs among concurrent writes; off only to measure the difference
    (``bench/shard_submit.py``). How this run's hub starts shards, never stored: a later
    ``up`` without it group-commits again."""
    warm_pool: int = HubSettings.warm_pool
    """Started, unassigned shards the hub keeps ready to serve at once (fixed at first start)."""
    max_shards: int = HubSettings.max_shards
    """The most shards the hub ever creates (fixed at first start); past it new users
    get 503 no-capacity with Retry-After."""
    voting_period_s: float = HubSettings.voting_period_s
    """How long a governance proposal stays open for votes (fixed at first start)."""
    proposal_min_stake: int = HubSettings.proposal_min_stake
    """The least stake that may make a proposal (fixed at first start)."""
    rollout_concurrency: int = HubSettings.rollout_concurrency
    """Shards an adopted upgrade restarts at once (fixed at first start)."""
    template_root: Path | None = None
    """The directory a proposed upgrade's Python interpreter must lie under (fixed at
    first start); default: DATA_DIR/templates, made if missing."""
    content_replicas: int = field(default_factory=default_content_replicas)
    """Content service processes sharing one port (SO_REUSEPORT) and one LMDB file: many
    readers; every shard's verifications spread over them."""
    cors_origins: tuple[str, ...] = ()
    """Browser origins (scheme://host[:port]) whose pages may call the gateway."""
    stall_timeout_s: float = 60.0
    """Waits for a child to get ready, or for shards to serve, give up only after this long
    without progress (a child writing its log, one more shard serving)."""

    def __post_init__(self) -> None:
        if not 1 <= self.soft_limit <= self.hard_limit:
            raise UpError(
                f"need 1 <= soft limit <= hard limit, got {self.soft_limit}, {self.hard_limit}"
            )
        if self.register_rate <= 0 or self.register_burst < 1:
            raise UpError("--register-rate must be positive and --register-burst at least 1")
        if self.min_shards < 1:
            raise UpError("--min-shards must be at least 1")
        if self.max_shards < self.min_shards:
            raise UpError("--max-shards must be at least --min-shards")
        if self.scale_interval_s <= 0:
            raise UpError("--scale-interval must be positive")
        if not 1 <= self.content_replicas <= MAX_REPLICAS:
            raise UpError(f"--content-replicas must be in 1..{MAX_REPLICAS}")
        if not 0 <= self.warm_pool <= MAX_WARM_POOL:
            raise UpError(f"--warm-pool must be in 0..{MAX_WARM_POOL}")
        if self.content_pack is not None and not self.content_pack.is_file():
            raise UpError(f"content pack not found: {self.content_pack}")


#: UpConfig fields the hub fixes at its first start, named as in the stored HubConfig.
_HUB_POLICY = (
    "cap", "soft_limit", "hard_limit", "min_shards", "scale_interval_s", "base_allowance",
    "daily_attempt_limit", "daily_token_limit", "warm_pool", "max_shards",
    "voting_period_s", "proposal_min_stake", "rollout_concurrency",
)  # fmt: skip


class Cluster:
    """The children of one ``canistry up``, in start order."""

    def __init__(self, config: UpConfig, out: TextIO) -> None:
        self.config = config
        self.layout = ClusterLayout(config.data_dir)
        self.out = out
        self.children: dict[str, Child] = {}
        self._lock_fh: TextIO | None = None
        self._ports: dict[str, int] = {}

    def say(self, text: str) -> None:
        # The terminal may be gone (SIGHUP): stopping the cluster matters more than saying so.
        with contextlib.suppress(OSError, ValueError):
            print(text, file=self.out, flush=True)

    def lock(self) -> None:
        self.layout.data_dir.mkdir(parents=True, exist_ok=True)
        fh = open(self.layout.lock_file, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise UpError(f"a cluster is already running at {self.layout.data_dir}") from None
        self._lock_fh = fh

    def ports(self) -> dict[str, int]:
        """Every service's port, checked free before anything starts, and kept for resumes.

        The core services keep theirs (shards and the registry remember
        addresses); the gateway takes ``--port``, or with ``--port 0`` the one
        it had last time, so its URL survives a resume.
        """
        ports = self.layout.read_ports()
        for name in CORE_SERVICES:
            if name not in ports:
                ports[name] = free_port()
            elif not port_is_free(ports[name]):
                raise UpError(
                    f"port {ports[name]} for {name} (kept in {self.layout.cluster_file}) "
                    "is in use; is another process holding it?"
                )
        gateway = self.config.port or ports.get("gateway") or free_port()
        if not port_is_free(gateway):
            raise UpError(f"port {gateway} for the gateway is in use; choose another with --port")
        ports["gateway"] = gateway
        self.layout.write_ports(ports)
        return ports

    def certificates(self) -> None:
        """Make the cluster CA and the certificates ``canistry up`` hands out, or keep them."""
        lay = self.layout
        try:
            ca = ClusterCA.open(lay.ca_dir)
            for name in CERTIFIED:
                ca.ensure(Identity(Role(name), name), lay.tls_dir(name))
        except (OSError, TLSError) as exc:
            raise UpError(f"cannot set up the cluster's certificates: {exc}") from None

    def keep_stored_policy(self) -> None:
        """On a resume, run every service with the policy the hub stored at its first start.

        The hub keeps its stored config whatever flags it gets; this also
        gives the registry the stored limits, and tells the operator which
        flags are not taken.
        """
        stored = stored_config(self.layout.service_dir("hub"))
        if stored is None:
            return
        c = self.config
        for late in ("max_shards", "voting_period_s", "proposal_min_stake", "rollout_concurrency"):
            if not getattr(stored, late):  # stored before the field existed: the hub fixes it now
                setattr(stored, late, getattr(c, late))
        asked = hub_pb2.HubConfig(**{name: getattr(c, name) for name in _HUB_POLICY})
        notes = kept_notes(stored, asked, list(_HUB_POLICY))
        if not notes:
            return
        self.say(f"canistry: keeping the stored config (fixed at first start): {', '.join(notes)}")
        self.config = dataclasses.replace(
            c,
            **{name: type(getattr(c, name))(getattr(stored, name)) for name in _HUB_POLICY},
        )

    def tls(self, name: str) -> TLSConfig:
        """The certificate of ``name`` (one of ``CERTIFIED``), once :meth:`certificates` ran."""
        return TLSConfig.from_dir(self.layout.tls_dir(name))

    def build(self, ports: dict[str, int]) -> None:
        c, lay = self.config, self.layout
        addr = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        pack = ["--pack", str(c.content_pack.resolve())] if c.content_pack else ["--sample"]
        specs = {
            "content": [*pack],
            "registry": [
                "--soft-limit", str(c.soft_limit), "--hard-limit", str(c.hard_limit),
                "--hub", addr["hub"],
            ],
            "hub": [
                "--registry", addr["registry"], "--content", addr["content"],
                "--shards-dir", str(lay.shards_dir.resolve()),
                "--ca-dir", str(lay.ca_dir.resolve()),
                "--cap", str(c.cap), "--soft-limit", str(c.soft_limit),
                "--hard-limit", str(c.hard_limit), "--min-shards", str(c.min_shards),
                "--scale-interval", str(c.scale_interval_s), "--max-shards", str(c.max_shards),
                "--base-allowance", str(c.base_allowance),
                "--daily-attempt-limit", str(c.daily_attempt_limit),
                "--daily-token-limit", str(c.daily_token_limit),
                *([] if c.shard_group_commit else ["--shard-commit-per-request"]),
                *(["--warm-pool", str(c.warm_pool)] if c.warm_pool else []),
                "--voting-period", str(c.voting_period_s),
                "--proposal-min-stake", str(c.proposal_min_stake),
                "--rollout-concurrency", str(c.rollout_concurrency),
                "--template-root", str(self.template_root()),
            ],
        }  # fmt: skip
        for name, extra in specs.items():
            self._add_child(name, name, ports[name], extra)
        if c.content_replicas > 1:
            # Replica 1 imports the pack before serving; the others start after it.
            self.children["content"].argv += ["--replica", "1"]
            for k in range(2, c.content_replicas + 1):
                self._add_child(f"content-{k}", "content", ports["content"], ["--replica", str(k)])

    def template_root(self) -> Path:
        """Where upgrade templates may lie (made here, so operators find it)."""
        root = (self.config.template_root or self.layout.data_dir / "templates").resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _add_child(self, name: str, service: str, port: int, extra: list[str]) -> None:
        lay = self.layout
        argv = serve_argv(
            service,
            "--data-dir", str(lay.service_dir(service).resolve()),
            "--port", str(port),
            "--ready-file", str(lay.ready_file(name).resolve()),
            "--tls-dir", str(lay.tls_dir(service).resolve()),
            *extra,
        )  # fmt: skip
        self.children[name] = Child(name, argv, lay.ready_file(name), lay.log_file(name))

    def start(self) -> None:
        for child in self.children.values():
            child.start()
            address = child.wait_ready(self.config.stall_timeout_s)
            self.say(f"  {child.name:<10} {address}   (log: {child.log_file})")

    def boot(self) -> list[tuple[str, str]]:
        """Lock the data dir, start the core services, wait for the hub's first shards.

        Returns ``(shard_id, address)`` of the registered shards.
        """
        if self._lock_fh is None:
            self.lock()
        self.certificates()
        self.keep_stored_policy()
        self._ports = self.ports()
        self.build(self._ports)
        self.say(f"canistry: starting cluster in {self.config.data_dir.resolve()}")
        self.say(f"  mutual TLS under the cluster CA in {self.layout.ca_dir.resolve()}")
        self.start()
        registry = self.children["registry"].address
        want, stall_s = self.config.min_shards, self.config.stall_timeout_s
        # Its own loop in a worker thread: boot() is blocking, and callers may
        # be inside an event loop (tests) or not (the CLI).
        wait = _wait_for_shards(registry, self.tls("operator"), want, Progress(stall_s))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            shards = pool.submit(asyncio.run, wait).result()
        self.start_gateway()
        return shards

    @property
    def gateway_url(self) -> str:
        return f"http://{self.children['gateway'].address}"

    def start_gateway(self) -> None:
        """Start the HTTP gateway last: it is ready only when a shard can take users."""
        c, lay = self.config, self.layout
        port = self._ports["gateway"]
        addr = {name: child.address for name, child in self.children.items()}
        argv = serve_argv(
            "gateway",
            "--data-dir", str(lay.service_dir("gateway").resolve()),
            "--port", str(port),
            "--ready-file", str(lay.ready_file("gateway").resolve()),
            "--tls-dir", str(lay.tls_dir("gateway").resolve()),
            "--workers", str(c.gateway_workers),
            "--register-rate", str(c.register_rate), "--register-burst", str(c.register_burst),
            "--registry", addr["registry"], "--content", addr["content"], "--hub", addr["hub"],
            *(arg for origin in c.cors_origins for arg in ("--cors-origin", origin)),
            *(("--app-dir", str(WEB_APP)) if WEB_APP.is_dir() else ()),
        )  # fmt: skip
        child = Child("gateway", argv, lay.ready_file("gateway"), lay.log_file("gateway"))
        self.children["gateway"] = child
        child.start()
        child.wait_ready(c.stall_timeout_s)
        self.say(f"  {'gateway':<10} {self.gateway_url}   (log: {child.log_file})")
        if WEB_APP.is_dir():
            self.say(f"  {'web app':<10} {self.gateway_url}/app/")

    def supervise_once(self, now: float | None = None) -> None:
        """Restart each core service that exited, paced by its :class:`Backoff`."""
        restart_exited(self.children.values(), lambda text: self.say(f"canistry: {text}"), now)

    def stop(self) -> None:
        # The front door first, then the hub so it spawns nothing new; then the rest.
        first = ("gateway", "hub", "registry")
        for name in [*first, *(n for n in self.children if n not in first)]:
            child = self.children.get(name)
            if child is not None:
                child.stop()
        stopped = stop_shards(self.layout.shards_dir)
        self.say(f"canistry: stopped {len(self.children)} services and {stopped} shards")

    def kill(self) -> None:
        for child in self.children.values():
            child.kill()
        stop_shards(self.layout.shards_dir, timeout_s=0)

    def close(self) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None


async def _wait_for_shards(
    registry: str, tls: TLSConfig, want: int, progress: Progress
) -> list[tuple[str, str]]:
    """Wait until ``want`` registered shards answer healthy; return every registered one.

    Only those: on a resume the hub brings the others back at its own pace
    (newest first: the one taking new users). Gives up once ``progress``
    stalls (neither more registered nor more serving).
    """
    from protos import registry_pb2, registry_pb2_grpc
    from runtime.rpc import make_channel

    registered: list[tuple[str, str]] = []
    serving = 0
    async with make_channel(registry, tls, server_role=Role.REGISTRY) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        while True:
            try:
                d = await stub.ListShards(registry_pb2.ListShardsRequest(), timeout=2)
                registered = [(s.shard_id, s.address) for s in d.shards]
                serving = await _count_serving(registered, tls)
                if len(registered) >= want and serving >= want:
                    return registered
            except Exception:  # the registry is still starting: no progress yet
                pass
            progress.note((len(registered), serving))
            if progress.stalled():
                raise UpError(
                    f"waited {progress.waited_s():.0f}s for {want} shard(s) to serve "
                    f"({len(registered)} registered, {serving} serving) and saw no progress "
                    f"for {progress.stall_s:.0f}s"
                )
            await asyncio.sleep(0.2)


async def _count_serving(shards: list[tuple[str, str]], tls: TLSConfig) -> int:
    """How many of ``shards`` answer healthy now (probed all at once, briefly)."""
    from runtime.errors import Unavailable
    from runtime.rpc import wait_healthy

    async def serves(address: str) -> bool:
        try:
            await wait_healthy(address, timeout_s=0.5, tls=tls, server_role=Role.SHARD)
        except Unavailable:
            return False
        return True

    return sum(await asyncio.gather(*(serves(address) for _id, address in shards)))


def run_up(config: UpConfig, out: TextIO = sys.stdout) -> int:
    cluster = Cluster(config, out)
    # A plain counter, not a threading.Event: the handler runs on the main thread,
    # between two bytecodes of whatever it was doing, and Event.set takes a lock
    # that Event.wait in that very thread may hold (it hung `up` for good once).
    signals = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            cluster.say("canistry: second signal, killing everything now")
            cluster.kill()
            os._exit(128 + signum)

    # SIGHUP too: a closed terminal must not leave shards running, orphaned.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, on_signal) for s in stop_signals}
    log_file = cluster.layout.log_file("up")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_stream = open(log_file, "a")  # the terminal gets the readable lines; details go here
    logs.configure("up", stream=log_stream)
    try:
        cluster.lock()
        try:
            shards = cluster.boot()
        except (ChildFailed, UpError) as exc:
            cluster.say(f"canistry: {exc}")
            cluster.stop()
            return 1
        for shard_id, address in shards:
            cluster.say(f"  {shard_id:<10} {address}")
        cluster.say(f"canistry: cluster is up; the gateway is at {cluster.gateway_url}")
        cluster.say(
            f"canistry: `canistry status --data-dir {config.data_dir}` shows it; Ctrl-C stops it."
        )
        while not signals:
            time.sleep(0.25)  # the handler runs at once; the loop sees it within 0.25 s
            if not signals:
                cluster.supervise_once()
        cluster.say("canistry: stopping")
        cluster.stop()
        return 0
    finally:
        cluster.close()
        log_stream.close()
        for s, handler in old.items():
            signal.signal(s, handler)
