"""Fixtures shared by the hub's in-process tests: a real registry and the fake spawner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from registry.config import RegistryConfig
from registry.service import RegistryService
from tests.hub.fake_spawner import FakeSpawner


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
