"""The proposal routes of docs/design.md §7: make proposals, read them, vote.

``POST /v1/proposals`` asks the proposer's shard for their stake and the hub
to open the proposal (403 below the hub's minimum stake, 400 for a template
that cannot be resolved). A vote goes to the voter's own shard, which knows
their stake, records the vote once and has the hub count it (403 with no
stake, 409 when already voted or decided). Reads are public and come from
the hub. Errors are raised, never built here: :mod:`gateway.edge` turns them
into problem documents.
"""

# No ``from __future__ import annotations``: the routes' parameter types are
# locals that FastAPI must see as objects, not as names to look up later.
import datetime
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from gateway.core import Gateway, Reply
from gateway.views import dumps
from protos import hub_pb2, shard_pb2
from runtime.errors import ProposalDecided
from runtime.rpc import rpc_errors

__all__ = ["install_governance_routes", "proposal_view"]

_STATES = {
    hub_pb2.PROPOSAL_STATE_OPEN: "open",
    hub_pb2.PROPOSAL_STATE_ADOPTED: "adopted",
    hub_pb2.PROPOSAL_STATE_REJECTED: "rejected",
    hub_pb2.PROPOSAL_STATE_EXECUTING: "executing",
    hub_pb2.PROPOSAL_STATE_EXECUTED: "executed",
    hub_pb2.PROPOSAL_STATE_FAILED: "failed",
}
_MAX_ID = 2**63 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Action(_Strict):
    kind: Literal["disable_shard", "enable_shard", "upgrade_shards"]
    shard: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    template: Annotated[str | None, Field(min_length=1, max_length=4096)] = None


class ProposalRequest(_Strict):
    """``POST /v1/proposals``."""

    action: Action
    title: Annotated[str, Field(min_length=1, max_length=256)]
    summary: Annotated[str, Field(max_length=10_000)] = ""


class VoteRequest(_Strict):
    """``POST /v1/proposals/{id}/votes``."""

    vote: Literal["yes", "no"]


class ShardResultView(BaseModel):
    shard: str
    ok: bool
    detail: str
    template_version: str


class ProposalView(BaseModel):
    id: int
    action: dict[str, Any]
    title: str
    summary: str
    proposer: str
    state: Literal["open", "adopted", "rejected", "executing", "executed", "failed"]
    yes: int
    no: int
    total_voting_power: int
    created_at: str
    deadline: str
    deadline_ms: int
    decided_at: str | None
    results: list[ShardResultView]
    detail: str


class ProposalPageView(BaseModel):
    proposals: list[ProposalView]
    next_cursor: str | None


class VoteResult(BaseModel):
    voting_power: int
    yes: int
    no: int
    state: str


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(
        timespec="milliseconds"
    )


def proposal_view(p: hub_pb2.Proposal) -> dict[str, Any]:
    action: dict[str, Any] = {"kind": p.action.kind}
    if p.action.shard_id:
        action["shard"] = p.action.shard_id
    if p.action.template:
        action["template"] = p.action.template
        action["template_version"] = p.action.template_version
    return {
        "id": p.id,
        "action": action,
        "title": p.title,
        "summary": p.summary,
        "proposer": p.proposer,
        "state": _STATES.get(p.state, "open"),
        "yes": p.yes,
        "no": p.no,
        "total_voting_power": p.total_voting_power,
        "created_at": _iso(p.created_at_ms),
        "deadline": _iso(p.deadline_ms),
        "deadline_ms": p.deadline_ms,
        "decided_at": _iso(p.decided_at_ms) if p.decided_at_ms else None,
        "results": [
            {
                "shard": r.shard_id,
                "ok": r.ok,
                "detail": r.detail,
                "template_version": r.template_version,
            }
            for r in p.results
        ],
        "detail": p.detail,
    }


