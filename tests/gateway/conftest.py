"""One real cluster (small shard limits, so registrations spawn shards) and a gateway in front."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from canistry.up import Cluster
from tests.gateway.support import GatewayProcess, start_gateway
from tests.integration.conftest import test_config


@pytest.fixture(scope="session")
def gw_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(
        test_config(
            tmp_path_factory.mktemp("gwcluster") / "data",
            soft_limit=3,
            hard_limit=4,
            scale_interval_s=1.0,
        ),
        out=io.StringIO(),
    )
    cluster.boot()
    yield cluster
    cluster.stop()
    cluster.close()


@pytest.fixture(scope="session")
def gateway(
    gw_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One worker, so that its caches are the only ones (the multi-worker test starts its own).

    Every test registers from 127.0.0.1, so the registration rate limit is lifted here;
    tests/gateway/test_edge_limits.py starts a gateway with a tight one."""
    gw = start_gateway(
        gw_cluster,
        tmp_path_factory.mktemp("gateway"),
        workers=1,
        extra=("--register-rate", "1000", "--register-burst", "100000"),
    )
    yield gw
    assert gw.stop() == 0, gw.log_file.read_text()[-3000:]


@pytest.fixture(scope="session")
def url(gateway: GatewayProcess) -> str:
    return gateway.url
