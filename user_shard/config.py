"""How one user shard is set up: built by the CLI from flags, validated here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runtime.rpc import ServerConfig

__all__ = ["MIN_IDEMPOTENCY_RETENTION_S", "ShardConfig"]

#: Idempotent replies are kept at least a day: a client may retry that late.
MIN_IDEMPOTENCY_RETENTION_S = 24 * 3600.0


@dataclass(frozen=True)
class ShardConfig:
    """Everything a :class:`~user_shard.service.ShardService` needs to run."""

    shard_id: str
    """This shard's id, as the hub and registry know it."""
    data_dir: Path
    """Directory of the shard's LMDB environment; created if missing."""
    hub_address: str
    """``host:port`` of the hub (allowance requests)."""
    content_address: str
    """``host:port`` of the content service (quiz verification)."""
    server: ServerConfig = field(default_factory=ServerConfig)
    """Where the shard's gRPC server listens; ``server.tls`` is the certificate the
    hub issued it, which it also presents to the content service and the hub."""
    daily_attempt_limit: int = 20
    """Quiz attempts per user per UTC day; a wrong answer uses one."""
    daily_token_limit: int = 1000
    """Tokens a user may earn (credited or pending) per UTC day."""
    base_allowance: int = 1_000_000
    """The smallest allowance the shard asks the hub for."""
    low_water_fraction: float = 0.25
    """Ask for more once the remaining allowance falls below this fraction of the last grant."""
    refill_target_s: float = 60.0
    """Size requests so that one grant lasts about twice this long at the observed mint rate."""
    group_commit: bool = True
    """Batch concurrent writes into one durable transaction; False commits each alone."""
    durable: bool = True
    """fsync every commit. Only benchmarks and throwaway tests turn this off."""
    hub_retry_max_s: float = 5.0
    """Cap of the exponential backoff between retries of a failed allowance request."""
    stake_report_quiet_s: float = 2.0
    """Credits not yet reported to the hub are reported on their own (an allowance request
    for 0 tokens) once no credit came for this long; under steady load, at the latest
    ``refill_target_s`` after the last request. So the hub's total staked is fresh without
    a hub call per quiz."""
    map_size: int = 1 << 32
    """Largest the shard's LMDB file may grow, in bytes (sparse until used). Once
    its writes fail with StoreFull (503); the registry stops sending new users
    well before, when the shard reports the map nearly full."""
    idempotency_retention_s: float = 2 * MIN_IDEMPOTENCY_RETENTION_S
    """How long the first reply to a submission's idempotency key is kept and
    replayed; older ones are pruned. At least 24 h. A retry with the same key
    after this is treated as a new submission."""
    idempotency_sweep_interval_s: float = 60.0
    """Time between two sweeps that prune expired idempotent replies."""
    idempotency_sweep_batch: int = 500
    """Replies deleted per transaction by the sweeper, so a sweep never holds
    the single writer for long."""

    def __post_init__(self) -> None:
        if not self.shard_id or len(self.shard_id) > 64:
            raise ValueError("shard_id must be 1..64 characters")
        if not self.hub_address:
            raise ValueError("hub_address is required")
        if not self.content_address:
            raise ValueError("content_address is required")
        if self.daily_attempt_limit < 1:
            raise ValueError("daily_attempt_limit must be >= 1")
        if self.daily_token_limit < 0:
            raise ValueError("daily_token_limit must be >= 0")
        if self.base_allowance < 1:
            raise ValueError("base_allowance must be >= 1")
        if not 0.0 < self.low_water_fraction < 1.0:
            raise ValueError("low_water_fraction must be in (0, 1)")
        if self.refill_target_s <= 0:
            raise ValueError("refill_target_s must be > 0")
        if self.stake_report_quiet_s <= 0:
            raise ValueError("stake_report_quiet_s must be > 0")
        if self.hub_retry_max_s <= 0:
            raise ValueError("hub_retry_max_s must be > 0")
        if self.map_size < 1 << 16:
            raise ValueError("map_size must be >= 64 KiB")
        if self.idempotency_retention_s < MIN_IDEMPOTENCY_RETENTION_S:
            raise ValueError("idempotency_retention_s must be >= 86400 (24 h)")
        if self.idempotency_sweep_interval_s <= 0:
            raise ValueError("idempotency_sweep_interval_s must be > 0")
        if self.idempotency_sweep_batch < 1:
            raise ValueError("idempotency_sweep_batch must be >= 1")
        object.__setattr__(self, "data_dir", Path(self.data_dir))
