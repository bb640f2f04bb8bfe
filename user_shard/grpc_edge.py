"""The gRPC edge of a user shard: unpack, delegate, return.

Errors are not caught here; ``runtime.rpc``'s edge maps domain errors to
status codes.
"""

from __future__ import annotations

from protos import shard_pb2, shard_pb2_grpc
from runtime.authz import Rules
from runtime.errors import CanistryError
from runtime.rpc import Context, ServiceBinding
from runtime.tls import Role
from user_shard.core import Shard

__all__ = ["ACCESS", "ShardServicer", "binding"]

_GATEWAY = {Role.GATEWAY}

#: Who may call what (``runtime.authz``): users reach their shard only through
#: the gateway, which authenticates them; status is for readers of the cluster;
#: the census is how the registry confirms assignments and sees the store fill.
ACCESS: Rules = {
    "CreateUser": _GATEWAY,
    "GetUser": _GATEWAY,
    "UpdateProfile": _GATEWAY,
    "SubmitQuiz": _GATEWAY,
    "SubmitQuizBatch": _GATEWAY,
    "GetBalance": _GATEWAY,
    "GetShardStatus": {Role.GATEWAY, Role.OPERATOR, Role.HUB},
    "Census": {Role.REGISTRY},
    # A user's vote reaches their shard through the gateway; only the hub,
    # carrying out an adopted proposal, disables or enables a shard.
    "CastVote": _GATEWAY,
    "SetDisabled": {Role.HUB},
}


class ShardServicer(shard_pb2_grpc.UserShardServicer):
    def __init__(self, shard: Shard) -> None:
        self._shard = shard

    async def CreateUser(
        self, request: shard_pb2.CreateUserRequest, context: Context
    ) -> shard_pb2.UserReply:
        return await self._shard.create_user(request)

    async def GetUser(
        self, request: shard_pb2.GetUserRequest, context: Context
    ) -> shard_pb2.UserReply:
        return await self._shard.get_user(request)

    async def UpdateProfile(
        self, request: shard_pb2.UpdateProfileRequest, context: Context
    ) -> shard_pb2.UserReply:
        return await self._shard.update_profile(request)

    async def SubmitQuiz(
        self, request: shard_pb2.SubmitQuizRequest, context: Context
    ) -> shard_pb2.SubmitQuizReply:
        return await self._shard.submit_quiz(request)

    async def SubmitQuizBatch(
        self, request: shard_pb2.SubmitQuizBatchRequest, context: Context
    ) -> shard_pb2.SubmitQuizBatchReply:
        outcomes = await self._shard.submit_quizzes(
            [(i.request, i.request_id) for i in request.items]
        )
        return shard_pb2.SubmitQuizBatchReply(outcomes=[_outcome(o) for o in outcomes])

    async def GetBalance(
        self, request: shard_pb2.GetBalanceRequest, context: Context
    ) -> shard_pb2.Balance:
        return await self._shard.get_balance(request)

    async def GetShardStatus(
        self, request: shard_pb2.GetShardStatusRequest, context: Context
    ) -> shard_pb2.ShardStatus:
        return self._shard.status()

    async def Census(
        self, request: shard_pb2.CensusRequest, context: Context
    ) -> shard_pb2.CensusReply:
        return self._shard.census(request)

    async def CastVote(
        self, request: shard_pb2.CastVoteRequest, context: Context
    ) -> shard_pb2.CastVoteReply:
        return await self._shard.cast_vote(request)

    async def SetDisabled(
        self, request: shard_pb2.SetDisabledRequest, context: Context
    ) -> shard_pb2.ShardStatus:
        return await self._shard.set_disabled(request)


def _outcome(
    outcome: shard_pb2.SubmitQuizReply | CanistryError,
) -> shard_pb2.SubmitQuizOutcome:
    if isinstance(outcome, CanistryError):
        error = shard_pb2.SubmitQuizError(code=outcome.code, message=outcome.message)
        return shard_pb2.SubmitQuizOutcome(error=error)
    return shard_pb2.SubmitQuizOutcome(reply=outcome)


def binding(shard: Shard) -> ServiceBinding:
    """What :class:`runtime.rpc.Server` needs to serve ``shard``."""
    servicer = ShardServicer(shard)
    return ServiceBinding(
        full_name=shard_pb2.DESCRIPTOR.services_by_name["UserShard"].full_name,
        add_to_server=lambda server: shard_pb2_grpc.add_UserShardServicer_to_server(
            servicer, server
        ),
        access=ACCESS,
    )
