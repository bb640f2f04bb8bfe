"""The governance rules, pure: thresholds, early decisions, wait-for-quiet, states.

All three proposal kinds are critical, as on SNS (docs/design.md §4):

- at the deadline a proposal is adopted if yes >= 67% of the votes cast and
  yes >= 20% of the total voting power (snapshotted at creation); otherwise
  it is rejected;
- it is adopted early once yes >= 67% of the total voting power, and
  rejected early once no > 33% of it: no later vote could change the outcome
  any more;
- wait for quiet: a vote that flips the outcome the deadline would give,
  cast in the last quarter of the voting period, moves the deadline to a
  quarter period after that vote (never past twice the period), so a late
  swing leaves the other side time to answer.

Percentages are compared in integers (``yes * 100 >= 67 * cast``), so no
rounding decides a vote. Nothing here reads a clock or a store: callers pass
``now_ms`` and a proposal, and get a new proposal back.
"""

from __future__ import annotations

from typing import TypeAlias

from protos import hub_pb2
from runtime.errors import InvalidArgument, ProposalDecided

__all__ = [
    "ADOPT_PERCENT",
    "KINDS",
    "MIN_PARTICIPATION_PERCENT",
    "REJECT_PERCENT",
    "STATE_NAMES",
    "at_deadline",
    "cast",
    "early",
    "quiet_ms",
    "settle",
    "validate_action",
]

#: Yes share (of votes cast at the deadline, or of the total to decide early) that adopts.
ADOPT_PERCENT = 67
#: Yes share of the total voting power a proposal needs at the deadline.
MIN_PARTICIPATION_PERCENT = 20
#: No share of the total voting power past which a proposal is rejected early.
REJECT_PERCENT = 33

DISABLE, ENABLE, UPGRADE = "disable_shard", "enable_shard", "upgrade_shards"
KINDS = (DISABLE, ENABLE, UPGRADE)
MAX_TITLE = 256
MAX_SUMMARY = 10_000

S = hub_pb2.ProposalState
OPEN = S.PROPOSAL_STATE_OPEN
ADOPTED = S.PROPOSAL_STATE_ADOPTED
REJECTED = S.PROPOSAL_STATE_REJECTED
EXECUTING = S.PROPOSAL_STATE_EXECUTING
EXECUTED = S.PROPOSAL_STATE_EXECUTED
FAILED = S.PROPOSAL_STATE_FAILED

#: The names the HTTP API shows.
STATE_NAMES: dict[hub_pb2.ProposalState.ValueType, str] = {
    OPEN: "open",
    ADOPTED: "adopted",
    REJECTED: "rejected",
    EXECUTING: "executing",
    EXECUTED: "executed",
    FAILED: "failed",
}


def validate_action(action: hub_pb2.ProposalAction, title: str, summary: str) -> None:
    """Check a proposal's shape. Raises :class:`InvalidArgument`."""
    if action.kind not in KINDS:
        raise InvalidArgument(f"action.kind must be one of {', '.join(KINDS)}")
    if action.kind in (DISABLE, ENABLE) and not action.shard_id:
        raise InvalidArgument(f"{action.kind} needs action.shard")
    if action.kind == UPGRADE and not action.template:
        raise InvalidArgument("upgrade_shards needs action.template")
    if not title.strip() or len(title) > MAX_TITLE:
        raise InvalidArgument(f"title must be 1..{MAX_TITLE} characters")
    if len(summary) > MAX_SUMMARY:
        raise InvalidArgument(f"summary must be at most {MAX_SUMMARY} characters")


State: TypeAlias = hub_pb2.ProposalState.ValueType


def at_deadline(yes: int, no: int, total: int) -> State:
    """ADOPTED or REJECTED, as decided when the voting period ends."""
    cast_ = yes + no
    adopted = (
        yes > 0
        and yes * 100 >= ADOPT_PERCENT * cast_
        and yes * 100 >= MIN_PARTICIPATION_PERCENT * total
    )
    return ADOPTED if adopted else REJECTED


def early(yes: int, no: int, total: int) -> State | None:
    """ADOPTED or REJECTED once the outcome is certain before the deadline, else None."""
    if yes > 0 and yes * 100 >= ADOPT_PERCENT * total:
        return ADOPTED
    if no > 0 and no * 100 > REJECT_PERCENT * total:
        return REJECTED
    return None


def quiet_ms(voting_period_ms: int) -> int:
    """How long before the deadline a swing extends it, and by how much."""
    return max(1, voting_period_ms // 4)


def cast(
    proposal: hub_pb2.Proposal, *, yes: bool, power: int, now_ms: int, voting_period_ms: int
) -> hub_pb2.Proposal:
    """``proposal`` after one vote of ``power``: tallied, maybe extended, maybe decided.

    Raises :class:`ProposalDecided` if it is no longer open (or its deadline passed).
    """
    if proposal.state != OPEN or now_ms >= proposal.deadline_ms:
        raise ProposalDecided(f"proposal {proposal.id} is decided")
    after = hub_pb2.Proposal()
    after.CopyFrom(proposal)
    if yes:
        after.yes += power
    else:
        after.no += power
    total = proposal.total_voting_power
    swung = at_deadline(proposal.yes, proposal.no, total) != at_deadline(after.yes, after.no, total)
    quiet = quiet_ms(voting_period_ms)
    if swung and proposal.deadline_ms - now_ms < quiet:
        latest = proposal.created_at_ms + 2 * voting_period_ms
        after.deadline_ms = max(proposal.deadline_ms, min(now_ms + quiet, latest))
    decided = early(after.yes, after.no, total)
    if decided is not None:
        after.state = decided
        after.decided_at_ms = now_ms
    return after


def settle(proposal: hub_pb2.Proposal, now_ms: int) -> hub_pb2.Proposal | None:
    """The proposal decided at its deadline, or None if it is not open or not due yet."""
    if proposal.state != OPEN or now_ms < proposal.deadline_ms:
        return None
    after = hub_pb2.Proposal()
    after.CopyFrom(proposal)
    after.state = at_deadline(proposal.yes, proposal.no, proposal.total_voting_power)
    after.decided_at_ms = now_ms
    return after
