"""Fault campaigns run against real clusters, the same ones the integration tests start."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from canistry.up import Cluster
from tests.integration.conftest import make_cluster, test_config

__all__ = ["campaign_cluster", "make_cluster"]


@pytest.fixture(scope="module")
def campaign_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A default cluster for one campaign module that puts back whatever it breaks."""
    cluster = Cluster(
        test_config(tmp_path_factory.mktemp("campaign") / "data", scale_interval_s=2.0),
        out=io.StringIO(),
    )
    cluster.boot()
    yield cluster
    cluster.stop()
    cluster.close()
