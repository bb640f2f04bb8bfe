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
from collections import deque
from collections.abc import Coroutine
from typing import Any, TextIO

from canistry.client import AsyncClient, Identity
from canistry.loadtest._answers import AnswerBook
from canistry.loadtest._cluster import ClusterReader, shard_figures
from canistry.loadtest._config import LoadTestConfig
from canistry.loadtest._driver import Driver, Failed, RunControl, Stopped
from canistry.loadtest._live import Bar, Lines, Phase, View
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
#: Seconds between samples of the shards' fill during the load, and the most samples taken.
FILL_INTERVAL_S = 1.0
MAX_FILL_SAMPLES = 100_000


class _Run:
    def __init__(
        self, config: LoadTestConfig, transport: TransportFactory, err: TextIO | None
    ) -> None:
        self.config = config
        self.transport = transport
        self.err = err
        self.tally = Tally()
        self.control = RunControl(config.max_requests)
        self.view = _view(config, err)
        self.driver = Driver(self.tally, self.control, self.view.notes if self.view else None)
        self.rng = random.Random(config.seed)
        self.fill: list[tuple[float, dict[str, tuple[int, int]]]] = []
        """Samples of each shard's (users, capacity), by seconds from the start."""
        self.registration_s = 0.0

    def say(self, text: str) -> None:
        notes = self.view.notes if self.view is not None else None
        if notes is not None:
            print(text, file=notes, flush=True)

    def client(self) -> AsyncClient:
        return AsyncClient(
            self.config.gateway,
            timeout_s=self.config.request_timeout_s,
            transport=self.transport(),
        )

    async def phase(self, phase: Phase, work: list[Coroutine[Any, Any, None]]) -> float:
        """Run ``work`` to its end while the view follows it; the seconds it took."""
        done = asyncio.Event()
        t0 = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            if self.view is not None:
                tg.create_task(self.view.follow(phase, self.tally, done))
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
        until = time.monotonic() + self.config.setup_timeout_s

        async def worker(api: AsyncClient) -> None:
            while waiting:
                user = waiting.popleft()
                try:
                    await mix.register(api, user, until)
                except Failed:
                    continue
                except Stopped:
                    return
                registered.append(user)

        shown = Phase("registering", len(users), lambda: len(registered), "users")
        self.registration_s = await self.phase(shown, [worker(c) for c in clients])
        return sorted(registered, key=lambda u: u.n)

    async def load(self, mix: Mix, clients: list[AsyncClient], users: list[SimUser]) -> float:
        idle = deque(users)

        async def worker(api: AsyncClient) -> None:
            # There are at least as many users as workers, so one is always idle here.
            while not self.control.stop.is_set():
                # Let the timer, the progress view and the other workers in even
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
                    idle.extend(mix.joined)
                    mix.joined.clear()
                if pause:
                    with contextlib.suppress(Stopped):
                        await self.control.pause(pause)

        async def timer() -> None:
            # Wakes workers waiting out a Retry-After; take() sees the deadline too.
            with contextlib.suppress(Stopped):
                await self.control.pause(self.config.duration_s)
                self.control.end("duration")

        start = time.monotonic()
        self.control.deadline = start + self.config.duration_s
        workers = [worker(c) for c in clients[: len(users)]]
        shown = Phase("load", self.config.duration_s, lambda: time.monotonic() - start, "s")
        return await self.phase(shown, [timer(), *workers])

    async def sample_fill(self, reader: ClusterReader, finished: asyncio.Event) -> None:
        """Each shard's users and capacity every ``FILL_INTERVAL_S`` until ``finished``."""
        interval = min(FILL_INTERVAL_S, self.config.progress_interval_s)
        t0 = self.tally.timeline.t0 or time.monotonic()
        for _ in range(MAX_FILL_SAMPLES):
            self.fill.append((time.monotonic() - t0, await reader.fill()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), interval)
            if finished.is_set():
                return

    async def registration_and_load(
        self, mix: Mix, clients: list[AsyncClient], users: list[SimUser], reader: ClusterReader
    ) -> tuple[list[SimUser], float]:
        """Register the users, then load as them; the registered users and the load's seconds.

        The shards' fill is sampled all along, the first registration to the end.
        """
        self.tally.timeline.start()
        finished = asyncio.Event()
        load_s = 0.0
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.sample_fill(reader, finished))
            try:
                registered = await self.register_all(mix, clients, users)
                if registered and not self.control.stop.is_set():
                    self.say(
                        f"canistry loadtest: {len(registered):,} users registered; loading for "
                        f"{self.config.duration_s:g} s with "
                        f"{min(len(clients), len(registered))} workers"
                    )
                    self.tally.timeline.mark("load")
                    load_s = await self.load(mix, clients, registered)
            finally:
                finished.set()
        return registered, load_s

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
            # Its own client, which never waits out a 503: samples must not hold up the run.
            reader = ClusterReader(await stack.enter_async_context(self.client()), config.data_dir)
            before = await reader.snapshot()
            known = sum(1 for u in catalogue if u in book)
            self.say(
                f"canistry loadtest: {config.gateway} lists {len(catalogue)} units "
                f"({known} with answers known from the sample pack), {len(before.shards)} "
                f"shards; registering {config.users:,} users with {config.workers} workers; "
                f"mix {config.mix}"
            )
            clients = [
                await stack.enter_async_context(self.client()) for _ in range(config.workers)
            ]
            mix = Mix(self.driver, book, catalogue, subjects, self.rng, config.mix)
            users = [SimUser(n, Identity.generate()) for n in range(config.users)]
            try:
                registered, load_s = await self.registration_and_load(mix, clients, users, reader)
            finally:
                if self.view is not None:
                    self.view.close()
            after = await reader.snapshot()
            if reader.note is not None:
                self.say(f"canistry loadtest: {reader.note}")
        return build_report(
            config=config,
            tally=self.tally,
            users_registered=len(registered),
            workers=min(config.workers, len(registered)),
            units=len(catalogue),
            registration_s=self.registration_s,
            load_s=load_s,
            stopped_by=self.control.stopped_by,
            users_signed_up=mix.signed_up,
            cluster=shard_figures(before, after),
            fill=self.fill,
        )


def _view(config: LoadTestConfig, err: TextIO | None) -> View | None:
    if err is None:
        return None
    if config.live is None:
        return Bar(err) if err.isatty() else Lines(err, config.progress_interval_s)
    if config.live:  # asked for: drawn as on a terminal, wherever stderr goes
        return Bar(err, force_terminal=True)
    return Lines(err, config.progress_interval_s)


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
    if config.plot is not None:
        from canistry.loadtest._plot import plot_run

        try:
            plot_run(report, config.plot)
            print(f"plot: {config.plot}", file=out)
        except (OSError, ValueError) as exc:
            print(f"canistry loadtest: cannot draw the plot: {exc}", file=err)
            status = 1
    if report["users_registered"] == 0:
        print("canistry loadtest: no user could register; nothing was loaded", file=err)
        status = 1
    return status
