import asyncio
from pathlib import Path
from typing import Any

from hub.config import HubSettings
from protos import hub_pb2
from tests.polling import eventually


def hub_settings(tmp_path: Path, registry_address: str, **kw: Any) -> HubSettings:
    values: dict[str, Any] = dict(
        data_dir=tmp_path / "hub",
        shards_dir=tmp_path / "shards",
        registry_address=registry_address,
        content_address="127.0.0.1:1",
        soft_limit=2,
        hard_limit=3,
        min_shards=1,
        scale_interval_s=3600.0,
        shard_start_timeout_s=5.0,
        durable=False,
    )
    values.update(kw)
    return HubSettings(**values)


def hold_after(step: str, held: list[hub_pb2.ShardRecord] | None = None) -> Any:
    """An ``after_step`` hook holding every spawn for good once it committed ``step``.

    Each held record is appended to ``held``.
    """
    want = hub_pb2.SpawnStep.Value(f"SPAWN_STEP_{step}")

    async def hook(record: hub_pb2.ShardRecord) -> None:
        if record.step == want:
            if held is not None:
                held.append(record)
            await asyncio.Event().wait()

    return hook


async def shards_up(hub: Any, registry: Any, n: int, timeout_s: float = 10.0) -> None:
    """Wait until the hub has ``n`` REGISTERED shards and the registry lists ``n``."""

    def check() -> bool:
        done = [r for r in hub.store.shards() if r.step == hub_pb2.SPAWN_STEP_REGISTERED]
        return len(done) == n and len(registry.registry.list_shards().shards) == n

    await eventually(check, timeout_s, f"{n} registered shard(s)")
