"""Real clusters for integration tests: core services and shards as real processes on loopback."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from canistry.up import Cluster, UpConfig

MakeCluster = Callable[..., Cluster]


def test_config(data_dir: Path, **fields: Any) -> UpConfig:
    """A cluster config for tests: any free gateway port, one gateway worker, quick scaling."""
    fields.setdefault("port", 0)
    fields.setdefault("gateway_workers", 1)
    fields.setdefault("scale_interval_s", 1.0)
    # Tests register many users from one address; the limit has tests of its own.
    fields.setdefault("register_rate", 10_000.0)
    fields.setdefault("register_burst", 100_000)
    return UpConfig(data_dir=data_dir, **fields)


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeCluster]:
    """Start a cluster with the given UpConfig fields; every one is stopped after the test."""
    started: list[Cluster] = []

    def make(**fields: Any) -> Cluster:
        data_dir: Path = tmp_path_factory.mktemp("cluster") / "data"
        cluster = Cluster(test_config(data_dir, **fields), out=io.StringIO())
        started.append(cluster)
        cluster.boot()
        return cluster

    yield make
    for cluster in started:
        cluster.stop()
        cluster.close()


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One default-config cluster for tests that only add their own users."""
    cluster = Cluster(
        test_config(tmp_path_factory.mktemp("shared") / "data", scale_interval_s=2.0),
        out=io.StringIO(),
    )
    cluster.boot()
    yield cluster
    cluster.stop()
    cluster.close()
