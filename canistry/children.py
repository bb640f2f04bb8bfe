"""Child processes that ``canistry up`` starts, watches and stops."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from canistry.progress import Progress
from hub.backoff import Backoff
from runtime.parent_watch import PARENT_ENV

__all__ = ["Child", "ChildFailed", "restart_exited", "serve_argv"]


def core_backoff() -> Backoff:
    """How ``canistry up`` paces restarts of a core service (the hub's own Backoff).

    Shorter than a shard's (0.25 s doubling to 10 s), and uptime earns it back
    (halved per 5 s up): nothing is spawned while the hub is down, so a hub
    that dies now and then must come back within seconds, not after the
    longest delay it ever reached.
    """
    return Backoff(initial_s=0.25, max_s=10.0, reset_after_s=60.0, credit_s=5.0)


class ChildFailed(RuntimeError):
    """A child exited before it became ready."""


def serve_argv(service: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "canistry", "serve", service, *args]


@dataclass
class Child:
    """One supervised service process.

    It runs in its own session, so a Ctrl-C at the terminal reaches only
    ``canistry up``, which then stops children in order, each once.
    """

    name: str
    argv: list[str]
    ready_file: Path
    log_file: Path | None
    """Where its output goes; None: this process's own stdout and stderr."""
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: Backoff = field(default_factory=core_backoff)
    address: str = field(default="")

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.ready_file.unlink()
        with contextlib.ExitStack() as stack:
            log = None
            if self.log_file is not None:
                self.log_file.parent.mkdir(parents=True, exist_ok=True)
                log = stack.enter_context(open(self.log_file, "ab"))
            # The core services belong to this process: if it is killed outright they
            # must not linger holding the cluster's ports; each dies with it
            # (runtime.parent_watch). (Shards are the hub's.)
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, PARENT_ENV: str(os.getpid())},
            )
        self.started_at = time.monotonic()

    def wait_ready(self, stall_s: float = 30.0) -> str:
        """Wait until the child has written its address; return it.

        The wait goes on as long as the child keeps writing to its log; it
        fails (:class:`ChildFailed`, saying what it waited for) once the log
        has not grown for ``stall_s``, or when the child exits.
        """
        progress = Progress(stall_s)
        while True:
            progress.note(_size(self.log_file))
            if self.ready_file.exists():
                text = self.ready_file.read_text().strip()
                if text:
                    self.address = text
                    return text
            if self.proc is not None and self.proc.poll() is not None:
                raise ChildFailed(
                    f"{self.name} exited with code {self.proc.returncode} before it was ready; "
                    f"last lines of {self.log_file}:\n{tail(self.log_file)}"
                )
            if progress.stalled():
                raise ChildFailed(
                    f"{self.name} was not ready: waited {progress.waited_s():.0f}s for it to "
                    f"write its address to {self.ready_file}, and its log has shown no "
                    f"progress for {stall_s:.0f}s; see {self.log_file}"
                )
            time.sleep(0.05)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, wait for the drain, SIGKILL if it does not end in time. Idempotent."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def restart_exited(
    children: Iterable[Child], say: Callable[[str], None], now: float | None = None
) -> None:
    """Restart each child that exited, paced by its :class:`Backoff`."""
    now = time.monotonic() if now is None else now
    for child in children:
        code = child.exited()
        backoff = child.backoff
        if code is None:
            backoff.alive(now)
            continue
        if backoff.retry_at is None:
            say(f"{child.name} exited with code {code}; restarting in {backoff.delay_s:.2f}s")
        if backoff.dead(now):
            backoff.restarted(now)
            child.restarts += 1
            child.start()


def _size(path: Path | None) -> int:
    if path is None:
        return -1
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def tail(path: Path | None, lines: int = 15) -> str:
    if path is None:
        return "(its output is this process's)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
