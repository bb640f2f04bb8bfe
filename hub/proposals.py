"""The hub's governance operations: make proposals, count votes, decide, carry out.

:class:`Governance` is what the gRPC edge calls for proposals and vote
batches, and it owns one loop (:meth:`Governance.run`) that decides
proposals whose deadline passed and carries out adopted ones, one at a time,
through an :class:`Execute` callable (:mod:`hub.execution`). The rules are
in :mod:`hub.governance`, the records in :mod:`hub.proposal_store`.

Everything it may change is named by an adopted proposal: no operation here
takes a setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hub import governance
from hub.clock import Clock, wall_clock_ms
from hub.proposal_store import ProposalStore
from hub.store import HubStore
from hub.treasury import check_caller
from protos import hub_pb2
from runtime import logs
from runtime.errors import CanistryError, InvalidArgument, NotEnoughStake
from runtime.tls import Identity

__all__ = ["Execute", "Governance", "GovernancePolicy", "ResolveTemplate"]

log = logs.get_logger(__name__)

#: Carries out an adopted proposal; returns the per-shard results and whether all went well.
Execute = Callable[[hub_pb2.Proposal], Awaitable[tuple[bool, list[hub_pb2.ShardResult], str]]]
#: Checks an upgrade template now; returns the version it runs. Raises InvalidArgument.
ResolveTemplate = Callable[[str], Awaitable[str]]

MAX_PAGE = 100
MAX_VOTES_PER_BATCH = 1000


@dataclass(frozen=True)
class GovernancePolicy:
    """The governance part of the stored init config."""

    voting_period_s: float
    """How long a proposal stays open (wait-for-quiet may extend it)."""
    proposal_min_stake: int
    """The least staked balance that may make a proposal."""
    tick_s: float = 0.2
    """How often the loop looks for proposals due for a decision."""

    @property
    def voting_period_ms(self) -> int:
        return max(1, int(self.voting_period_s * 1000))


class Governance:
    """Proposals, votes and their execution over the hub's store."""

    def __init__(
        self,
        store: HubStore,
        cap: int,
        policy: GovernancePolicy,
        *,
        known_shard: Callable[[str], bool],
        resolve_template: ResolveTemplate,
        execute: Execute,
        clock: Clock = wall_clock_ms,
    ) -> None:
        self.hub_store = store
        self.proposals = ProposalStore(store)
        self.cap = cap
        self.policy = policy
        self._known_shard = known_shard
        self._resolve = resolve_template
        self._execute = execute
        self.clock = clock
        self._wake = asyncio.Event()

    # -- the RPCs --------------------------------------------------------------

    async def create(self, request: hub_pb2.CreateProposalRequest) -> hub_pb2.Proposal:
        """Open a proposal, snapshotting the total voting power.

        Raises :class:`InvalidArgument` (bad shape, unknown shard, a template
        that cannot be resolved) or :class:`NotEnoughStake`.
        """
        action = hub_pb2.ProposalAction()
        action.CopyFrom(request.action)
        governance.validate_action(action, request.title, request.summary)
        if not request.proposer:
            raise InvalidArgument("proposer is required")
        if request.proposer_stake < max(1, self.policy.proposal_min_stake):
            raise NotEnoughStake(
                f"proposing needs a stake of at least {max(1, self.policy.proposal_min_stake)}; "
                f"{request.proposer} has {request.proposer_stake}"
            )
        if action.kind != governance.UPGRADE and not self._known_shard(action.shard_id):
            raise InvalidArgument(f"no shard {action.shard_id!r} in this cluster")
        if action.kind == governance.UPGRADE:
            action.shard_id = ""
            action.template_version = await self._resolve(action.template)
        total = self.hub_store.treasury(self.cap).total_staked
        now = self.clock()

        def build(proposal_id: int) -> hub_pb2.Proposal:
            return hub_pb2.Proposal(
                id=proposal_id,
                action=action,
                title=request.title,
                summary=request.summary,
                proposer=request.proposer,
                state=governance.OPEN,
                total_voting_power=total,
                created_at_ms=now,
                deadline_ms=now + self.policy.voting_period_ms,
            )

        proposal = await self.proposals.create(build)
        log.info(
            "proposal_created",
            id=proposal.id,
            kind=action.kind,
            shard_id=action.shard_id,
            template_version=action.template_version,
            total_voting_power=total,
        )
        return proposal

    def get(self, proposal_id: int) -> hub_pb2.Proposal:
        """Raises :class:`~runtime.errors.UnknownProposal`."""
        return self.proposals.get(proposal_id)

    def page(self, request: hub_pb2.ListProposalsRequest) -> hub_pb2.ProposalPage:
        limit = min(MAX_PAGE, request.limit or 20)
        found, next_before = self.proposals.page(request.before, limit)
        return hub_pb2.ProposalPage(proposals=found, next_before=next_before)

    async def report_votes(
        self, batch: hub_pb2.VoteBatch, caller: Identity | None = None
    ) -> hub_pb2.VoteBatchReply:
        """Count a shard's batch of votes, each once. Only a shard reports, in its own name."""
        check_caller(caller, batch.shard_id)
        if len(batch.votes) > MAX_VOTES_PER_BATCH:
            raise InvalidArgument(f"at most {MAX_VOTES_PER_BATCH} votes per batch")
        counts = await self.proposals.count(
            list(batch.votes), now_ms=self.clock(), voting_period_ms=self.policy.voting_period_ms
        )
        reply = hub_pb2.VoteBatchReply()
        for vote, count in zip(batch.votes, counts, strict=True):
            out = reply.outcomes.add(
                proposal_id=vote.proposal_id, principal=vote.principal, status=count.status
            )
            if count.proposal is not None:
                out.yes, out.no, out.state = (
                    count.proposal.yes,
                    count.proposal.no,
                    count.proposal.state,
                )
                if count.status == "counted" and count.proposal.state != governance.OPEN:
                    self._wake.set()
        return reply

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        """Decide due proposals and carry out adopted ones, until cancelled."""
        while True:
            try:
                await self.step()
            except CanistryError as exc:  # the store or a peer: try again next tick
                log.warning("governance_step_failed", error=exc.message)
            except Exception:  # a bug must not end governance: log it whole, keep going
                log.exception("governance_step_crashed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.policy.tick_s)
            except TimeoutError:
                pass

    async def step(self) -> None:
        """One pass: settle what is due, then execute what is adopted (oldest first)."""
        for proposal in self.proposals.unfinished():
            if proposal.state == governance.OPEN:
                now = self.clock()
                decided = governance.settle(proposal, now)
                if decided is None:
                    continue
                proposal = await self.proposals.update(proposal.id, _settler(now))
                log.info(
                    "proposal_decided",
                    id=proposal.id,
                    state=governance.STATE_NAMES[proposal.state],
                    yes=proposal.yes,
                    no=proposal.no,
                    total_voting_power=proposal.total_voting_power,
                )
            if proposal.state in (governance.ADOPTED, governance.EXECUTING):
                await self._carry_out(proposal)

    async def _carry_out(self, proposal: hub_pb2.Proposal) -> None:
        def executing(p: hub_pb2.Proposal) -> hub_pb2.Proposal:
            p.state = governance.EXECUTING
            return p

        proposal = await self.proposals.update(proposal.id, executing)
        log.info("proposal_executing", id=proposal.id, kind=proposal.action.kind)
        ok, results, detail = await self._execute(proposal)

        def done(p: hub_pb2.Proposal) -> hub_pb2.Proposal:
            p.state = governance.EXECUTED if ok else governance.FAILED
            del p.results[:]
            p.results.extend(results)
            p.detail = detail
            return p

        proposal = await self.proposals.update(proposal.id, done)
        log.info(
            "proposal_executed" if ok else "proposal_failed",
            id=proposal.id,
            kind=proposal.action.kind,
            detail=detail,
        )


def _settler(now_ms: int) -> Callable[[hub_pb2.Proposal], hub_pb2.Proposal | None]:
    def settle(p: hub_pb2.Proposal) -> hub_pb2.Proposal | None:
        return governance.settle(p, now_ms)

    return settle
