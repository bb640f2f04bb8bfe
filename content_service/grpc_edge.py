"""The gRPC edge of the content service: decode, delegate to :class:`Content`, encode.

Domain errors propagate to ``runtime.rpc``'s edge, which maps them to status
codes; nothing here catches them.
"""

from __future__ import annotations

from content_service.core import Content, Verdict
from protos import content_pb2, content_pb2_grpc
from runtime.authz import Rules
from runtime.errors import CanistryError
from runtime.rpc import Context
from runtime.tls import Role

__all__ = ["ACCESS", "ContentServicer"]

_READERS = {Role.GATEWAY, Role.OPERATOR}

#: Who may call what (``runtime.authz``): only shards verify quizzes, and
#: only the operator's command line imports packs.
ACCESS: Rules = {
    "ImportPack": {Role.OPERATOR},
    "ListUnits": _READERS,
    "GetUnit": _READERS,
    "VerifyQuiz": {Role.SHARD},
    "VerifyQuizBatch": {Role.SHARD},
    "GetContentStats": _READERS,
}


class ContentServicer(content_pb2_grpc.ContentServicer):
    def __init__(self, content: Content) -> None:
        self._content = content

    async def ImportPack(
        self, request: content_pb2.ImportPackRequest, context: Context
    ) -> content_pb2.ImportPackReply:
        summary = await self._content.import_pack(request.pack_json)
        return content_pb2.ImportPackReply(
            added=summary.added,
            changed=summary.changed,
            unchanged=summary.unchanged,
            total_units=summary.total_units,
        )

    async def ListUnits(
        self, request: content_pb2.ListUnitsRequest, context: Context
    ) -> content_pb2.ListUnitsReply:
        page = self._content.list_units(request.subject, request.cursor, request.limit)
        return content_pb2.ListUnitsReply(units=page.units, next_cursor=page.next_cursor)

    async def GetUnit(
        self, request: content_pb2.GetUnitRequest, context: Context
    ) -> content_pb2.Unit:
        return self._content.get_unit(request.unit_id)

    async def VerifyQuiz(
        self, request: content_pb2.VerifyQuizRequest, context: Context
    ) -> content_pb2.VerifyQuizReply:
        return _reply(self._content.verify(request.unit_id, request.answers))

    async def VerifyQuizBatch(
        self, request: content_pb2.VerifyQuizBatchRequest, context: Context
    ) -> content_pb2.VerifyQuizBatchReply:
        items = [(i.unit_id, i.answers, i.request_id) for i in request.items]
        verdicts = self._content.verify_batch(items)
        return content_pb2.VerifyQuizBatchReply(outcomes=[_outcome(v) for v in verdicts])

    async def GetContentStats(
        self, request: content_pb2.GetContentStatsRequest, context: Context
    ) -> content_pb2.ContentStats:
        count, subjects = self._content.stats()
        return content_pb2.ContentStats(unit_count=count, subjects=subjects)


def _reply(verdict: Verdict) -> content_pb2.VerifyQuizReply:
    return content_pb2.VerifyQuizReply(
        passed=verdict.result.passed,
        score=verdict.result.score,
        total=verdict.result.total,
        reward=verdict.reward,
        unit_version=verdict.unit_version,
    )


def _outcome(verdict: Verdict | CanistryError) -> content_pb2.VerifyQuizOutcome:
    if isinstance(verdict, CanistryError):
        error = content_pb2.VerifyQuizError(code=verdict.code, message=verdict.message)
        return content_pb2.VerifyQuizOutcome(error=error)
    return content_pb2.VerifyQuizOutcome(reply=_reply(verdict))
