"""The command line as an operator uses it: `canistry up`, `status`, Ctrl-C, run again."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from canistry.layout import CERTIFIED, ClusterLayout
from runtime.tls import ClusterCA, Identity, Role
from tests.integration.upcli import start_up, stop_up

pytestmark = pytest.mark.timeout(180)


def _canistry(
    *args: str, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canistry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_status_without_a_cluster_fails_clearly(tmp_path: Path) -> None:
    result = _canistry("status", "--data-dir", str(tmp_path / "nothing"))
    assert result.returncode == 1 and "no cluster" in result.stderr
    # An address alone needs the operator's certificate: none in ./.canistry here.
    result = _canistry("status", "--hub", "127.0.0.1:1", cwd=tmp_path)
    assert result.returncode == 1 and "no operator certificate" in result.stderr
    operator = tmp_path / "operator"
    ClusterCA.open(tmp_path / "ca").issue(Identity(Role.OPERATOR, "operator"), operator)
    result = _canistry("status", "--hub", "127.0.0.1:1", "--tls-dir", str(operator))
    assert result.returncode == 1 and "no cluster" in result.stderr


def test_up_status_ctrl_c_and_resume(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, lines = start_up(data_dir, "--scale-interval", "1")
    try:
        text = "\n".join(lines)
        for name in ("content", "registry", "hub", "shard-0001", "gateway"):
            assert name in text
        url = re.search(r"the gateway is at (http://\S+)", text)
        assert url, text
        assert httpx.get(url.group(1) + "/readyz", timeout=10).status_code == 200
        assert httpx.get(url.group(1) + "/v1/units?limit=2", timeout=10).json()["units"]
        status = _canistry("status", "--data-dir", str(data_dir))
        assert status.returncode == 0, status.stderr
        assert "shard-0001" in status.stdout and "active" in status.stdout
        assert "Treasury" in status.stdout and "units" in status.stdout
        second = _canistry("up", "--data-dir", str(data_dir))
        assert second.returncode == 2 and "already running" in second.stderr
        layout = ClusterLayout(data_dir)
        shard_pid = int((layout.shards_dir / "shard-0001" / "service.pid").read_text())
        core_pids = [int((layout.service_dir(n) / "service.pid").read_text())
                     for n in ("content", "registry", "hub", "gateway")]  # fmt: skip
        # `up` made the CA and the certificates; keys are the owner's alone.
        assert (layout.ca_dir / "ca.key").stat().st_mode & 0o777 == 0o600
        assert (layout.tls_dir("hub") / "key.pem").stat().st_mode & 0o777 == 0o600
        certs = {n: (layout.tls_dir(n) / "cert.pem").read_bytes() for n in CERTIFIED}
        shard_cert = layout.shards_dir / "shard-0001" / "tls" / "cert.pem"
        assert shard_cert.is_file(), "the hub issued the shard its certificate"
    finally:
        out = stop_up(proc)
    assert "stopped" in out
    for pid in (shard_pid, *core_pids):
        assert not _alive(pid), f"process {pid} outlived Ctrl-C"

    proc, lines = start_up(data_dir, "--scale-interval", "1")
    try:
        status = _canistry("status", "--data-dir", str(data_dir))
        assert status.returncode == 0, status.stderr
        assert "shard-0001" in status.stdout and "shard-0002" not in status.stdout
        again = {n: (layout.tls_dir(n) / "cert.pem").read_bytes() for n in CERTIFIED}
        assert again == certs, "a second run reuses the cluster's certificates"
    finally:
        stop_up(proc)


def test_up_restarts_a_core_service_that_dies(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, _ = start_up(data_dir, "--scale-interval", "1")
    try:
        layout = ClusterLayout(data_dir)
        pid = int((layout.service_dir("registry") / "service.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = _canistry("status", "--data-dir", str(data_dir))
            new_pid = layout.service_dir("registry") / "service.pid"
            if status.returncode == 0 and new_pid.exists() and int(new_pid.read_text()) != pid:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the registry was not restarted")
    finally:
        stop_up(proc)
