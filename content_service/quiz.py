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

__all__ = ["AnswerKey", "QuizResult", "verify"]


@dataclass(frozen=True)
class QuizResult:
    score: int
    """How many questions were answered right."""
    total: int
    """How many questions the quiz has."""
    passed: bool
    """``score >= pass_score``."""


@dataclass(frozen=True)
class AnswerKey:
    """What grading reads of a stored unit, decoded once per unit version.

    Build it with :meth:`of`; grade with :meth:`grade`. It holds the answers,
    so it never leaves the content service.
    """

    unit_id: str
    choices: Mapping[str, frozenset[str]]
    """Question id -> the ids of its choices."""
    answers: Mapping[str, str]
    """Question id -> the right choice id."""
    pass_score: int
    reward: int
    version: int

    @classmethod
    def of(cls, stored: content_pb2.StoredUnit) -> AnswerKey:
        unit = stored.unit
        return cls(
            unit_id=unit.id,
            choices={q.id: frozenset(c.id for c in q.choices) for q in unit.quiz.questions},
            answers=dict(stored.answers),
            pass_score=unit.quiz.pass_score,
            reward=unit.reward,
            version=unit.version,
        )

    def grade(self, answers: Mapping[str, str]) -> QuizResult:
        """Grade ``answers`` (question id -> choice id).

        Raises :class:`InvalidArgument` when the answers are malformed.
        """
        choices = self.choices
        total = len(choices)
        if len(answers) > total:
            raise InvalidArgument(
                f"unit {_show(self.unit_id)}: {len(answers)} answers given"
                f" but the quiz has {total} questions"
            )
        key = self.answers
        score = 0
        for qid, cid in sorted(answers.items()):
            if not qid:
                raise InvalidArgument(
                    f"unit {_show(self.unit_id)}: an answer has an empty question id"
                )
            options = choices.get(qid)
            if options is None:
                raise InvalidArgument(f"unit {_show(self.unit_id)}: no question {_show(qid)}")
            if not cid:
                raise InvalidArgument(
                    f"unit {_show(self.unit_id)}: question {_show(qid)}: empty choice id"
                )
            if cid not in options:
                raise InvalidArgument(
                    f"unit {_show(self.unit_id)}: question {_show(qid)}: no choice {_show(cid)}"
                )
            if key.get(qid) == cid:
                score += 1
        return QuizResult(score=score, total=total, passed=score >= self.pass_score)


def verify(stored: content_pb2.StoredUnit, answers: Mapping[str, str]) -> QuizResult:
    """Grade ``answers`` (question id -> choice id) against ``stored``'s key.

    Raises :class:`InvalidArgument` when the answers are malformed.
    """
    return AnswerKey.of(stored).grade(answers)


def _show(value: str, limit: int = 64) -> str:
    # Answers come from users: quote them and keep messages short.
    return json.dumps(value if len(value) <= limit else value[:limit] + "…", ensure_ascii=False)
