"""Which answers a simulated user sends. Pure.

The gateway never reveals answer keys (they stay in the content service),
so the load tester knows them only from the sample pack it ships with. A
unit counts as known when its id is in the pack and its quiz has the same
questions, each with the pack's answer among its choices; any other unit
gets a fixed guess (every question's first choice), which the run counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canistry.client import Unit

__all__ = ["AnswerBook", "Answers"]


@dataclass(frozen=True)
class Answers:
    choices: dict[str, str]
    """question id -> choice id, the submission's body."""
    known: bool
    """The answer key is known: ``choices`` are right, or wrong on purpose."""


class AnswerBook:
    """Answer keys by unit id: ``{unit_id: {question_id: choice_id}}``."""

    def __init__(self, keys: Mapping[str, Mapping[str, str]]) -> None:
        self._keys = {unit: dict(answers) for unit, answers in keys.items()}

    @classmethod
    def from_pack(cls, pack_text: str) -> AnswerBook:
        """From a content pack's JSON text (``content_service/packs/sample.json``)."""
        units: list[dict[str, Any]] = json.loads(pack_text)["units"]
        return cls({u["id"]: {q["id"]: q["answer"] for q in u["quiz"]["questions"]} for u in units})

    @classmethod
    def sample(cls) -> AnswerBook:
        from content_service.service import load_sample_pack

        return cls.from_pack(load_sample_pack())

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self._keys

    def key_for(self, unit: Unit) -> dict[str, str] | None:
        """The unit's answer key, or None when its quiz is not the one in the book."""
        key = self._keys.get(unit.id)
        if key is None or set(key) != {q.id for q in unit.questions}:
            return None
        for question in unit.questions:
            if key[question.id] not in {c.id for c in question.choices}:
                return None
        return key

    def answers(self, unit: Unit, *, right: bool) -> Answers:
        """Right (or, with ``right=False``, wrong where a question allows) answers, or a guess."""
        key = self.key_for(unit)
        if key is None:
            guess = {q.id: q.choices[0].id for q in unit.questions if q.choices}
            return Answers(guess, known=False)
        if right:
            return Answers(dict(key), known=True)
        wrong = {
            q.id: next((c.id for c in q.choices if c.id != key[q.id]), key[q.id])
            for q in unit.questions
        }
        return Answers(wrong, known=True)
