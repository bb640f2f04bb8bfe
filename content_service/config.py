"""Configuration of one content service process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.rpc import ServerConfig

__all__ = ["ContentConfig"]


@dataclass(frozen=True)
class ContentConfig:
    """What a :class:`~content_service.service.ContentService` needs."""

    data_dir: Path
    """This service's own directory; its LMDB environment lives right in it."""
    server: ServerConfig = field(default_factory=ServerConfig)
    """Where the gRPC server listens; ``server.tls`` is this process's cluster
    certificate, which it also presents to the peers it dials."""
    durable: bool = True
    """fsync every import. Only throwaway tests turn this off."""
    cache_units: int = 10_000
    """How many parsed units to keep in memory for reads; 0 turns the cache off."""

    def __post_init__(self) -> None:
        if not isinstance(self.data_dir, Path):
            raise TypeError("data_dir must be a pathlib.Path")
        if self.cache_units < 0:
            raise ValueError("cache_units must be >= 0")
