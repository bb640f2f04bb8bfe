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

    def __post_init__(self) -> None:
        if self.soft_limit < 1:
            raise ValueError("soft_limit must be >= 1")
        if self.hard_limit < 1:
            raise ValueError("hard_limit must be >= 1")
        if self.soft_limit > self.hard_limit:
            raise ValueError(
                f"soft_limit ({self.soft_limit}) must be <= hard_limit ({self.hard_limit})"
            )
        if self.hub_address is not None and not self.hub_address.strip():
            raise ValueError("hub_address must be None or host:port")
