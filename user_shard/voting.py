"""Reporting the votes a shard recorded to the hub, many per call.

A vote is recorded durably first (:meth:`ShardStore.record_vote`), then
reported. :class:`VoteReporter` sends every unreported vote in one
``ReportVotes`` call; votes cast while a call is in flight leave together
in the next one, as group commit merges writes. The hub counts each
(proposal, principal) once, so a batch sent twice (a lost reply, a restart)
changes nothing. A vote the hub could not be told of now stays recorded and
unreported, and :meth:`VoteReporter.run` sends it later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError, Unavailable
from user_shard.store import ShardStore

__all__ = ["SendVotes", "VoteReporter"]

log = logs.get_logger(__name__)

#: Sends one batch of votes to the hub; one outcome per vote, in order.
SendVotes = Callable[[Sequence[hub_pb2.Vote]], Awaitable[Sequence[hub_pb2.VoteOutcome]]]

_Key = tuple[int, bytes]


class VoteReporter:
    """Reports recorded votes through ``send``; callers wait for their own vote's outcome."""

    def __init__(
        self,
        store: ShardStore,
        send: SendVotes,
        *,
        max_batch: int = 500,
        retry_s: float = 2.0,
    ) -> None:
        self._store = store
        self._send = send
        self.max_batch = max_batch
        self.retry_s = retry_s
        self._waiters: dict[_Key, list[asyncio.Future[hub_pb2.VoteOutcome]]] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Calls sent to the hub (tests read it)."""

    async def report(self, proposal_id: int, principal: bytes) -> hub_pb2.VoteOutcome:
        """The hub's outcome for this recorded vote. Raises Unavailable when the hub
        cannot be told now (the vote stays recorded and is reported later)."""
        future: asyncio.Future[hub_pb2.VoteOutcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault((proposal_id, principal), []).append(future)
        if not self._in_flight:
            self._flush()
        return await future

    def _flush(self) -> None:
        task = asyncio.get_running_loop().create_task(self._run_batch(), name="vote-report")
        self._in_flight.add(task)
        task.add_done_callback(self._landed)

    def _landed(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if self._waiters and not task.cancelled():
            self._flush()

    async def _run_batch(self) -> None:
        waiting, self._waiters = self._waiters, {}
        try:
            sent = await self.send_unreported()
        except CanistryError as exc:
            for futures in waiting.values():
                for f in futures:
                    if not f.done():
                        f.set_exception(
                            Unavailable(
                                f"vote recorded; the hub will count it when it answers "
                                f"({exc.message})"
                            )
                        )
            return
        for key, futures in waiting.items():
            outcome = sent.get(key)
            if outcome is None:  # past this batch's size: wait for the next one
                self._waiters.setdefault(key, []).extend(futures)
                continue
            for f in futures:
                if not f.done():
                    f.set_result(outcome)

    async def send_unreported(self) -> dict[_Key, hub_pb2.VoteOutcome]:
        """Send up to ``max_batch`` unreported votes and record the hub's answers."""
        pending = await asyncio.to_thread(self._store.unreported_votes, self.max_batch)
        if not pending:
            return {}
        votes = [
            hub_pb2.Vote(
                proposal_id=pid,
                principal=principal.decode(),
                yes=vote.yes,
                voting_power=vote.voting_power,
            )
            for pid, principal, vote in pending
        ]
        self.batches += 1
        outcomes = await self._send(votes)
        if len(outcomes) != len(votes):
            raise Unavailable(f"the hub answered {len(outcomes)} of {len(votes)} votes")
        keyed = [((pid, who), o) for (pid, who, _), o in zip(pending, outcomes, strict=True)]
        await self._store.mark_reported([(pid, p, o.status) for (pid, p), o in keyed])
        return dict(keyed)

    async def run(self) -> None:
        """Every ``retry_s``, report votes left unreported (the hub was down). Until cancelled."""
        while True:
            await asyncio.sleep(self.retry_s)
            if self._in_flight:
                continue
            try:
                sent = await self.send_unreported()
            except CanistryError as exc:
                log.info("vote_report_failed", error=exc.message)
                continue
            if sent:
                log.info("votes_reported_late", votes=len(sent))

    async def close(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for futures in self._waiters.values():
            for f in futures:
                if not f.done():
                    f.cancel()
        self._waiters.clear()
