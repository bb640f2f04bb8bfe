"""Merge concurrent quiz verifications into batched calls to content.

A :class:`VerifyBatcher` is a :class:`runtime.batching.Batcher` of
submissions to grade: one ``VerifyQuizBatch`` carries every submission
waiting at that moment, and each keeps its own request id. A batch whose
call fails fails every submission in it with that error, and nothing is
recorded for any.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import logs
from runtime.batching import Batcher, SendBatch
from user_shard.submission import Verdict

__all__ = ["Item", "SendVerifications", "VerifyBatcher"]


@dataclass(frozen=True)
class Item:
    """One submission to grade."""

    unit_id: str
    answers: dict[str, str]
    request_id: str = ""
    """The submission's own request id: a batch carries many, one per item."""


#: Sends one batch of submissions to grade; returns one grade or error per item, in order.
SendVerifications = SendBatch[Item, Verdict]


class VerifyBatcher(Batcher[Item, Verdict]):
    """Grades submissions through ``send``, many per call when they arrive together."""

    def __init__(
        self, send: SendVerifications, *, max_batch: int = 256, linger_s: float = 0.002
    ) -> None:
        super().__init__(send, max_batch=max_batch, linger_s=linger_s, name="verify-batch")

    async def verify(
        self, unit_id: str, answers: dict[str, str], *, linger: bool = False
    ) -> Verdict:
        """The grade of one submission. Raises what content said of it, or the batch's error.

        ``linger``: more submissions are on their way; see :class:`runtime.batching.Batcher`.
        """
        item = Item(unit_id, answers, logs.current_request_id() or "")
        return await self.submit(item, linger=linger)
