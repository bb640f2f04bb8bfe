"""The registry's configuration, built once per process by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.rpc import ServerConfig

__all__ = ["RegistryConfig"]


@dataclass(frozen=True)
class RegistryConfig:
    """Where the registry keeps its map and how full a shard may get."""

    data_dir: Path
    """Directory of the registry's LMDB environment."""
    server: ServerConfig = field(default_factory=ServerConfig)
    """Where the gRPC server listens; ``server.tls`` is this process's cluster
    certificate, which it also presents to the peers it dials."""
    soft_limit: int = 90_000
    """Users at which a shard is "filling up": reaching it pokes the hub."""
    hard_limit: int = 100_000
    """Users at which a shard is FULL and takes nobody new."""
    hub_address: str | None = None
    """Hub to poke (``EnsureCapacity``) when capacity runs low; None pokes nobody."""
    durable: bool = True
    """fsync every commit. Only benchmarks and throwaway tests turn this off."""
    pending_timeout_s: float = 600.0
    """How long an assignment may wait for its profile. Past it, and once the
    shard confirms it holds no profile for the principal, the assignment is
    released so an abandoned registration does not use up capacity. Every
    ``Assign`` of the principal renews it; far longer than a registration takes."""
    watch_interval_s: float = 5.0
    """Time between two census rounds of the shards (pending assignments
    confirmed or released, store fullness read)."""
    store_full_fraction: float = 0.9
    """A shard whose store has used this fraction of its map is FULL: no new
    users, and the hub spawns another shard."""
    shard_timeout_s: float = 5.0
    """Deadline of one census call to a shard."""

    def __post_init__(self) -> None:
        if self.soft_limit < 1:
            raise ValueError("soft_limit must be >= 1")
        if self.hard_limit < 1:
            raise ValueError("hard_limit must be >= 1")
        if self.soft_limit > self.hard_limit:
            raise ValueError(
                f"soft_limit ({self.soft_limit}) must be <= hard_limit ({self.hard_limit})"
            )
        if self.pending_timeout_s <= 0:
            raise ValueError("pending_timeout_s must be > 0")
        if self.watch_interval_s <= 0:
            raise ValueError("watch_interval_s must be > 0")
        if not 0.0 < self.store_full_fraction <= 1.0:
            raise ValueError("store_full_fraction must be in (0, 1]")
        if self.shard_timeout_s <= 0:
            raise ValueError("shard_timeout_s must be > 0")
        if self.hub_address is not None and not self.hub_address.strip():
            raise ValueError("hub_address must be None or host:port")
