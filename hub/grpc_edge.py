"""The hub's gRPC edge: protobuf in, :class:`~hub.core.Hub` call, protobuf out.

Domain errors pass through untouched; ``runtime.rpc``'s edge maps them.
"""

from __future__ import annotations

from hub.core import Hub
from hub.proposals import Governance
from protos import hub_pb2, hub_pb2_grpc
from runtime.authz import ANY, Rules, caller
from runtime.rpc import Context
from runtime.tls import Role

__all__ = ["ACCESS", "HubServicer"]

_READERS = {Role.GATEWAY, Role.OPERATOR}

#: Who may call what (``runtime.authz``). Only shards ask for allowance, and
#: :meth:`Hub.request_allowance` then holds each to its own id and to the
#: shards this hub created. Anyone in the cluster may ask for a capacity check.
ACCESS: Rules = {
    "RequestAllowance": {Role.SHARD},
    "EnsureCapacity": ANY,
    "GetTreasury": _READERS,
    "ListHubShards": _READERS,
    "GetHubConfig": _READERS,
    # Governance: the gateway makes proposals in the name of the user who signed
    # the request; shards report the votes their users cast; anyone may read.
    "CreateProposal": {Role.GATEWAY},
    "GetProposal": ANY,
    "ListProposals": ANY,
    "ReportVotes": {Role.SHARD},
}


class HubServicer(hub_pb2_grpc.HubServicer):
    def __init__(self, hub: Hub, governance: Governance) -> None:
        self._hub = hub
        self._gov = governance

    async def RequestAllowance(
        self, request: hub_pb2.AllowanceRequest, context: Context
    ) -> hub_pb2.AllowanceGrant:
        return await self._hub.request_allowance(request, caller(context))

    async def EnsureCapacity(
        self, request: hub_pb2.EnsureCapacityRequest, context: Context
    ) -> hub_pb2.EnsureCapacityReply:
        return await self._hub.ensure_capacity()

    async def GetTreasury(
        self, request: hub_pb2.GetTreasuryRequest, context: Context
    ) -> hub_pb2.Treasury:
        return self._hub.treasury()

    async def ListHubShards(
        self, request: hub_pb2.ListHubShardsRequest, context: Context
    ) -> hub_pb2.HubShards:
        return self._hub.shards()

    async def GetHubConfig(
        self, request: hub_pb2.GetHubConfigRequest, context: Context
    ) -> hub_pb2.HubConfig:
        return self._hub.config()

    async def CreateProposal(
        self, request: hub_pb2.CreateProposalRequest, context: Context
    ) -> hub_pb2.Proposal:
        return await self._gov.create(request)

    async def GetProposal(
        self, request: hub_pb2.GetProposalRequest, context: Context
    ) -> hub_pb2.Proposal:
        return self._gov.get(request.id)

    async def ListProposals(
        self, request: hub_pb2.ListProposalsRequest, context: Context
    ) -> hub_pb2.ProposalPage:
        return self._gov.page(request)

    async def ReportVotes(
        self, request: hub_pb2.VoteBatch, context: Context
    ) -> hub_pb2.VoteBatchReply:
        return await self._gov.report_votes(request, caller(context))
