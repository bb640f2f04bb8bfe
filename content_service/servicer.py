"""The gRPC edge of the content service: decode, delegate, encode.

Domain errors propagate to ``runtime.rpc``'s edge, which maps them to status
codes; nothing here catches them.
"""

from __future__ import annotations

import asyncio

from content_service import quiz
from content_service.pack import SLUG_PATTERN, is_slug, parse_pack
from content_service.store import ContentStore
from protos import content_pb2, content_pb2_grpc
from runtime.authz import Rules
from runtime.errors import InvalidArgument
from runtime.rpc import Context
from runtime.store import GroupCommitter
from runtime.tls import Role

__all__ = ["ACCESS", "DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "ContentServicer"]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

_READERS = {Role.GATEWAY, Role.OPERATOR}

#: Who may call what (``runtime.authz``): only shards verify quizzes, and
#: only the operator's command line imports packs.
ACCESS: Rules = {
    "ImportPack": {Role.OPERATOR},
    "ListUnits": _READERS,
    "GetUnit": _READERS,
    "VerifyQuiz": {Role.SHARD},
    "GetContentStats": _READERS,
}


class ContentServicer(content_pb2_grpc.ContentServicer):
    def __init__(self, store: ContentStore, committer: GroupCommitter) -> None:
        self._store = store
        self._committer = committer

    async def ImportPack(
        self, request: content_pb2.ImportPackRequest, context: Context
    ) -> content_pb2.ImportPackReply:
        # Parsing a large pack takes a while; keep the loop free for reads.
        units = await asyncio.to_thread(parse_pack, request.pack_json)
        summary = await self._committer.submit(lambda txn: self._store.apply_pack(txn, units))
        return content_pb2.ImportPackReply(
            added=summary.added,
            changed=summary.changed,
            unchanged=summary.unchanged,
            total_units=summary.total_units,
        )

    async def ListUnits(
        self, request: content_pb2.ListUnitsRequest, context: Context
    ) -> content_pb2.ListUnitsReply:
        if request.subject and not is_slug(request.subject):
            raise InvalidArgument(f"subject must match {SLUG_PATTERN}")
        if request.limit > MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit must be at most {MAX_PAGE_SIZE}")
        page = self._store.list_units(
            request.subject, request.cursor, request.limit or DEFAULT_PAGE_SIZE
        )
        return content_pb2.ListUnitsReply(units=page.units, next_cursor=page.next_cursor)

    async def GetUnit(
        self, request: content_pb2.GetUnitRequest, context: Context
    ) -> content_pb2.Unit:
        # Only the public part: the answer key sits beside it in StoredUnit.
        return self._store.get_unit(_unit_id(request.unit_id)).unit

    async def VerifyQuiz(
        self, request: content_pb2.VerifyQuizRequest, context: Context
    ) -> content_pb2.VerifyQuizReply:
        stored = self._store.get_unit(_unit_id(request.unit_id))
        result = quiz.verify(stored, request.answers)
        return content_pb2.VerifyQuizReply(
            passed=result.passed,
            score=result.score,
            total=result.total,
            reward=stored.unit.reward,
            unit_version=stored.unit.version,
        )

    async def GetContentStats(
        self, request: content_pb2.GetContentStatsRequest, context: Context
    ) -> content_pb2.ContentStats:
        count, subjects = self._store.stats()
        return content_pb2.ContentStats(unit_count=count, subjects=subjects)


def _unit_id(value: str) -> str:
    if not is_slug(value):
        raise InvalidArgument(f"unit_id must match {SLUG_PATTERN}")
    return value
