"""The lifecycle every long-lived Canistry object shares.

A :class:`Lifecycle` starts with ``start()``, stops with an idempotent
``stop()``, and works as ``async with``, which is all that the servers,
stores and services need in common.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Lifecycle"]


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
