"""A shard's clients of its peers: the content service (grading) and the hub (allowance).

Each turns a failed call into a domain error through ``runtime.rpc``'s one
translation point and keeps its own deadline. Neither retries: the flows
that call them decide (a submission fails with 503; the refiller tries
again later).
"""

from __future__ import annotations

from collections.abc import Sequence

from protos import content_pb2, content_pb2_grpc, hub_pb2, hub_pb2_grpc
from runtime.errors import CanistryError, DeadlineExceeded, Unavailable, remote_error
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role, TLSConfig
from user_shard import microbank
from user_shard.batching import Item, VerifyBatcher
from user_shard.submission import Verdict

__all__ = ["CONTENT_DEADLINE_S", "HUB_DEADLINE_S", "ContentClient", "HubClient"]

#: Deadline of one VerifyQuiz call; past it the submission fails as unavailable.
CONTENT_DEADLINE_S = 2.0
#: Deadline of one RequestAllowance call; the refiller retries past it.
HUB_DEADLINE_S = 3.0


class ContentClient:
    """Grades answers at the content service; answer keys never come here.

    Concurrent submissions share calls (:class:`~user_shard.batching.VerifyBatcher`):
    one ``VerifyQuizBatch`` carries every submission waiting at that moment.
    """

    def __init__(self, address: str, tls: TLSConfig | None, *, max_batch: int = 256) -> None:
        self._channel = make_channel(address, tls, server_role=Role.CONTENT)
        self._stub: content_pb2_grpc.ContentAsyncStub = content_pb2_grpc.ContentStub(self._channel)
        self.batcher = VerifyBatcher(self._send, max_batch=max_batch)

    async def verify(
        self, unit_id: str, answers: dict[str, str], *, linger: bool = False
    ) -> Verdict:
        """The grade. Raises UnknownUnit or InvalidArgument as content said, and
        Unavailable when content cannot grade it now (down, slow or failing).
        ``linger``: the shard is busy; see :class:`~user_shard.batching.VerifyBatcher`."""
        return await self.batcher.verify(unit_id, answers, linger=linger)

    async def _send(self, items: Sequence[Item]) -> list[Verdict | CanistryError]:
        request = content_pb2.VerifyQuizBatchRequest(
            items=[
                content_pb2.VerifyQuizRequest(
                    unit_id=i.unit_id, answers=i.answers, request_id=i.request_id
                )
                for i in items
            ]
        )
        try:
            async with rpc_errors("content service"):
                reply = await self._stub.VerifyQuizBatch(request, timeout=CONTENT_DEADLINE_S)
        except DeadlineExceeded as exc:
            raise Unavailable("content service did not answer in time") from exc
        except CanistryError as exc:
            if type(exc) is CanistryError:  # INTERNAL or an unknown status: no reason we know
                raise Unavailable("content service failed") from exc
            raise
        return [_verdict(outcome) for outcome in reply.outcomes]

    async def close(self) -> None:
        await self.batcher.close()
        await self._channel.close()


def _verdict(outcome: content_pb2.VerifyQuizOutcome) -> Verdict | CanistryError:
    if outcome.WhichOneof("outcome") == "error":
        return remote_error(outcome.error.code, outcome.error.message)
    r = outcome.reply
    return Verdict(r.passed, r.score, r.total, r.reward)


class HubClient:
    """Asks the hub for allowance in this shard's name (its certificate's)."""

    def __init__(self, shard_id: str, address: str, tls: TLSConfig | None) -> None:
        self.shard_id = shard_id
        self._address = address
        self._tls = tls
        self._channel = make_channel(address, tls, server_role=Role.HUB)
        self._stub: hub_pb2_grpc.HubAsyncStub = hub_pb2_grpc.HubStub(self._channel)

    async def request_allowance(self, request: microbank.AllowanceRequest) -> int:
        """The amount granted for ``request.seq`` (the same on a retry of that seq).

        Raises Unavailable or DeadlineExceeded when the hub cannot answer.
        """
        try:
            async with rpc_errors("hub"):
                grant = await self._stub.RequestAllowance(
                    hub_pb2.AllowanceRequest(
                        shard_id=self.shard_id,
                        seq=request.seq,
                        amount=request.amount,
                        staked_delta=request.staked_delta,
                    ),
                    timeout=HUB_DEADLINE_S,
                )
        except (Unavailable, DeadlineExceeded):
            # A channel that failed waits out gRPC's own reconnect backoff (up
            # to minutes); a fresh one lets the refiller's next retry reach a
            # hub that came back.
            await self._reconnect()
            raise
        if grant.seq != request.seq:
            raise Unavailable(f"hub answered seq {grant.seq} to seq {request.seq}")
        granted: int = grant.granted
        return granted

    async def report_votes(self, votes: Sequence[hub_pb2.Vote]) -> list[hub_pb2.VoteOutcome]:
        """Report a batch of votes; one outcome per vote. Raises Unavailable and the like."""
        try:
            async with rpc_errors("hub"):
                reply = await self._stub.ReportVotes(
                    hub_pb2.VoteBatch(shard_id=self.shard_id, votes=votes),
                    timeout=HUB_DEADLINE_S,
                )
        except (Unavailable, DeadlineExceeded):
            await self._reconnect()
            raise
        return list(reply.outcomes)

    async def _reconnect(self) -> None:
        old = self._channel
        self._channel = make_channel(self._address, self._tls, server_role=Role.HUB)
        self._stub = hub_pb2_grpc.HubStub(self._channel)
        await old.close()

    async def close(self) -> None:
        await self._channel.close()
