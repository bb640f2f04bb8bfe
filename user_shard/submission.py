"""What one quiz submission does to a user and the shard's ledger. Pure.

The store runs :func:`record_submission` inside the write transaction, on
the freshest user record, so the daily limits hold however many submissions
of one user race (docs/design.md §6, invariant 5); and a unit pays at most once
(invariant 3) because the completion and the credit are written together.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos import shard_pb2
from runtime.errors import IdempotencyKeyReused
from user_shard import microbank
from user_shard.limits import DailyLimits, today

__all__ = ["Recorded", "Verdict", "precheck", "record_submission", "replay"]


@dataclass(frozen=True)
class Verdict:
    """The content service's judgement of the answers."""

    passed: bool
    score: int
    total: int
    reward: int


@dataclass(frozen=True)
class Recorded:
    reply: shard_pb2.SubmitQuizReply
    earned: int
    """Tokens this submission earned (credited or pending)."""
    newly_waiting: bool
    """The user has just started waiting for allowance: enqueue them."""


def replay(stored: shard_pb2.StoredReply, fingerprint: bytes) -> shard_pb2.SubmitQuizReply:
    """The first reply to an idempotency key, if this request is the same one.

    Raises :class:`IdempotencyKeyReused` when the key came with another request.
    """
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused("this idempotency key was used for a different submission")
    return stored.reply


def precheck(user: shard_pb2.UserRecord, limits: DailyLimits, now_ms: int) -> None:
    """Fail fast, before calling the content service, if no attempt is left today."""
    limits.check_attempt(today(user.today, now_ms))


def record_submission(
    user: shard_pb2.UserRecord,
    ledger: shard_pb2.Ledger,
    unit_id: str,
    verdict: Verdict,
    limits: DailyLimits,
    now_ms: int,
) -> Recorded:
    """Record the attempt and, on a first pass, the completion and its reward.

    Raises :class:`~runtime.errors.DailyLimitExceeded`, before changing
    anything, when no attempt is left or a pass would earn past the token
    limit. A pass of a unit completed before earns nothing.
    """
    stats = shard_pb2.DailyStats()
    stats.CopyFrom(today(user.today, now_ms))
    limits.check_attempt(stats)
    first_completion = verdict.passed and unit_id not in user.completed_units
    reward = verdict.reward if first_completion else 0
    limits.check_earning(stats, reward)

    stats.attempts += 1
    newly_waiting = False
    if first_completion:
        user.completed_units.append(unit_id)
        stats.earned += reward
        newly_waiting = microbank.credit(ledger, user, reward)
        if reward > 0:
            ledger.rewarded_submissions += 1
    user.today.CopyFrom(stats)
    reply = shard_pb2.SubmitQuizReply(
        passed=verdict.passed,
        score=verdict.score,
        total=verdict.total,
        reward=reward,
        first_completion=first_completion,
        balance=user.staked,
        pending=user.pending,
        attempts_today=stats.attempts,
        attempts_left=limits.attempts_left(stats),
    )
    return Recorded(reply, reward, newly_waiting)
