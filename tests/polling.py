"""The one way tests wait: poll a condition until it holds, with a deadline.

No test sleeps for a guessed time; it waits for what it needs to see, and
fails with what it last saw when that never comes.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(
    check: Callable[[], Any],
    timeout_s: float = 20.0,
    what: str = "condition",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Call ``check`` (sync or async) until it returns something truthy; return that.

    Exceptions of the ``ignore`` types count as "not yet". Raises
    AssertionError after ``timeout_s``, naming ``what`` and the last value.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    delay, last = 0.01, None
    while True:
        try:
            last = check()
            if inspect.isawaitable(last):
                last = await last
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
