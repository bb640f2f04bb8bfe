"""One load run, start to end: probe, catalogue, registration, the load, the summary.

:func:`run_load` is the run itself (async; it raises :class:`Unreachable`
and :class:`SetupFailed` before any load); :func:`run_loadtest` is the
command: it handles signals (the first ends the run early with its summary,
the second aborts), prints the summary and writes the report, and turns
outcomes into the exit status.

Each worker holds its own :class:`~canistry.client.AsyncClient` and acts as
one idle user at a time, signing with that user's identity; the users take
turns, so no user has two requests in flight. Every request of registration
and load is counted; the probe and the catalogue read are setup, not load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import Any, TextIO

from canistry.client import AsyncClient, Identity
from canistry.loadtest._answers import AnswerBook
from canistry.loadtest._config import LoadTestConfig
from canistry.loadtest._driver import Driver, Failed, RunControl, Stopped
from canistry.loadtest._mix import Mix, SimUser
from canistry.loadtest._report import build_report, render_summary
from canistry.loadtest._setup import (
    SetupFailed,
    TransportFactory,
    Unreachable,
    loopback_transport,
    probe,
    read_catalogue,
)
from canistry.loadtest._stats import Tally

__all__ = ["run_load", "run_loadtest"]

#: A worker whose request got no response at all waits this long before its next one,
#: so that a gateway that went away is not hammered with connection attempts.
NO_RESPONSE_PAUSE_S = 0.2


class _Run:
    def __init__(
        self, config: LoadTestConfig, transport: TransportFactory, err: TextIO | None
    ) -> None:
        self.config = config
        self.transport = transport
        self.err = err
        self.tally = Tally()
        self.control = RunControl(config.max_requests)
        self.driver = Driver(self.tally, self.control, err)
        self.rng = random.Random(config.seed)

    def say(self, text: str) -> None:
        if self.err is not None:
            print(text, file=self.err, flush=True)

    def client(self) -> AsyncClient:
        return AsyncClient(
            self.config.gateway,
            timeout_s=self.config.request_timeout_s,
            transport=self.transport(),
        )

    async def progress(self, label: str, t0: float, done: asyncio.Event) -> None:
        last_n, last_t = self.tally.requests, t0
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.config.progress_interval_s)
            if done.is_set():
                return
            now, n = time.monotonic(), self.tally.requests
            rate = (n - last_n) / (now - last_t) if now > last_t else 0.0
            last_n, last_t = n, now
            self.say(
                f"  {label} {now - t0:7.1f} s  {n:>10,} requests  {rate:9.1f} req/s  "
                f"{self.tally.errors:,} errors  {self.tally.limited:,} 429s"
            )

    async def phase(self, label: str, work: list[Coroutine[Any, Any, None]]) -> float:
        """Run ``work`` to its end with progress lines; the seconds it took."""
        done = asyncio.Event()
        t0 = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            if self.err is not None:
                tg.create_task(self.progress(label, t0, done))
            try:
                async with asyncio.TaskGroup() as crew:
                    for coroutine in work:
                        crew.create_task(coroutine)
            finally:
                done.set()
        return time.monotonic() - t0

    async def register_all(
        self, mix: Mix, clients: list[AsyncClient], users: list[SimUser]
    ) -> list[SimUser]:
        waiting, registered = deque(users), []
        run_id = uuid.uuid4().hex[:8]
        until = time.monotonic() + self.config.setup_timeout_s

        async def worker(api: AsyncClient) -> None:
            while waiting:
                user = waiting.popleft()
                try:
                    await mix.register(api, user, run_id, until)
                except Failed:
                    continue
                except Stopped:
                    return
                registered.append(user)

        self.registration_s = await self.phase("registering", [worker(c) for c in clients])
        return sorted(registered, key=lambda u: u.n)

    async def load(self, mix: Mix, clients: list[AsyncClient], users: list[SimUser]) -> float:
        idle = deque(users)

        async def worker(api: AsyncClient) -> None:
            # There are at least as many users as workers, so one is always idle here.
            while not self.control.stop.is_set():
                # Let the timer, the progress lines and the other workers in even
                # when requests complete without suspending.
                await asyncio.sleep(0)
                user = idle.popleft()
                try:
                    await mix.step(api, user)
                    pause = 0.0
                except Failed as exc:
                    pause = NO_RESPONSE_PAUSE_S if exc.status is None else 0.0
                except Stopped:
                    return
                finally:
                    idle.append(user)
                if pause:
                    with contextlib.suppress(Stopped):
                        await self.control.pause(pause)

        async def timer() -> None:
            # Wakes workers waiting out a Retry-After; take() sees the deadline too.
            with contextlib.suppress(Stopped):
                await self.control.pause(self.config.duration_s)
                self.control.end("duration")

        self.control.deadline = time.monotonic() + self.config.duration_s
        workers = [worker(c) for c in clients[: len(users)]]
        return await self.phase("load", [timer(), *workers])

    async def run(self) -> dict[str, Any]:
        config = self.config
        await probe(config, self.transport)
        book = AnswerBook.sample()
        async with contextlib.AsyncExitStack() as stack:
            setup = await stack.enter_async_context(
                AsyncClient(
                    config.gateway,
                    timeout_s=config.request_timeout_s,
                    retry_unavailable_s=config.setup_timeout_s,
                    transport=self.transport(),
                )
            )
            catalogue, subjects = await read_catalogue(setup)
            known = sum(1 for u in catalogue if u in book)
            self.say(
                f"canistry loadtest: {config.gateway} lists {len(catalogue)} units "
                f"({known} with answers known from the sample pack); registering "
                f"{config.users:,} users with {config.workers} workers"
            )
            clients = [
                await stack.enter_async_context(self.client()) for _ in range(config.workers)
            ]
            mix = Mix(self.driver, book, catalogue, subjects, self.rng)
            users = [SimUser(n, Identity.generate()) for n in range(config.users)]
            self.registration_s = 0.0
            registered = await self.register_all(mix, clients, users)
            load_s = 0.0
            if registered and not self.control.stop.is_set():
                self.say(
                    f"canistry loadtest: {len(registered):,} users registered; loading for "
                    f"{config.duration_s:g} s with {min(len(clients), len(registered))} workers"
                )
                load_s = await self.load(mix, clients, registered)
        return build_report(
            config=config,
            tally=self.tally,
            users_registered=len(registered),
            workers=min(config.workers, len(registered)),
            units=len(catalogue),
            registration_s=self.registration_s,
            load_s=load_s,
            stopped_by=self.control.stopped_by,
        )


async def run_load(
    config: LoadTestConfig,
    *,
    err: TextIO | None = None,
    transport: TransportFactory = loopback_transport,
    handle_signals: bool = False,
) -> dict[str, Any]:
    """Run the load described by ``config``; the report (see :func:`build_report`).

    Progress and first occurrences of each failure go to ``err`` unless it is
    None. With ``handle_signals``, the first SIGINT or SIGTERM ends the run
    early (the report still comes) and the second cancels it. Raises
    :class:`Unreachable` or :class:`SetupFailed` before any load is sent.
    """
    run = _Run(config, transport, err)
    if not handle_signals:
        return await run.run()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1 and main is not None:
            main.cancel()
            return
        run.control.end("signal")
        if err is not None:
            print("canistry loadtest: stopping; requests in flight finish (again to abort)",
                  file=err, flush=True)  # fmt: skip

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await run.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_loadtest(config: LoadTestConfig, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The ``canistry loadtest`` command; its exit status.

    0 when the load ran (failed requests are reported, not fatal); 1 when it
    could not run (no unit list, no user registered) or the report could not
    be written; 2 when no gateway answers; 130 when aborted by a second signal.
    """
    try:
        report = asyncio.run(
            run_load(config, err=None if config.quiet else err, handle_signals=True)
        )
    except Unreachable as exc:
        print(f"canistry loadtest: {exc}", file=err)
        return 2
    except SetupFailed as exc:
        print(f"canistry loadtest: {exc}", file=err)
        return 1
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("canistry loadtest: aborted", file=err)
        return 130
    render_summary(report, out)
    status = 0
    if config.report is not None:
        try:
            config.report.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            print(f"canistry loadtest: cannot write the report: {exc}", file=err)
            status = 1
    if report["users_registered"] == 0:
        print("canistry loadtest: no user could register; nothing was loaded", file=err)
        status = 1
    return status
