from pathlib import Path

import pytest

from gateway.config import GatewayConfig
from gateway.core import Gateway
from gateway.server import uvicorn_config
from runtime.tls import TLSConfig, TLSError


async def test_a_start_that_fails_partway_closes_what_it_opened(tmp_path: Path) -> None:
    missing = TLSConfig(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    config = GatewayConfig(
        registry_address="127.0.0.1:1",
        content_address="127.0.0.1:2",
        hub_address="127.0.0.1:3",
        data_dir=tmp_path / "gw",
        tls=missing,
    )
    gateway = Gateway(config)
    with pytest.raises(TLSError):
        await gateway.start()  # the store opened, then the channels could not be made
    assert gateway.store._store is None, "the store was closed again"
    async with Gateway(config.__class__(**{**config.__dict__, "tls": None})) as again:
        assert again.store.store.env.path() == str(tmp_path / "gw" / "gateway.lmdb")


def test_a_starved_worker_is_given_time_before_its_supervisor_replaces_it(tmp_path: Path) -> None:
    config = GatewayConfig(
        registry_address="127.0.0.1:1",
        content_address="127.0.0.1:2",
        hub_address="127.0.0.1:3",
        data_dir=tmp_path / "gw",
        workers=2,
    )
    uv = uvicorn_config(config)
    # uvicorn's own 5 s killed workers a busy host (a cluster restarting) merely starved.
    assert uv.timeout_worker_healthcheck == 30 and uv.workers == 2
