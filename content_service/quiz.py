"""Grading a quiz: the only place that reads answer keys.

A submission passes when at least ``pass_score`` answers are right. A
question left out counts as wrong; an answer that cannot belong to the quiz
(unknown question or choice, empty id, more answers than questions) is
malformed and rejected, so a client bug is never graded as a wrong answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from protos import content_pb2
from runtime.errors import InvalidArgument

__all__ = ["QuizResult", "verify"]


@dataclass(frozen=True)
class QuizResult:
    score: int
    """How many questions were answered right."""
    total: int
    """How many questions the quiz has."""
    passed: bool
    """``score >= pass_score``."""


def verify(stored: content_pb2.StoredUnit, answers: Mapping[str, str]) -> QuizResult:
    """Grade ``answers`` (question id -> choice id) against ``stored``'s key.

    Raises :class:`InvalidArgument` when the answers are malformed.
    """
    unit = stored.unit
    questions = unit.quiz.questions
    if len(answers) > len(questions):
        raise InvalidArgument(
            f"unit {_show(unit.id)}: {len(answers)} answers given"
            f" but the quiz has {len(questions)} questions"
        )
    choices = {q.id: q.choices for q in questions}
    score = 0
    for qid, cid in sorted(answers.items()):
        if not qid:
            raise InvalidArgument(f"unit {_show(unit.id)}: an answer has an empty question id")
        options = choices.get(qid)
        if options is None:
            raise InvalidArgument(f"unit {_show(unit.id)}: no question {_show(qid)}")
        if not cid:
            raise InvalidArgument(f"unit {_show(unit.id)}: question {_show(qid)}: empty choice id")
        if not any(c.id == cid for c in options):
            raise InvalidArgument(
                f"unit {_show(unit.id)}: question {_show(qid)}: no choice {_show(cid)}"
            )
        if stored.answers[qid] == cid:
            score += 1
    return QuizResult(score=score, total=len(questions), passed=score >= unit.quiz.pass_score)


def _show(value: str, limit: int = 64) -> str:
    # Answers come from users: quote them and keep messages short.
    return json.dumps(value if len(value) <= limit else value[:limit] + "…", ensure_ascii=False)
