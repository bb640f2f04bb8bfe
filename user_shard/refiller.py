"""The background task that keeps a shard's allowance topped up from the hub.

One loop, owned by the service: when the ledger says a refill is due, it
records the request durably first (sequence number, amount, the credits to
report), then asks the hub, retrying that same request with capped
exponential backoff until it is answered; the hub is idempotent per
(shard, seq), so a retry or a restart never gets a second grant. The answer
is applied once, in one transaction that also settles waiting users.

Submissions never wait for this loop: with the hub down they keep paying
from the allowance, then as pending (docs/design.md §6, invariant 6).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from runtime import logs
from runtime.errors import CanistryError
from user_shard import microbank
from user_shard.store import ShardStore

__all__ = ["AskHub", "Refiller"]

log = logs.get_logger(__name__)

#: Sends one allowance request and returns the tokens granted; raises on failure.
AskHub = Callable[[microbank.AllowanceRequest], Awaitable[int]]

_FIRST_RETRY_S = 0.05


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
    ) -> None:
        self._store = store
        self._policy = policy
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
        request = await self._store.begin_allowance_request(
            self._policy, self._mint_rate.rate(self._monotonic())
        )
        if request is None:
            await self._wake.wait()
            return
        granted = await self._ask_until_answered(request)
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
        if granted == 0:
            # The treasury is spent (or this shard is refused): asking again
            # at once would only load the hub.
            await asyncio.sleep(self._policy.refill_target_s)

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
