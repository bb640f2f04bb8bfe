"""The background task that keeps a shard's allowance topped up from the hub.

One loop, owned by the service: when the ledger says a refill is due, it
records the request durably first (sequence number, amount, the credits to
report), then asks the hub, retrying that same request with capped
exponential backoff until it is answered; the hub is idempotent per
(shard, seq), so a retry or a restart never gets a second grant. The answer
is applied once, in one transaction that also settles waiting users.

Each request carries the credits not yet reported (``staked_delta``), which
is how the hub's total staked grows. So that the figure does not wait for the
next refill (minutes at a steady rate, forever on a quiet shard), the loop
also sends a *report*: an allowance request for 0 tokens, recorded and
retried like any other, sent when credits are unreported and either none
came for ``report_quiet_s`` (the burst is over) or the last request was
answered ``refill_target_s`` ago (steady load). A refill that is due then
asks for its amount as usual and carries the credits itself.

Submissions never wait for this loop: with the hub down they keep paying
from the allowance, then as pending (docs/design.md §6, invariant 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from protos import shard_pb2
from runtime import logs
from runtime.errors import CanistryError
from user_shard import microbank
from user_shard.store import ShardStore

__all__ = ["AskHub", "Refiller"]

log = logs.get_logger(__name__)

#: Sends one allowance request and returns the tokens granted; raises on failure.
AskHub = Callable[[microbank.AllowanceRequest], Awaitable[int]]

_FIRST_RETRY_S = 0.05


@dataclass(frozen=True)
class _WithReport(microbank.RefillPolicy):
    """The refill policy, plus: unreported credits alone make a request (for 0 tokens)."""

    def needs_refill(self, ledger: shard_pb2.Ledger) -> bool:
        return super().needs_refill(ledger) or ledger.unreported_staked > 0

    def amount(self, ledger: shard_pb2.Ledger, mint_rate: float) -> int:
        return super().amount(ledger, mint_rate) if super().needs_refill(ledger) else 0


class Refiller:
    """Asks the hub for allowance whenever the ledger needs it. Run :meth:`run` as a task."""

    def __init__(
        self,
        store: ShardStore,
        policy: microbank.RefillPolicy,
        mint_rate: microbank.MintRate,
        ask_hub: AskHub,
        *,
        retry_max_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        report_quiet_s: float = 2.0,
    ) -> None:
        """``report_quiet_s``: how long without a credit before unreported credits are
        reported on their own (see the module doc)."""
        self._store = store
        self._policy = policy
        self._reporting = _WithReport(
            policy.base_allowance, policy.low_water_fraction, policy.refill_target_s
        )
        self._report_quiet_s = report_quiet_s
        self._answered_at = monotonic()
        """When the hub last answered a request (each one reports the credits it carries)."""
        self._report_due = False
        self._mint_rate = mint_rate
        self._ask_hub = ask_hub
        self._retry_max_s = retry_max_s
        self._monotonic = monotonic
        self._wake = asyncio.Event()
        self._unrecorded_calls = 0
        self.calls_sent = 0
        """Hub calls since this refiller was made, retries included."""
        self.grants_applied = 0

    @property
    def unrecorded_calls(self) -> int:
        """Hub calls made for the request in flight, not yet added to ``Ledger.hub_calls``."""
        return self._unrecorded_calls

    def wake(self) -> None:
        """Look at the ledger now (a submission dropped it below low water or left pending)."""
        self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled. Resumes a request left in flight by a previous run.

        Never ends on its own: a failed round (the store refusing a write,
        a bug) is logged and retried after the longest backoff, since a
        shard without its refiller would slowly stop paying rewards.
        """
        while True:
            try:
                await self._round()
            except Exception:
                log.exception("allowance_round_failed")
                await asyncio.sleep(self._retry_max_s)

    async def _round(self) -> None:
        # Cleared before reading the ledger: a submission committed after the
        # read sets it again, so no wake-up is lost.
        self._wake.clear()
        policy = self._reporting if self._report_due else self._policy
        self._report_due = False
        request = await self._store.begin_allowance_request(
            policy, self._mint_rate.rate(self._monotonic())
        )
        if request is None:
            await self._idle()
            return
        granted = await self._ask_until_answered(request)
        self._answered_at = self._monotonic()
        ledger = await self._store.apply_grant(request.seq, granted, self._unrecorded_calls)
        self._unrecorded_calls = 0
        self.grants_applied += 1
        log.info(
            "allowance_granted",
            seq=request.seq,
            asked=request.amount,
            granted=granted,
            allowance=ledger.allowance_remaining,
            pending_total=ledger.pending_total,
        )
        if granted == 0 and request.amount > 0:
            # The treasury is spent (or this shard is refused): asking again
            # at once would only load the hub.
            await asyncio.sleep(self._policy.refill_target_s)

    async def _idle(self) -> None:
        """Wait for a wake-up, or until unreported credits are due for a report.

        Looks at the ledger every ``report_quiet_s`` (a read, no write): a
        report is due when credits are unreported and none came since the
        last look, or the last request was answered ``refill_target_s`` ago.
        """
        seen = -1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._report_quiet_s)
                return
            unreported = self._store.ledger().unreported_staked
            stale = self._monotonic() - self._answered_at >= self._policy.refill_target_s
            if unreported > 0 and (unreported == seen or stale):
                self._report_due = True
                return
            seen = unreported

    async def _ask_until_answered(self, request: microbank.AllowanceRequest) -> int:
        delay = min(_FIRST_RETRY_S, self._retry_max_s)
        while True:
            self._unrecorded_calls += 1
            self.calls_sent += 1
            try:
                return await self._ask_hub(request)
            except CanistryError as exc:
                log.warning("allowance_request_failed", seq=request.seq, error=exc.message)
            except Exception:
                log.exception("allowance_request_crashed", seq=request.seq)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max_s)
