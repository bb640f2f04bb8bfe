"""The content service's operations: validate a request, read or write the store, answer.

:class:`Content` is what the gRPC edge (``grpc_edge``) calls. Its methods take
plain values, raise errors from ``runtime.errors`` (``InvalidArgument``,
``UnknownUnit``, ``BadContentPack``) and never see gRPC. Grading stays in the
pure ``quiz`` module; answer keys go no further than :meth:`Content.verify`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import Counter

from content_service import quiz
from content_service.pack import SLUG_PATTERN, is_slug, parse_pack
from content_service.store import ContentStore, ImportSummary, Page
from protos import content_pb2
from runtime import logs
from runtime.errors import CanistryError, InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_BATCH", "MAX_PAGE_SIZE", "Content", "Verdict"]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
#: The most submissions one VerifyQuizBatch call may carry.
MAX_BATCH = 1024

log = logs.get_logger(__name__)

VERIFICATIONS = Counter(
    "canistry_content_verifications", "Quiz submissions graded, by outcome", ["outcome"]
)
_PASSED, _FAILED = VERIFICATIONS.labels("passed"), VERIFICATIONS.labels("failed")


@dataclass(frozen=True)
class Verdict:
    """A graded submission: the grade, and the reward and version of the unit graded."""

    result: quiz.QuizResult
    reward: int
    unit_version: int


class Content:
    """Operations over an open :class:`ContentStore`."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store

    async def import_pack(self, text: str) -> ImportSummary:
        """Add or update the pack's units in one durable write; a bad pack changes nothing."""
        # Parsing a large pack takes a while; keep the loop free for reads.
        units = await asyncio.to_thread(parse_pack, text)
        return await self.store.import_units(units)

    def list_units(self, subject: str, cursor: str, limit: int) -> Page:
        """A page of summaries; ``limit`` 0 means the default page size."""
        if subject and not is_slug(subject):
            raise InvalidArgument(f"subject must match {SLUG_PATTERN}")
        if not 0 <= limit <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit must be at most {MAX_PAGE_SIZE}")
        return self.store.list_units(subject, cursor, limit or DEFAULT_PAGE_SIZE)

    def get_unit(self, unit_id: str) -> content_pb2.Unit:
        """The public unit: its questions, never the answer key."""
        return self.store.get_unit(_unit_id(unit_id)).unit

    def verify(self, unit_id: str, answers: Mapping[str, str]) -> Verdict:
        """Grade ``answers`` against the unit's key (stateless)."""
        [outcome] = self._grade([(_unit_id(unit_id), answers)])
        if isinstance(outcome, CanistryError):
            raise outcome
        return outcome

    def verify_batch(
        self, items: Sequence[tuple[str, Mapping[str, str], str]]
    ) -> list[Verdict | CanistryError]:
        """Grade each ``(unit_id, answers, request_id)`` alone: a bad item is its own error.

        The whole batch reads the store once. A refused item is logged under
        its own request id. Raises :class:`InvalidArgument` only for a batch
        over :data:`MAX_BATCH`.
        """
        if len(items) > MAX_BATCH:
            raise InvalidArgument(f"a batch holds at most {MAX_BATCH} submissions")
        checked: list[tuple[str, Mapping[str, str]] | CanistryError] = []
        for unit_id, answers, _ in items:
            try:
                checked.append((_unit_id(unit_id), answers))
            except CanistryError as exc:
                checked.append(exc)
        outcomes = self._grade(checked)
        for (unit_id, _, request_id), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, CanistryError):
                log.info(
                    "verify_refused",
                    request_id=request_id or None,
                    unit_id=unit_id,
                    code=outcome.code,
                    detail=outcome.message,
                )
        return outcomes

    def _grade(
        self, items: Sequence[tuple[str, Mapping[str, str]] | CanistryError]
    ) -> list[Verdict | CanistryError]:
        """Grade each valid ``(unit_id, answers)``; an error stays as it is."""
        keys = self.store.answer_keys(i[0] for i in items if not isinstance(i, CanistryError))
        out: list[Verdict | CanistryError] = []
        for item in items:
            if isinstance(item, CanistryError):
                out.append(item)
                continue
            key = keys[item[0]]
            if isinstance(key, CanistryError):
                out.append(type(key)(key.message))  # one error object per item
                continue
            try:
                result = key.grade(item[1])
            except CanistryError as exc:
                out.append(exc)
                continue
            (_PASSED if result.passed else _FAILED).inc()
            out.append(Verdict(result, key.reward, key.version))
        return out

    def stats(self) -> tuple[int, list[str]]:
        return self.store.stats()


def _unit_id(value: str) -> str:
    if not is_slug(value):
        raise InvalidArgument(f"unit_id must match {SLUG_PATTERN}")
    return value
