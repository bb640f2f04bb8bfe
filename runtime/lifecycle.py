"""The lifecycle every long-lived Canistry object shares.

A :class:`Lifecycle` starts with ``start()``, stops with an idempotent
``stop()``, and works as ``async with``, which is all that the servers,
stores and services need in common. :class:`BackgroundTasks` owns the
long-running loops a service starts (refillers, sweepers, supervisors), so
every one of them is cancelled and awaited when the service stops, and none
dies unnoticed.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self

from runtime import logs

__all__ = ["BackgroundTasks", "Lifecycle"]

log = logs.get_logger(__name__)


class Lifecycle(abc.ABC):
    """``async with obj:`` starts it and always stops it."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Acquire resources and begin serving; ready when it returns."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Drain, then release everything. Safe to call more than once."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class BackgroundTasks:
    """The loops one owner runs until it stops: ``spawn()`` each, ``stop()`` them all.

    A loop that ends by an exception is logged whole (it is a bug: loops
    catch what they expect). ``stop()`` cancels every loop and waits for it;
    it is idempotent, and ``spawn()`` after it is refused.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        if self._stopped:
            coro.close()
            raise RuntimeError("background tasks already stopped")
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background_task_died", task=task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        self._stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
