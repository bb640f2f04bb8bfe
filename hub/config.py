"""The hub's settings, and the part of them fixed forever at init.

:class:`HubSettings` is what a process is started with. Its policy half
(cap, limits, allowance sizes, spawner, daily limits...) becomes the
``HubConfig`` stored in the hub's LMDB at first start; afterwards the stored
one wins, and :func:`differences` names what a later start asked to change
(:func:`kept_notes` says it in words).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from protos import hub_pb2
from runtime.rpc import ServerConfig
from runtime.tls import CA_KEY_FILE

__all__ = [
    "DEFAULT_MAX_SHARDS",
    "DEFAULT_START_CONCURRENCY",
    "DEFAULT_START_INTERVAL_S",
    "POLICY_FIELDS",
    "SPAWNERS",
    "HubSettings",
    "differences",
    "kept_notes",
    "template_version",
]

#: Spawner backends this build can make from its settings: ``process`` (children of
#: the hub) and ``docker`` (a container per shard, hub/docker_spawner.py, which pins
#: the shard image's ID at init). Any other :class:`~hub.spawner.Spawner` is
#: injected by whoever builds the hub (tests).
# Beyond one host (issue 11): hub/kubernetes_spawner.py and hub/swarm_spawner.py.
SPAWNERS = ("process", "docker", "kubernetes", "swarm")

#: HubConfig fields fixed at init (addresses are where peers are now, not policy).
POLICY_FIELDS = (
    "cap",
    "soft_limit",
    "hard_limit",
    "min_shards",
    "scale_interval_s",
    "base_allowance",
    "max_grant",
    "spawner",
    "template_version",
    "daily_attempt_limit",
    "daily_token_limit",
    "shard_start_timeout_s",
    "warm_pool",
    "max_shards",
    "voting_period_s",
    "proposal_min_stake",
    "rollout_concurrency",
    "template_root",
)

#: Shards a hub creates at most unless told otherwise (each is a process on this host).
DEFAULT_MAX_SHARDS = 64
#: Shard starts the supervisor runs at once, and the least seconds between two.
DEFAULT_START_CONCURRENCY = 4
DEFAULT_START_INTERVAL_S = 0.25

#: Governance defaults: four days to vote, one unit's reward to propose.
DEFAULT_VOTING_PERIOD_S = 4 * 24 * 3600.0
DEFAULT_PROPOSAL_MIN_STAKE = 100

#: The most warm shards a hub may keep (each is a running process doing nothing).
MAX_WARM_POOL = 16


def template_version(spawner: str) -> str:
    """What a new shard runs: for ``process``, this package's version; else the backend's."""
    if spawner == "docker":
        return "docker:"  # the hub pins the image's ID at init (hub.docker_spawner.pin_image)
    if spawner in ("kubernetes", "swarm"):
        return f"{spawner}:"  # pinned at init by the backend's pin_image
    if spawner != "process":
        return spawner
    try:
        return f"canistry=={metadata.version('canistry')}"
    except metadata.PackageNotFoundError:
        return "canistry==dev"


@dataclass(frozen=True)
class HubSettings:
    """How the hub process starts. Policy fields only count at the hub's first start."""

    data_dir: Path
    """Directory of the hub's LMDB environment."""
    shards_dir: Path
    """Where each created shard gets its data directory (``shards_dir/<shard-id>``)."""
    registry_address: str
    """The registry (host:port): shard directory and user counts."""
    content_address: str
    """The content service (host:port), handed to every shard."""
    server: ServerConfig = field(default_factory=ServerConfig)
    """Where the hub's gRPC server listens, and its certificate (``server.tls``)."""
    ca_dir: Path | None = None
    """The cluster CA (``ca.pem``, ``ca.key``): the hub issues each shard it creates
    a certificate from it. Required with ``server.tls``, and only with it."""
    enroll_port: int | None = None
    """Serve shard enrollment (``EnrollShard``, server-only TLS: shards trade a one-time
    join token for a certificate of their own key) on this port of the server's host; 0
    picks a free one. None: no enrollment port. The kubernetes spawner needs it; needs
    TLS."""
    cap: int = 4_200_000_000
    """Tokens the treasury may ever grant, all shards together."""
    soft_limit: int = 90_000
    """Users per shard at which the hub spawns another shard."""
    hard_limit: int = 100_000
    """Users per shard at which the registry marks it full."""
    min_shards: int = 1
    """Shards the hub keeps registered at least."""
    scale_interval_s: float = 60.0
    """Seconds between scheduled capacity checks."""
    base_allowance: int = 1_000_000
    """The allowance a shard asks for by default (handed to shards)."""
    max_grant: int = 50_000_000
    """The most one allowance request may be granted."""
    spawner: str = "process"
    """Where shards run: ``process`` (children of this hub), ``docker`` (containers),
    ``swarm`` (Swarm services) or ``kubernetes`` (StatefulSets). A hub built with an
    injected spawner stores that spawner's name instead."""
    daily_attempt_limit: int = 20
    """Quiz attempts per user per UTC day (handed to shards)."""
    daily_token_limit: int = 1000
    """Tokens a user may earn per UTC day (handed to shards)."""
    shard_start_timeout_s: float = 20.0
    """How long a new or restarted shard may take to report healthy."""
    warm_pool: int = 0
    """Started, healthy, unassigned shards kept ready: when the soft limit is crossed
    one of them is registered at once instead of starting a shard cold."""
    max_shards: int = DEFAULT_MAX_SHARDS
    """The most shards the hub ever creates, warm ones included (abandoned spawns do not
    count). At it the hub spawns nothing more; registrations past the last shard's hard
    limit then get the registry's no-capacity answer (503 with Retry-After at the gateway)."""
    voting_period_s: float = DEFAULT_VOTING_PERIOD_S
    """How long a governance proposal stays open for votes (a late swing extends it)."""
    proposal_min_stake: int = DEFAULT_PROPOSAL_MIN_STAKE
    """The least staked balance a user needs to make a proposal (at least 1)."""
    rollout_concurrency: int = 1
    """Shards an adopted upgrade restarts at once."""
    template_root: Path | None = None
    """Process upgrades: a proposed template interpreter must lie under this directory,
    which only the operator should be able to write (fixed at the hub's first start).
    None: this hub accepts no process template."""
    start_concurrency: int = DEFAULT_START_CONCURRENCY
    """Shard processes the supervisor starts at once (each holds its slot until it
    answers healthy, or its start timeout passes): bounds the flood after a restart."""
    start_interval_s: float = DEFAULT_START_INTERVAL_S
    """The least time between two shard starts by the supervisor (a rate cap)."""
    durable: bool = True
    """fsync every commit (the hub's and its shards'). Only tests turn this off."""
    shard_commit_per_request: bool = False
    """Benchmarks only, and never stored: the shards this hub process starts fsync each
    request alone instead of group-committing (``bench/shard_submit.py`` compares the two).
    Like ``durable`` it is how this process runs, not policy: a restart without it starts
    shards that group-commit again."""

    def __post_init__(self) -> None:
        for name in ("registry_address", "content_address"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name} is required")
        if (self.server.tls is None) != (self.ca_dir is None):
            raise ValueError("server.tls and ca_dir go together: a TLS hub issues shard identities")
        if self.ca_dir is not None and not (self.ca_dir / CA_KEY_FILE).is_file():
            raise ValueError(f"no cluster CA key in {self.ca_dir}")
        if self.enroll_port is not None:
            if self.server.tls is None:
                raise ValueError("enroll_port needs TLS: shards enrol for a certificate")
            if not 0 <= self.enroll_port <= 65535:
                raise ValueError(f"enroll_port out of range: {self.enroll_port}")
        if self.cap < 0:
            raise ValueError("cap must be >= 0")
        if self.soft_limit < 1 or self.hard_limit < 1:
            raise ValueError("soft_limit and hard_limit must be >= 1")
        if self.soft_limit > self.hard_limit:
            raise ValueError(
                f"soft_limit ({self.soft_limit}) must be <= hard_limit ({self.hard_limit})"
            )
        if self.min_shards < 0:
            raise ValueError("min_shards must be >= 0")
        if self.scale_interval_s <= 0:
            raise ValueError("scale_interval_s must be > 0")
        if self.base_allowance < 0:
            raise ValueError("base_allowance must be >= 0")
        if self.max_grant < 1:
            raise ValueError("max_grant must be >= 1")
        if self.spawner not in SPAWNERS:
            raise ValueError(f"spawner must be one of {SPAWNERS}, got {self.spawner!r}")
        if self.daily_attempt_limit < 1:
            raise ValueError("daily_attempt_limit must be >= 1")
        if self.daily_token_limit < 0:
            raise ValueError("daily_token_limit must be >= 0")
        if self.shard_start_timeout_s <= 0:
            raise ValueError("shard_start_timeout_s must be > 0")
        if not 0 <= self.warm_pool <= MAX_WARM_POOL:
            raise ValueError(f"warm_pool must be in 0..{MAX_WARM_POOL}, got {self.warm_pool}")
        if self.max_shards < max(1, self.min_shards):
            raise ValueError(
                f"max_shards ({self.max_shards}) must be >= 1 and >= min_shards ({self.min_shards})"
            )
        if self.voting_period_s <= 0 or self.proposal_min_stake < 1:
            raise ValueError("voting_period_s must be > 0 and proposal_min_stake >= 1")
        if self.rollout_concurrency < 1:
            raise ValueError("rollout_concurrency must be >= 1")
        if self.start_concurrency < 1 or self.start_interval_s < 0:
            raise ValueError("start_concurrency must be >= 1 and start_interval_s >= 0")

    def init_config(self) -> hub_pb2.HubConfig:
        """The policy these settings would fix if this were the hub's first start."""
        return hub_pb2.HubConfig(
            cap=self.cap,
            soft_limit=self.soft_limit,
            hard_limit=self.hard_limit,
            min_shards=self.min_shards,
            scale_interval_s=self.scale_interval_s,
            base_allowance=self.base_allowance,
            max_grant=self.max_grant,
            spawner=self.spawner,
            template_version=template_version(self.spawner),
            daily_attempt_limit=self.daily_attempt_limit,
            daily_token_limit=self.daily_token_limit,
            shard_start_timeout_s=self.shard_start_timeout_s,
            warm_pool=self.warm_pool,
            max_shards=self.max_shards,
            voting_period_s=self.voting_period_s,
            proposal_min_stake=self.proposal_min_stake,
            rollout_concurrency=self.rollout_concurrency,
            template_root=str(self.template_root.absolute()) if self.template_root else "",
        )


def differences(
    stored: hub_pb2.HubConfig,
    wanted: hub_pb2.HubConfig,
    fields: Sequence[str] = POLICY_FIELDS,
) -> list[str]:
    """Names of the policy ``fields`` where ``wanted`` differs from ``stored``."""
    return [f for f in fields if getattr(stored, f) != getattr(wanted, f)]


def kept_notes(
    stored: hub_pb2.HubConfig,
    wanted: hub_pb2.HubConfig,
    fields: Sequence[str] = POLICY_FIELDS,
) -> list[str]:
    """One ``"soft_limit 90000 (asked 5)"`` per field where ``wanted`` differs from ``stored``."""
    return [
        f"{f} {_show(getattr(stored, f))} (asked {_show(getattr(wanted, f))})"
        for f in differences(stored, wanted, fields)
    ]


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).lower() if isinstance(value, bool) else str(value)
