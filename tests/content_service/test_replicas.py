"""``canistry serve content --replicas N``: one parent, N content processes on one port.

Run as a container runs it: a real process tree with mutual TLS over one LMDB
file. An import is visible through every replica, a replica killed with
SIGKILL is started again while the others serve, and SIGTERM stops them all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from content_service.service import load_sample_pack
from protos import content_pb2, content_pb2_grpc
from runtime.metrics import ADDRESS_FILE
from runtime.net import free_port
from runtime.rpc import make_channel
from runtime.tls import ClusterCA, Identity, Role, TLSConfig
from tests.polling import eventually

pytestmark = pytest.mark.timeout(120)

UNIT = {**json.loads(load_sample_pack())["units"][0], "id": "fresh-unit-901", "title": "Fresh"}
GET_UNIT = "Content/GetUnit"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _pid(data_dir: Path, k: int) -> int:
    return int((data_dir / f"service-{k}.pid").read_text())


def _served_reads(data_dir: Path, k: int) -> float:
    url = "http://" + (data_dir / ADDRESS_FILE.replace(".", f"-{k}.", 1)).read_text().strip()
    total = 0.0
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for s in family.samples:
            if (
                s.name == "canistry_rpc_requests_total"
                and s.labels.get("method") == "Content/GetUnit"
            ):
                total += s.value
    return total


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str, TLSConfig]]:
    ca = ClusterCA.create(tmp_path / "ca")
    ca.issue(Identity(Role.CONTENT, "content"), tmp_path / "content-tls")
    operator = ca.issue(Identity(Role.OPERATOR, "operator"), tmp_path / "op")
    data, port = tmp_path / "content", free_port("127.0.0.1")
    ready = tmp_path / "ready"
    parent = subprocess.Popen(
        [sys.executable, "-m", "canistry", "serve", "content", "--sample", "--replicas", "2",
         "--data-dir", str(data), "--port", str(port), "--ready-file", str(ready),
         "--tls-dir", str(tmp_path / "content-tls")],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("wb"),
    )  # fmt: skip
    try:
        yield parent, data, f"127.0.0.1:{port}", operator
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for k in (1, 2):  # their parent's death ends them (PDEATHSIG); make sure
            try:
                os.kill(_pid(data, k), signal.SIGKILL)
            except (OSError, ValueError):
                pass


async def test_replicas_serve_one_port_see_imports_heal_and_stop_together(
    replicas: tuple[subprocess.Popen[bytes], Path, str, TLSConfig], tmp_path: Path
) -> None:
    parent, data, address, operator = replicas
    ready = tmp_path / "ready"
    await eventually(lambda: ready.exists() or parent.poll() is not None, 60, "ready")
    assert parent.poll() is None, (tmp_path / "log").read_text()[-2000:]
    assert ready.read_text().strip() == address
    pids = [_pid(data, k) for k in (1, 2)]
    assert len(set(pids)) == 2 and all(map(_alive, pids)) and parent.pid not in pids

    async with make_channel(address, operator, server_role=Role.CONTENT) as ch:
        await content_pb2_grpc.ContentStub(ch).ImportPack(
            content_pb2.ImportPackRequest(pack_json=json.dumps({"units": [UNIT]}))
        )

    async def read_fresh() -> str:
        async with make_channel(address, operator, server_role=Role.CONTENT) as ch:
            got = await content_pb2_grpc.ContentStub(ch).GetUnit(
                content_pb2.GetUnitRequest(unit_id=UNIT["id"])
            )
        return got.title

    for _ in range(24):  # a new connection each time: the kernel spreads them
        assert await read_fresh() == "Fresh"
    served = [_served_reads(data, k) for k in (1, 2)]
    assert all(n > 0 for n in served), f"both replicas served the new unit: {served}"

    os.kill(pids[1], signal.SIGKILL)
    # The other one serves meanwhile: a connection the kernel had queued at the dead
    # one is reset, and the caller's retry lands on the live one.
    title = await eventually(read_fresh, 10, "a read meanwhile", ignore=(grpc.RpcError,))
    assert title == "Fresh"

    def restarted() -> bool:
        try:
            pid = _pid(data, 2)
        except (OSError, ValueError):
            return False
        return pid != pids[1] and _alive(pid)

    await eventually(restarted, 30, "replica 2 started again")
    assert _pid(data, 1) == pids[0], "the other replica was left alone"

    parent.send_signal(signal.SIGTERM)
    assert parent.wait(30) == 0
    now = [_pid_or_0(data, k) for k in (1, 2)]
    assert not any(pid and _alive(pid) for pid in [*pids, *now])


def _pid_or_0(data_dir: Path, k: int) -> int:
    try:
        return _pid(data_dir, k)
    except (OSError, ValueError):
        return 0


def test_replicas_need_a_port_to_share(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "canistry", "serve", "content", "--replicas", "2", "--insecure",
         "--data-dir", str(tmp_path / "content")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--replicas needs a --port" in done.stderr


def test_replicas_must_be_a_count_or_auto(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "canistry", "serve", "content", "--replicas", "0", "--insecure",
         "--data-dir", str(tmp_path / "content"), "--port", "7999"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "must be in 1..64 or 'auto'" in done.stderr


async def test_replicas_die_with_their_parent_killed_outright(
    replicas: tuple[subprocess.Popen[bytes], Path, str, TLSConfig], tmp_path: Path
) -> None:
    """No preexec hook: each child asks for SIGTERM at its parent's death itself."""
    parent, data, _address, _operator = replicas
    ready = tmp_path / "ready"
    await eventually(lambda: ready.exists() or parent.poll() is not None, 60, "ready")
    pids = [_pid(data, k) for k in (1, 2)]
    assert all(map(_alive, pids))
    parent.kill()
    parent.wait(10)
    await eventually(lambda: not any(map(_alive, pids)), 30, f"replicas {pids} to exit")
