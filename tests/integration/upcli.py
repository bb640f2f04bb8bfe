"""`canistry up` as an operator runs it: a real foreground process, stopped with Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def start_up(data_dir: Path, *flags: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Run `canistry up` (any free gateway port, one worker) until it says the cluster is up.

    Returns the process and what it printed so far.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "canistry", "up", "--data-dir", str(data_dir),
         "--port", "0", "--workers", "1", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if "cluster is up" in line:
            return proc, lines
    proc.kill()
    raise AssertionError("canistry up did not come up:\n" + "\n".join(lines))


def stop_up(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C (SIGINT); the whole cluster must stop cleanly. Returns the rest of its output."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out