class Proposals:
    """The governance calls of one gateway worker, over its :class:`Gateway`'s channels."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    @property
    def _deadline(self) -> float:
        return self.gw.config.rpc_deadline_s

    async def propose(self, principal: str, body: ProposalRequest) -> Reply:
        upstream = self.gw.upstream
        balance, _ = await upstream.on_shard(
            principal,
            lambda stub: stub.GetBalance(
                shard_pb2.GetBalanceRequest(principal=principal), timeout=self._deadline
            ),
        )
        request = hub_pb2.CreateProposalRequest(
            proposer=principal,
            proposer_stake=balance.staked,
            title=body.title,
            summary=body.summary,
            action=hub_pb2.ProposalAction(
                kind=body.action.kind,
                shard_id=body.action.shard or "",
                template=body.action.template or "",
            ),
        )
        async with rpc_errors("hub"):
            # Resolving an upgrade template runs it once: give the hub time.
            created = await upstream.hub.CreateProposal(request, timeout=self._deadline + 30)
        return Reply(201, dumps(proposal_view(created)))

    async def get(self, proposal_id: int) -> hub_pb2.Proposal:
        async with rpc_errors("hub"):
            found: hub_pb2.Proposal = await self.gw.upstream.hub.GetProposal(
                hub_pb2.GetProposalRequest(id=proposal_id), timeout=self._deadline
            )
        return found

    async def page(self, cursor: int, limit: int) -> bytes:
        async with rpc_errors("hub"):
            page = await self.gw.upstream.hub.ListProposals(
                hub_pb2.ListProposalsRequest(before=cursor, limit=limit), timeout=self._deadline
            )
        return dumps(
            {
                "proposals": [proposal_view(p) for p in page.proposals],
                "next_cursor": str(page.next_before) if page.next_before else None,
            }
        )

    async def vote(self, principal: str, proposal_id: int, yes: bool) -> bytes:
        proposal = await self.get(proposal_id)  # 404 for an unknown one
        if proposal.state != hub_pb2.PROPOSAL_STATE_OPEN:
            raise ProposalDecided(f"proposal {proposal_id} is {_STATES[proposal.state]}")
        request = shard_pb2.CastVoteRequest(principal=principal, proposal_id=proposal_id, yes=yes)
        reply, _ = await self.gw.upstream.on_shard(
            principal,
            lambda stub: stub.CastVote(request, timeout=self._deadline),
            retry_unreachable=False,
        )
        return dumps(
            {
                "voting_power": reply.voting_power,
                "yes": reply.yes,
                "no": reply.no,
                "state": _STATES.get(hub_pb2.ProposalState.ValueType(reply.state), "open"),
            }
        )


def install_governance_routes(
    app: FastAPI,
    *,
    signed: Any,
    idempotency_key: Any,
    problems: Callable[..., dict[int | str, dict[str, Any]]],
    json: Callable[..., Response],
) -> None:
    """Add the proposal routes to ``app``.

    ``signed`` is the dependency type that authenticates a request,
    ``idempotency_key`` the ``Idempotency-Key`` header's, ``problems`` builds
    the OpenAPI error responses and ``json`` sends a body: the app's own, so
    these routes behave as its others do.
    """
    ProposalId = Annotated[int, Path(ge=1, le=_MAX_ID)]

    def _proposals(request: Request) -> Proposals:
        gw: Gateway = request.app.state.gateway
        return Proposals(gw)

    @app.post(
        "/v1/proposals",
        status_code=201,
        response_model=ProposalView,
        responses=problems(400, 401, 403, 404, 409, 422, 503),
        summary="Make a proposal (stakers only)",
    )
    async def propose(
        body: ProposalRequest, req: signed, request: Request, key: idempotency_key = None
    ) -> Response:
        gw: Gateway = request.app.state.gateway
        reply = await gw.idempotent(
            req.caller, key, req.request, lambda: _proposals(request).propose(req.principal, body)
        )
        return json(reply.body, reply.status)

    @app.get(
        "/v1/proposals",
        response_model=ProposalPageView,
        responses=problems(422, 503),
        summary="Proposals, newest first, a page at a time",
    )
    async def proposals(
        request: Request,
        cursor: Annotated[int | None, Query(ge=1, le=_MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> Response:
        return json(await _proposals(request).page(cursor or 0, limit))

    @app.get(
        "/v1/proposals/{proposal_id}",
        response_model=ProposalView,
        responses=problems(404, 422, 503),
        summary="One proposal: its tally, state, deadline and per-shard results",
    )
    async def proposal(request: Request, proposal_id: ProposalId) -> Response:
        return json(dumps(proposal_view(await _proposals(request).get(proposal_id))))

    @app.post(
        "/v1/proposals/{proposal_id}/votes",
        response_model=VoteResult,
        responses=problems(400, 401, 403, 404, 409, 422, 503),
        summary="Vote with my staked balance",
    )
    async def vote(
        proposal_id: ProposalId, body: VoteRequest, req: signed, request: Request
    ) -> Response:
        return json(await _proposals(request).vote(req.principal, proposal_id, body.vote == "yes"))
