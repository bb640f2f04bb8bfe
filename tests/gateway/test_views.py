"""The submission reply's hand-built JSON is exactly what the generic encoder writes."""

from __future__ import annotations

import itertools

from gateway import views
from protos import shard_pb2

U32, U64 = 2**32 - 1, 2**64 - 1


def test_a_submission_body_is_byte_identical_to_the_encoded_view() -> None:
    for passed, first, (small, big) in itertools.product(
        (False, True), (False, True), ((0, 0), (1, 7), (20, 1000), (U32, U64))
    ):
        reply = shard_pb2.SubmitQuizReply(
            passed=passed,
            score=small,
            total=small,
            reward=big,
            first_completion=first,
            balance=big,
            pending=big,
            attempts_today=small,
            attempts_left=small,
        )
        expected = views.dumps(views.submission_view(reply))
        assert views.submission_body(reply) == expected, reply
