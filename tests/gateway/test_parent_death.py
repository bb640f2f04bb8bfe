"""Gateway workers die with their supervisor: none is left serving the port."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

from canistry.up import Cluster
from tests.gateway.support import start_gateway
from tests.polling import eventually


def spawned_workers(parent: int) -> set[int]:
    """The multiprocessing workers among ``parent``'s children (not its resource tracker)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmdline:
                pids.add(int(pid))
    return pids


def alive(pid: int) -> bool:
    """Running, that is: a zombie waiting for init to reap it counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


async def test_workers_exit_when_their_supervisor_is_killed(
    gw_cluster: Cluster, tmp_path: Path
) -> None:
    gw = start_gateway(gw_cluster, tmp_path / "gw", workers=2)
    port = urlsplit(gw.url).port
    assert port is not None
    workers: set[int] = set()
    try:
        workers = await eventually(
            lambda: len(spawned_workers(gw.proc.pid)) == 2 and spawned_workers(gw.proc.pid),
            20,
            "two workers",
        )
        assert not port_free(port)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        await eventually(
            lambda: not any(alive(pid) for pid in workers), 30, f"workers {workers} to exit"
        )
        await eventually(lambda: port_free(port), 10, f"port {port} free")
    finally:
        for pid in workers:  # only if the test failed: do not leave them behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
