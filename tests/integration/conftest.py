"""Real clusters for integration tests: core services and shards as real processes on loopback."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from canistry.up import Cluster, UpConfig

MakeCluster = Callable[..., Cluster]


@pytest.fixture
def make_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakeCluster]:
    """Start a cluster with the given UpConfig fields; every one is stopped after the test."""
    started: list[Cluster] = []

    def make(**fields: Any) -> Cluster:
        data_dir: Path = tmp_path_factory.mktemp("cluster") / "data"
        fields.setdefault("scale_interval_s", 1.0)
        cluster = Cluster(UpConfig(data_dir=data_dir, **fields), out=io.StringIO())
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
        UpConfig(data_dir=tmp_path_factory.mktemp("shared") / "data", scale_interval_s=2.0),
        out=io.StringIO(),
    )
    cluster.boot()
    yield cluster
    cluster.stop()
    cluster.close()
