"""A shard disabled by governance gets no new users, whatever its room, until enabled."""

from __future__ import annotations

from pathlib import Path

import pytest

from protos import registry_pb2
from registry import assignment, reconcile
from registry.config import RegistryConfig
from registry.service import RegistryService
from runtime.errors import InvalidArgument, NoCapacity

ACTIVE = registry_pb2.SHARD_STATE_ACTIVE
FULL = registry_pb2.SHARD_STATE_FULL
DISABLED = registry_pb2.SHARD_STATE_DISABLED


def _shard(shard_id: str, seq: int, users: int = 0) -> registry_pb2.ShardInfo:
    return registry_pb2.ShardInfo(
        shard_id=shard_id, state=ACTIVE, users=users, registration_seq=seq
    )


def test_disabled_wins_over_active_and_full_and_enabling_restores_them() -> None:
    off = reconcile.set_disabled(_shard("a", 1), disabled=True, hard_limit=3)
    assert off.state == DISABLED and not assignment.is_open(off, 3)
    assert reconcile.state_of(off, 3) == DISABLED
    assert reconcile.set_disabled(off, disabled=False, hard_limit=3).state == ACTIVE
    full = reconcile.set_disabled(_shard("b", 1, users=3), disabled=True, hard_limit=3)
    assert reconcile.set_disabled(full, disabled=False, hard_limit=3).state == FULL


def test_new_users_skip_a_disabled_shard() -> None:
    newest = reconcile.set_disabled(_shard("new", 2), disabled=True, hard_limit=3)
    assert assignment.choose_shard([_shard("old", 1), newest], 3).shard_id == "old"
    with pytest.raises(NoCapacity):
        assignment.choose_shard([newest], 3)


async def test_the_registry_keeps_a_disabled_shard_out_of_assignments(tmp_path: Path) -> None:
    cfg = RegistryConfig(data_dir=tmp_path / "r", soft_limit=2, hard_limit=3, durable=False)
    async with RegistryService(cfg) as svc:
        registry = svc.registry
        await registry.register_shard("shard-0001", "127.0.0.1:1")
        info = await registry.set_shard_state("shard-0001", disabled=True)
        assert info.state == DISABLED
        with pytest.raises(NoCapacity):
            await registry.assign("a" * 10 + "-cai")
        with pytest.raises(InvalidArgument):
            await registry.set_shard_state("shard-9999", disabled=True)
        await registry.register_shard("shard-0001", "127.0.0.1:2")  # re-registering keeps it
        assert registry.list_shards().shards[0].state == DISABLED
        assert (await registry.set_shard_state("shard-0001", disabled=False)).state == ACTIVE
