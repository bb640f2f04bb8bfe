"""Rough edges of `canistry up` and `status` that a newcomer hit."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from canistry.up import Cluster, UpError
from tests.integration.conftest import test_config


def test_status_into_a_closed_pipe_ends_without_a_traceback(shared_cluster: Cluster) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "canistry", "status",
         "--data-dir", str(shared_cluster.config.data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `| head` does once it has read enough
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_gateway_keeps_its_port_across_resumes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Cluster(test_config(data_dir), out=io.StringIO())
    try:
        first.boot()
        url = first.gateway_url
    finally:
        first.stop()
        first.close()
    again = Cluster(test_config(data_dir), out=io.StringIO())
    try:
        again.boot()
        assert again.gateway_url == url
    finally:
        again.stop()
        again.close()


def test_a_busy_gateway_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = Cluster(test_config(tmp_path / "data", port=port), out=io.StringIO())
        try:
            with pytest.raises(UpError, match=f"port {port} for the gateway is in use"):
                cluster.boot()
            assert not cluster.children, "nothing was started"
        finally:
            cluster.stop()
            cluster.close()
