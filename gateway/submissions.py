"""Submissions to one shard, merged into batched calls.

Every submission used to be its own ``SubmitQuiz`` call, and a unary call
costs the gateway and the shard far more CPU (gRPC, HTTP/2 and TLS framing,
a task on each side) than the submission's own work. :class:`ShardSubmissions`
sends the submissions that meet at one shard in one ``SubmitQuizBatch``
(:class:`runtime.batching.Batcher`): an idle shard gets each submission at
once, alone, in a plain ``SubmitQuiz``; while a call is in flight, the next
ones wait for it and leave together. The shard handles each item exactly as it would handle it
alone, and answers each with its own reply or error; a call that fails
fails every submission in it with that call's error, so each caller's
retry rules (:meth:`gateway.upstream.Upstream.on_shard`) apply unchanged.

A shard that does not know ``SubmitQuizBatch`` (an older version, during a
rolling upgrade or after a rollback) is sent single ``SubmitQuiz`` calls,
and asked again after :data:`RETRY_BATCH_S`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from gateway import metrics
from protos import shard_pb2, shard_pb2_grpc
from runtime import logs
from runtime.batching import Batcher
from runtime.errors import CanistryError, DeadlineExceeded, remote_error
from runtime.rpc import rpc_errors

__all__ = ["MAX_BATCH", "RETRY_BATCH_S", "ShardSubmissions"]

log = logs.get_logger(__name__)

#: The most submissions in one call (the shard's own limit is larger).
MAX_BATCH = 128
#: How long a shard that did not know batches gets single calls before it is asked again.
RETRY_BATCH_S = 60.0

_Item = tuple[shard_pb2.SubmitQuizRequest, str]


class ShardSubmissions:
    """The submissions to one shard, through ``stub`` (a stub bound to that shard).

    ``deadline_s`` bounds each submission: its wait for a place in a batch
    and the batch's call together.
    """

    def __init__(
        self,
        stub: shard_pb2_grpc.UserShardAsyncStub,
        shard_id: str,
        *,
        deadline_s: float,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._stub = stub
        self.shard_id = shard_id
        self._deadline_s = deadline_s
        self._batcher: Batcher[_Item, shard_pb2.SubmitQuizReply] = Batcher(
            self._send, max_batch=max_batch, linger_s=0, name="submit-batch"
        )
        self._singles_until = 0.0
        """Loop time until which this shard gets single calls (it knew no batches)."""

    @property
    def batches(self) -> int:
        """Calls sent: one per batch, a lone submission's included (tests read it)."""
        return self._batcher.batches

    @property
    def items(self) -> int:
        """Submissions sent in them."""
        return self._batcher.items

    @property
    def waiting(self) -> int:
        """Submissions waiting for the call in flight to return."""
        return self._batcher.waiting

    async def submit(self, request: shard_pb2.SubmitQuizRequest) -> shard_pb2.SubmitQuizReply:
        """The shard's reply. Raises what the shard said of this submission, what
        :func:`runtime.rpc.rpc_errors` makes of a failed call, or
        :class:`DeadlineExceeded` past ``deadline_s``."""
        item = (request, logs.current_request_id() or "")
        if asyncio.get_running_loop().time() < self._singles_until:
            outcome = await self._single(*item)
            if isinstance(outcome, CanistryError):
                raise outcome
            return outcome
        try:
            async with asyncio.timeout(self._deadline_s):
                return await self._batcher.submit(item)
        except TimeoutError:
            raise DeadlineExceeded(f"{self.shard_id} did not answer in time") from None

    async def _send(
        self, items: Sequence[_Item]
    ) -> Sequence[shard_pb2.SubmitQuizReply | CanistryError]:
        metrics.SUBMISSION_BATCH.observe(len(items))
        if len(items) == 1:  # an idle shard: the plain call, as cheap as before batches
            return [await self._single(*items[0])]
        batch = shard_pb2.SubmitQuizBatchRequest(
            items=[shard_pb2.SubmitQuizItem(request=r, request_id=rid) for r, rid in items]
        )
        try:
            async with rpc_errors(self.shard_id):
                reply = await self._stub.SubmitQuizBatch(batch, timeout=self._deadline_s)
        except CanistryError as exc:
            if not _unimplemented(exc):
                raise
            log.warning("shard_without_batches", shard_id=self.shard_id, retry_s=RETRY_BATCH_S)
            self._singles_until = asyncio.get_running_loop().time() + RETRY_BATCH_S
            return await asyncio.gather(*(self._single(r, rid) for r, rid in items))
        return [_outcome(o) for o in reply.outcomes]

    async def _single(
        self, request: shard_pb2.SubmitQuizRequest, request_id: str
    ) -> shard_pb2.SubmitQuizReply | CanistryError:
        token = logs.bind_request_id(request_id or logs.new_request_id())
        try:
            async with rpc_errors(self.shard_id):
                reply: shard_pb2.SubmitQuizReply = await self._stub.SubmitQuiz(
                    request, timeout=self._deadline_s
                )
            return reply
        except CanistryError as exc:
            return exc
        finally:
            logs.reset_request_id(token)

    async def close(self) -> None:
        """Fail whatever waits, and stop the calls in flight."""
        await self._batcher.close()


def _unimplemented(exc: CanistryError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, grpc.aio.AioRpcError) and cause.code() == grpc.StatusCode.UNIMPLEMENTED


def _outcome(outcome: shard_pb2.SubmitQuizOutcome) -> shard_pb2.SubmitQuizReply | CanistryError:
    if outcome.WhichOneof("outcome") == "error":
        return remote_error(outcome.error.code, outcome.error.message)
    return outcome.reply
