"""Make a child process exit when the process that started it dies.

A supervisor (``canistry up``, uvicorn's for gateway workers) restarts and
stops its children, but if it is killed outright (SIGKILL, OOM) they are
reparented to init and go on holding their ports, where nothing will ever
stop them. :func:`die_with_parent` asks Linux to send SIGTERM when the
parent dies (``PR_SET_PDEATHSIG``), and, as a fallback where that is
unavailable, watches ``os.getppid()`` from a daemon thread. SIGTERM is every
service's graceful stop: calls in flight drain first.

The child calls it itself, early. A ``preexec_fn`` doing the same would run
Python between ``fork`` and ``exec`` in a parent with threads (gRPC's), which
can deadlock the child, and with it the parent waiting for its ``exec``.
:data:`PARENT_ENV` is how a supervisor names itself to a ``canistry serve`` child.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

from runtime import logs

__all__ = ["PARENT_ENV", "die_with_parent"]

log = logs.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
#: The environment variable holding the pid of the supervisor a child must die with.
PARENT_ENV = "CANISTRY_PARENT_PID"


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
    log.warning("parent_gone", parent=parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)
