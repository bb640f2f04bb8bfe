"""The shard's micro-bank: rewards paid from a local allowance the hub grants.

Pure rules on the :class:`~protos.shard_pb2.Ledger` record (one per shard)
and the users' :class:`~protos.shard_pb2.UserRecord`; no I/O.

- A reward is credited from ``allowance_remaining``. When the allowance does
  not cover it, or others are already waiting, it waits as the user's
  ``pending`` (and in ``pending_total``): never lost, never overspent.
- Allowance comes only from grants. Each request to the hub has a sequence
  number; a grant is applied at most once per number, then the waiting users
  are settled first come, first served, each user's whole pending at once.
- So at all times ``granted_total == allowance_remaining + credited_total``
  (docs/design.md §6, invariant 2): no token is made anywhere else.
- Requests are sized from the observed mint rate, so a shard asks the hub
  about once a minute whatever its load.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from protos import shard_pb2

__all__ = [
    "AllowanceRequest",
    "MintRate",
    "RefillPolicy",
    "apply_grant",
    "begin_request",
    "credit",
    "inflight",
    "is_balanced",
    "new_ledger",
    "settle",
]

K = TypeVar("K")


def new_ledger() -> shard_pb2.Ledger:
    """The ledger of a shard that has never been granted anything."""
    return shard_pb2.Ledger(next_seq=1)


def is_balanced(ledger: shard_pb2.Ledger) -> bool:
    """Invariant 2: every granted token is either still allowance or credited."""
    return ledger.granted_total == ledger.allowance_remaining + ledger.credited_total


def credit(ledger: shard_pb2.Ledger, user: shard_pb2.UserRecord, reward: int) -> bool:
    """Pay ``reward`` to ``user``, from the allowance if possible, else as pending.

    While anyone is waiting, new rewards wait behind them, so settlement stays
    first come, first served. Returns True when ``user`` has just started
    waiting and must join the pending queue.
    """
    if reward <= 0:
        return False
    if ledger.pending_total == 0 and ledger.allowance_remaining >= reward:
        ledger.allowance_remaining -= reward
        ledger.credited_total += reward
        ledger.unreported_staked += reward
        user.staked += reward
        return False
    newly_waiting = user.pending == 0
    user.pending += reward
    ledger.pending_total += reward
    return newly_waiting


def settle(
    ledger: shard_pb2.Ledger, waiting: Iterable[tuple[K, shard_pb2.UserRecord]]
) -> list[tuple[K, shard_pb2.UserRecord]]:
    """Credit waiting users in queue order while the allowance covers each one's whole pending.

    ``waiting`` yields (queue key, user) oldest first and is consumed lazily:
    settlement stops at the first user whose pending does not fit, so nobody
    is overtaken. Returns the settled entries, users already updated; the
    caller writes them back and drops their queue keys.
    """
    settled: list[tuple[K, shard_pb2.UserRecord]] = []
    for key, user in waiting:
        amount = user.pending
        if amount > ledger.allowance_remaining:
            break
        ledger.allowance_remaining -= amount
        ledger.credited_total += amount
        ledger.unreported_staked += amount
        ledger.pending_total -= amount
        user.staked += amount
        user.pending = 0
        settled.append((key, user))
    return settled


@dataclass(frozen=True)
class AllowanceRequest:
    """One request to the hub; retried unchanged until it is answered."""

    seq: int
    amount: int
    staked_delta: int


def inflight(ledger: shard_pb2.Ledger) -> AllowanceRequest | None:
    """The request sent (or about to be) and not yet applied, if any."""
    seq = ledger.next_seq - 1
    if seq <= ledger.last_applied_seq:
        return None
    return AllowanceRequest(seq, ledger.inflight_amount, ledger.inflight_staked_delta)


def begin_request(ledger: shard_pb2.Ledger, amount: int) -> AllowanceRequest:
    """Record a new request before it is sent, so a restart resends the same one.

    The credits not yet reported travel with it (batched stats) and are
    reported exactly once, because the hub is idempotent per sequence number.
    Raises ValueError if a request is already in flight.
    """
    if inflight(ledger) is not None:
        raise ValueError("an allowance request is already in flight")
    if ledger.next_seq == 0:  # a ledger not made by new_ledger()
        ledger.next_seq = 1
    seq = ledger.next_seq
    ledger.next_seq += 1
    ledger.inflight_amount = amount
    ledger.inflight_staked_delta = ledger.unreported_staked
    ledger.unreported_staked = 0
    return AllowanceRequest(seq, amount, ledger.inflight_staked_delta)


def apply_grant(ledger: shard_pb2.Ledger, seq: int, granted: int) -> bool:
    """Add the hub's answer to request ``seq`` to the allowance, once.

    Returns False (and changes nothing) if ``seq`` was applied already.
    Raises ValueError for a grant to a request that is not in flight.
    """
    if seq <= ledger.last_applied_seq:
        return False
    current = inflight(ledger)
    if current is None or current.seq != seq:
        raise ValueError(f"grant for seq {seq}, but in flight is {current}")
    ledger.allowance_remaining += granted
    ledger.granted_total += granted
    ledger.last_applied_seq = seq
    ledger.last_grant = granted
    ledger.inflight_amount = 0
    ledger.inflight_staked_delta = 0
    return True


@dataclass(frozen=True)
class RefillPolicy:
    """When to ask the hub for more allowance, and how much."""

    base_allowance: int
    low_water_fraction: float
    refill_target_s: float

    def low_water(self, ledger: shard_pb2.Ledger) -> int:
        reference = ledger.last_grant or self.base_allowance
        return math.ceil(self.low_water_fraction * reference)

    def needs_refill(self, ledger: shard_pb2.Ledger) -> bool:
        """True when someone waits, or the allowance is below the low-water mark."""
        return ledger.pending_total > 0 or ledger.allowance_remaining < self.low_water(ledger)

    def amount(self, ledger: shard_pb2.Ledger, mint_rate: float) -> int:
        """Enough for twice the refill target at ``mint_rate`` tokens/s, plus what waits.

        With the low-water mark at a fraction of the last grant, the next
        request comes about ``refill_target_s * 2 * (1 - low_water_fraction)``
        seconds later at a steady rate, so hub traffic does not grow with load.
        """
        sized = math.ceil(mint_rate * self.refill_target_s * 2)
        return max(self.base_allowance, sized) + ledger.pending_total


class MintRate:
    """Tokens earned per second over a sliding window, in one-second buckets.

    Memory is bounded by the window whatever the load. The caller passes the
    time, so tests run on a fake clock.
    """

    def __init__(self, window_s: float) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.window_s = window_s
        self._buckets: collections.deque[tuple[int, int]] = collections.deque()
        self._sum = 0

    def record(self, tokens: int, now_s: float) -> None:
        second = int(now_s)
        if self._buckets and self._buckets[-1][0] == second:
            _, total = self._buckets.pop()
            self._buckets.append((second, total + tokens))
        else:
            self._buckets.append((second, tokens))
        self._sum += tokens
        self._expire(now_s)

    def rate(self, now_s: float) -> float:
        """Tokens per second earned in the last window (0 before anything was earned)."""
        self._expire(now_s)
        return self._sum / self.window_s

    def _expire(self, now_s: float) -> None:
        horizon = now_s - self.window_s
        while self._buckets and self._buckets[0][0] + 1 <= horizon:
            _, total = self._buckets.popleft()
            self._sum -= total
