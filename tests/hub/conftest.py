"""Fixtures shared by the hub's in-process tests: a real registry and the fake spawner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.fake_spawner import FakeSpawner
from registry.config import RegistryConfig
from registry.service import RegistryService


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryService]:
    cfg = RegistryConfig(data_dir=tmp_path / "registry", soft_limit=2, hard_limit=3, durable=False)
    async with RegistryService(cfg) as svc:
        yield svc


@pytest.fixture
async def spawner() -> AsyncIterator[FakeSpawner]:
    fake = FakeSpawner()
    yield fake
    await fake.close()
