"""Process lifecycle: run one service until SIGTERM or SIGINT, in two stages.

The first signal starts a graceful stop (drain, then close stores); a second
one exits at once. Services report readiness by writing their address to a
file only after binding, so a supervisor never races a half-started process.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager

from runtime import logs

__all__ = ["run_until_signalled"]

log = logs.get_logger(__name__)


async def run_until_signalled(
    service: Callable[[], AsyncContextManager[object]],
    *,
    on_ready: Callable[[object], None] | None = None,
) -> None:
    """Enter ``service()``, wait for SIGTERM/SIGINT, then leave it (drain)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals_seen = 0

    def on_signal(signum: int) -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            log.info("stopping", signal=signal.Signals(signum).name)
            stop.set()
        else:
            log.warning("stopping_now", signal=signal.Signals(signum).name)
            os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with service() as running:
            if on_ready is not None:
                on_ready(running)
            await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
