"""Make a gateway worker exit when the process that started it dies.

uvicorn's supervisor restarts and stops its workers, but if it is killed
outright (SIGKILL, OOM) its workers are reparented to init and go on serving
the port, where nothing will ever stop them. :func:`die_with_parent` asks
Linux to send SIGTERM when the parent dies (``PR_SET_PDEATHSIG``), and, as a
fallback where that is unavailable, watches ``os.getppid()`` from a daemon
thread. SIGTERM is uvicorn's graceful stop: in-flight requests drain first.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

from runtime import logs

__all__ = ["die_with_parent"]

log = logs.get_logger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, *, poll_s: float = 0.5) -> None:
    """Arrange SIGTERM to this process once ``parent_pid`` is no longer its parent.

    Call it early in the child. If the parent is already gone, the signal is
    sent at once.
    """
    _set_pdeathsig(signal.SIGTERM)
    # The parent may have died before prctl took effect: then no signal will come.
    if os.getppid() != parent_pid:
        _orphaned(parent_pid)
        return
    threading.Thread(
        target=_watch, args=(parent_pid, poll_s), name="parent-watch", daemon=True
    ).start()


def _set_pdeathsig(sig: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            log.warning("pdeathsig_failed", errno=ctypes.get_errno())
    except (OSError, AttributeError) as exc:  # no libc prctl: the watch thread remains
        log.warning("pdeathsig_unavailable", error=repr(exc))


def _watch(parent_pid: int, poll_s: float) -> None:
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    _orphaned(parent_pid)


def _orphaned(parent_pid: int) -> None:
    log.warning("gateway_parent_gone", parent=parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
