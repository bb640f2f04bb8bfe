"""Small builders for content packs in tests."""

from __future__ import annotations

import json
from typing import Any


def make_unit(
    uid: str = "math-001",
    subject: str = "math",
    *,
    title: str = "Fractions",
    reward: int = 50,
    questions: int = 3,
    pass_score: int = 2,
) -> dict[str, Any]:
    """A valid unit whose right answer is always choice "a"."""
    return {
        "id": uid,
        "subject": subject,
        "title": title,
        "body": f"All about {title}.",
        "reward": reward,
        "quiz": {
            "pass_score": pass_score,
            "questions": [
                {
                    "id": f"q{n}",
                    "prompt": f"Question {n} of {uid}?",
                    "choices": [{"id": "a", "text": "right"}, {"id": "b", "text": "wrong"}],
                    "answer": "a",
                }
                for n in range(1, questions + 1)
            ],
        },
    }


def dump(units: list[dict[str, Any]], **top: Any) -> str:
    """A pack as indented JSON text, one key per line (so lines are meaningful)."""
    return json.dumps({"units": units, **top}, indent=2)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th ``needle`` in ``text``."""
    pos = -1
    for _ in range(occurrence):
        pos = text.index(needle, pos + 1)
    return text.count("\n", 0, pos) + 1
