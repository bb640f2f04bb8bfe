"""Where shards run: the :class:`Spawner` interface and its process backend.

A spawner starts one shard from a :class:`~protos.hub_pb2.ShardRecord`
(id, port, data dir), tells whether it still runs, and stops it. It keeps no
state the hub cannot rebuild: after a hub restart, :meth:`Spawner.adopt`
finds a shard that kept running, so the hub never starts a second copy.

:class:`ProcessSpawner` runs ``python -m canistry serve shard ...`` in its own
session, so a shard outlives the hub. :func:`stop_shards` is for ``canistry
up``'s shutdown: it stops every shard under a shards directory, whether or not
a hub still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from protos import hub_pb2
from runtime import logs
from runtime.files import write_atomically
from runtime.net import port_is_free

__all__ = [
    "PlacingSpawner",
    "ProcessSpawner",
    "ShardTemplate",
    "Spawner",
    "shard_tls_dir",
    "stop_shards",
]

log = logs.get_logger(__name__)

#: Written by the hub next to the shard's data as soon as the process exists.
PID_FILE = "shard.pid"
#: Written by the shard itself while it serves (``canistry serve``).
SERVICE_PID_FILE = "service.pid"
LOG_FILE = "shard.log"
#: The shard's certificate directory (``ca.pem``, ``cert.pem``, ``key.pem``), the hub's to write.
TLS_DIR = "tls"

_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def shard_tls_dir(data_dir: str | Path) -> Path:
    """Where the hub puts the certificate of the shard whose data lives in ``data_dir``."""
    return Path(data_dir) / TLS_DIR


class Spawner(Protocol):
    """Starts, watches and stops shards. The hub owns the records; this owns the processes."""

    name: str
    """The backend's name, stored in the hub's init config (``process``)."""

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        """Start the shard described by ``record`` (port, data dir); return its pid."""
        ...

    def is_alive(self, record: hub_pb2.ShardRecord) -> bool:
        """Whether the process ``record.pid`` still runs this shard."""
        ...

    def adopt(self, record: hub_pb2.ShardRecord) -> int | None:
        """The pid of a live process already running this shard, if any.

        Unlike :meth:`is_alive` it also finds a process whose pid never made
        it into the record (the hub died between starting it and saving).
        """
        ...

    async def stop(self, record: hub_pb2.ShardRecord) -> None:
        """Stop the shard if it runs (gracefully, then by force); no error if it does not."""
        ...

    def port_available(self, port: int) -> bool:
        """Whether a shard could bind ``port`` now."""
        ...


@runtime_checkable
class PlacingSpawner(Protocol):
    """A spawner that decides where a new shard serves (containers: by their own name)."""

    def place(self, shard_id: str) -> tuple[str, int]:
        """The address (host:port) the new shard ``shard_id`` will serve at, and its port."""
        ...


@dataclass(frozen=True)
class ShardTemplate:
    """What every shard process is started with (fixed at the hub's init)."""

    content_address: str
    hub_address: Callable[[], str]
    """The hub's address; read at each start, since it is known only once the hub binds."""
    daily_attempt_limit: int
    daily_token_limit: int
    base_allowance: int
    durable: bool = True
    commit_per_request: bool = False
    tls: bool = True
    """Shards serve and dial mutual TLS with the certificate in their ``tls`` directory;
    False runs them ``--insecure`` (only under a plain-text hub, in tests)."""
    host: str = "127.0.0.1"

    def serve_args(
        self,
        shard_id: str,
        *,
        data_dir: str,
        port: int,
        hub: str,
        tls_dir: str,
        host: str | None = None,
    ) -> list[str]:
        """``canistry serve shard ...`` for one shard: the one place every backend
        (process, container, service, pod) builds a shard's command from."""
        args = ["serve", "shard", "--shard-id", shard_id, "--data-dir", data_dir]
        if host is not None:
            args += ["--host", host]
        args += [
            "--port", str(port),
            "--hub", hub,
            "--content", self.content_address,
            "--daily-attempt-limit", str(self.daily_attempt_limit),
            "--daily-token-limit", str(self.daily_token_limit),
            "--base-allowance", str(self.base_allowance),
        ]  # fmt: skip
        args += ["--tls-dir", tls_dir] if self.tls else ["--insecure"]
        if not self.durable:
            args.append("--no-fsync")
        if self.commit_per_request:
            args.append("--no-group-commit")
        return args


class ProcessSpawner:
    """Each shard is a child process in its own session, logging to ``DIR/shard.log``."""

    name = "process"

    def __init__(self, template: ShardTemplate, *, stop_timeout_s: float = 10.0) -> None:
        self.template = template
        self.stop_timeout_s = stop_timeout_s
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def argv(self, record: hub_pb2.ShardRecord) -> list[str]:
        t = self.template
        return [
            record.python or sys.executable, "-m", "canistry",
            *t.serve_args(
                record.shard_id,
                data_dir=record.data_dir,
                port=record.port,
                hub=t.hub_address(),
                tls_dir=str(shard_tls_dir(record.data_dir)),
            ),
        ]  # fmt: skip

    async def start(self, record: hub_pb2.ShardRecord) -> int:
        proc = await asyncio.to_thread(self._popen, record)
        self._children[record.shard_id] = proc
        log.info("shard_process_started", shard_id=record.shard_id, pid=proc.pid, port=record.port)
        return proc.pid

    def _popen(self, record: hub_pb2.ShardRecord) -> subprocess.Popen[bytes]:
        data_dir = Path(record.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(data_dir / LOG_FILE, "ab") as out:
            proc = subprocess.Popen(
                self.argv(record),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=_child_env(record.python),
                # Not the hub's cwd: `-m canistry` puts the cwd first on sys.path, and a
                # checkout there would shadow the canistry the interpreter itself holds.
                cwd=data_dir,
            )
        write_atomically(data_dir / PID_FILE, f"{proc.pid}\n")
        return proc

    def is_alive(self, record: hub_pb2.ShardRecord) -> bool:
        return self._alive(record.shard_id, record.pid)

    def adopt(self, record: hub_pb2.ShardRecord) -> int | None:
        data_dir = Path(record.data_dir)
        for pid in (
            record.pid,
            _read_pid(data_dir / PID_FILE),
            _read_pid(data_dir / SERVICE_PID_FILE),
        ):
            if pid and self._alive(record.shard_id, pid):
                return pid
        return None

    async def stop(self, record: hub_pb2.ShardRecord) -> None:
        pid = self.adopt(record)
        if pid is None:
            self._reap(record.shard_id)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        while self._alive(record.shard_id, pid):
            if time.monotonic() >= deadline:
                log.warning("shard_kill", shard_id=record.shard_id, pid=pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = float("inf")
            await asyncio.sleep(0.05)
        self._reap(record.shard_id)
        log.info("shard_process_stopped", shard_id=record.shard_id, pid=pid)

    def port_available(self, port: int) -> bool:
        return port_is_free(port, self.template.host)

    def _alive(self, shard_id: str, pid: int) -> bool:
        child = self._children.get(shard_id)
        if child is not None and child.pid == pid:
            return child.poll() is None  # poll() also reaps a dead child
        return pid_runs_shard(pid, shard_id)

    def _reap(self, shard_id: str) -> None:
        child = self._children.pop(shard_id, None)
        if child is not None:
            child.poll()


def _child_env(python: str = "") -> dict[str, str]:
    """This environment, with this source tree importable (it is the shard template).

    A shard on an adopted template's interpreter (``python``) runs the canistry
    installed in that interpreter's environment: no PYTHONPATH leads it elsewhere.
    """
    env = dict(os.environ)
    if python:
        env.pop("PYTHONPATH", None)
        return env
    if (_SOURCE_ROOT / "canistry").is_dir():
        parts = [str(_SOURCE_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[0] if fields else None


def pid_runs_shard(pid: int, shard_id: str) -> bool:
    """Whether ``pid`` is a live (not zombie) process with ``shard_id`` among its arguments.

    The argument check keeps a recycled pid from being taken for a shard.
    """
    if pid <= 0 or _proc_state(pid) in (None, "Z", "X"):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return shard_id.encode() in args


def stop_shards(shards_dir: Path, *, timeout_s: float = 10.0) -> int:
    """SIGTERM every shard process under ``shards_dir`` and wait for them to exit.

    A shard is found by the pid files in ``shards_dir/<shard-id>/`` and
    checked against ``/proc`` (it must still run with its shard id as an
    argument). Those still running after ``timeout_s`` get SIGKILL (at once
    with ``timeout_s=0``). Returns how many processes were signalled. Safe to
    call with no hub running, and on a missing directory.
    """
    targets: dict[int, str] = {}
    if shards_dir.is_dir():
        for shard_dir in sorted(p for p in shards_dir.iterdir() if p.is_dir()):
            for name in (PID_FILE, SERVICE_PID_FILE):
                pid = _read_pid(shard_dir / name)
                if pid and pid not in targets and pid_runs_shard(pid, shard_dir.name):
                    targets[pid] = shard_dir.name
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    alive = set(targets)
    while alive:
        alive = {pid for pid in alive if pid_runs_shard(pid, targets[pid])}
        if not alive:
            break
        if time.monotonic() >= deadline:
            for pid in alive:
                log.warning("shard_kill", shard_id=targets[pid], pid=pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    if targets:
        log.info("shards_stopped", count=len(targets))
    return len(targets)
