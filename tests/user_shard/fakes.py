"""In-test stand-ins for the content service and the hub, served over real gRPC."""

from __future__ import annotations

import asyncio
import dataclasses

from protos import content_pb2, content_pb2_grpc, hub_pb2, hub_pb2_grpc
from runtime import rpc
from runtime.errors import Unavailable, UnknownUnit

#: Every unit whose id starts with "u" has this answer key.
ANSWERS = {"q1": "a", "q2": "b"}
RIGHT = dict(ANSWERS)
WRONG = {"q1": "b", "q2": "a"}
REWARD = 100


class FakeContent(content_pb2_grpc.ContentServicer):
    """Units "u…": two questions, both needed to pass, reward 100; "free…": reward 0."""

    def __init__(self) -> None:
        self.calls = 0
        """Submissions graded, alone or in batches."""
        self.batches: list[int] = []
        """The size of each VerifyQuizBatch call."""
        self.fail_batches = 0
        """Answer the next N batch calls UNAVAILABLE, as a content service going down."""
        self.server: rpc.Server | None = None

    async def VerifyQuizBatch(self, request, context):
        self.batches.append(len(request.items))
        if self.fail_batches:
            self.fail_batches -= 1
            raise Unavailable("content is going down")
        outcomes = []
        for item in request.items:
            try:
                reply = await self.VerifyQuiz(item, context)
            except UnknownUnit as exc:
                error = content_pb2.VerifyQuizError(code=exc.code, message=exc.message)
                outcomes.append(content_pb2.VerifyQuizOutcome(error=error))
            else:
                outcomes.append(content_pb2.VerifyQuizOutcome(reply=reply))
        return content_pb2.VerifyQuizBatchReply(outcomes=outcomes)

    async def VerifyQuiz(self, request, context):
        self.calls += 1
        if request.unit_id.startswith("u"):
            reward = REWARD
        elif request.unit_id.startswith("free"):
            reward = 0
        else:
            raise UnknownUnit(f"no unit {request.unit_id}")
        score = sum(1 for q, a in ANSWERS.items() if request.answers.get(q) == a)
        return content_pb2.VerifyQuizReply(
            passed=score >= 2, score=score, total=len(ANSWERS), reward=reward, unit_version=1
        )

    async def start(self, port: int = 0) -> str:
        servicer = self
        self.server = rpc.Server(
            "fake-content",
            rpc.ServerConfig(port=port, grace_s=0),
            [
                rpc.ServiceBinding(
                    content_pb2.DESCRIPTOR.services_by_name["Content"].full_name,
                    lambda s: content_pb2_grpc.add_ContentServicer_to_server(servicer, s),
                )
            ],
        )
        await self.server.start()
        return self.server.address

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


@dataclasses.dataclass
class HubCall:
    shard_id: str
    seq: int
    amount: int
    staked_delta: int


class FakeHub(hub_pb2_grpc.HubServicer):
    """Grants min(amount, cap - total), idempotent per (shard, seq); survives restarts.

    ``drop_replies`` makes the next N calls record their grant and then fail,
    like a reply lost on the wire.
    """

    def __init__(self, cap: int = 10**12) -> None:
        self.cap = cap
        self.total_granted = 0
        self.grants: dict[tuple[str, int], int] = {}
        self.staked: dict[str, int] = {}
        self.calls: list[HubCall] = []
        self.drop_replies = 0
        self.server: rpc.Server | None = None
        self.port = 0
        self.answered = asyncio.Event()

    async def RequestAllowance(self, request, context):
        self.calls.append(
            HubCall(request.shard_id, request.seq, request.amount, request.staked_delta)
        )
        key = (request.shard_id, request.seq)
        if key not in self.grants:
            granted = min(request.amount, self.cap - self.total_granted)
            self.grants[key] = granted
            self.total_granted += granted
            self.staked[request.shard_id] = (
                self.staked.get(request.shard_id, 0) + request.staked_delta
            )
        if self.drop_replies > 0:
            self.drop_replies -= 1
            raise Unavailable("reply lost")
        self.answered.set()
        return hub_pb2.AllowanceGrant(
            shard_id=request.shard_id,
            seq=request.seq,
            granted=self.grants[key],
            total_granted_to_shard=sum(
                g for (s, _), g in self.grants.items() if s == request.shard_id
            ),
        )

    async def start(self) -> str:
        """Start (or restart on the same port)."""
        servicer = self
        self.server = rpc.Server(
            "fake-hub",
            rpc.ServerConfig(port=self.port, grace_s=0),
            [
                rpc.ServiceBinding(
                    hub_pb2.DESCRIPTOR.services_by_name["Hub"].full_name,
                    lambda s: hub_pb2_grpc.add_HubServicer_to_server(servicer, s),
                )
            ],
        )
        await self.server.start()
        self.port = int(self.server.address.rsplit(":", 1)[1])
        return self.server.address

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
