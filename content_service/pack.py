"""Content packs: parse and validate the JSON text of a pack (docs/design.md §9).

A pack is accepted whole or rejected whole. :func:`parse_pack` either returns
every unit, answers included, or raises :class:`~runtime.errors.BadContentPack`
whose message starts with the line of the offending text and names the unit
and question, for example::

    line 12: unit "math-001": question "q1": answer "z" is not one of its choices

The rules a pack must follow:

- the top level is an object with exactly one key, ``units``: a list of
  1..:data:`MAX_UNITS` units;
- a unit has exactly ``id``, ``subject``, ``title``, ``body``, ``reward`` and
  ``quiz``. ``id`` and ``subject`` match :data:`SLUG_PATTERN` and ids are
  unique in the pack; ``title`` is non-empty; ``body`` is markdown of at most
  :data:`MAX_BODY_BYTES`; ``reward`` is an integer in 0..:data:`MAX_REWARD`;
- a quiz has exactly ``pass_score`` and ``questions``: 1..:data:`MAX_QUESTIONS`
  questions with unique ids and ``pass_score`` in 1..len(questions);
- a question has exactly ``id``, ``prompt``, ``choices`` and ``answer``:
  2..:data:`MAX_CHOICES` choices (each exactly ``id`` and ``text``) with
  unique ids, and ``answer`` is one of those ids.

Nothing here touches storage; the store decides versions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from content_service._jsonpos import PosDict, line_of, loads
from protos import content_pb2
from runtime.errors import BadContentPack

__all__ = [
    "KEY_PATTERN",
    "MAX_BODY_BYTES",
    "MAX_CHOICES",
    "MAX_PACK_CHARS",
    "MAX_QUESTIONS",
    "MAX_REWARD",
    "MAX_UNITS",
    "SLUG_PATTERN",
    "is_slug",
    "parse_pack",
    "read_pack",
    "unit_digest",
]

#: Unit ids and subjects: lower-case, URL-safe, at most 64 characters.
SLUG_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
#: Question and choice ids may also use upper case.
KEY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"

MAX_PACK_CHARS = 64 * 1024 * 1024
MAX_UNITS = 100_000
MAX_TITLE_CHARS = 200
MAX_BODY_BYTES = 200 * 1024
MAX_PROMPT_CHARS = 2_000
MAX_CHOICE_CHARS = 500
MAX_QUESTIONS = 50
MAX_CHOICES = 10
MAX_REWARD = 1_000_000

_SLUG = re.compile(SLUG_PATTERN)
_KEY = re.compile(KEY_PATTERN)

_UNIT_KEYS = ("id", "subject", "title", "body", "reward", "quiz")
_QUIZ_KEYS = ("pass_score", "questions")
_QUESTION_KEYS = ("id", "prompt", "choices", "answer")
_CHOICE_KEYS = ("id", "text")


def is_slug(value: str) -> bool:
    """Whether ``value`` is a valid unit id or subject."""
    return _SLUG.fullmatch(value) is not None


def read_pack(path: Path) -> str:
    """The text of the pack file at ``path``: UTF-8, with or without a byte-order mark.

    Raises :class:`BadContentPack` for text that is not UTF-8, and
    :class:`OSError` if the file cannot be read.
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadContentPack(f"{path}: not UTF-8 text ({exc.reason})") from None


def parse_pack(text: str) -> list[content_pb2.StoredUnit]:
    """Parse and validate a whole pack.

    Returns the units in pack order, each with its answers and its
    :func:`unit_digest`; ``version`` is left 0 for the store to assign.
    Raises :class:`BadContentPack` naming the line and the reason for the
    first problem found.
    """
    if len(text) > MAX_PACK_CHARS:
        raise BadContentPack(f"pack is larger than {MAX_PACK_CHARS} characters")
    try:
        doc = loads(text)
    except json.JSONDecodeError as exc:
        raise BadContentPack(
            f"line {exc.lineno}: invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    except RecursionError:
        raise BadContentPack("invalid JSON: nested too deeply") from None
    root = _Where(text, "")
    if not isinstance(doc, PosDict):
        root.fail(0, f"a pack must be a JSON object with a units list, not {_kind(doc)}")
    root.keys(doc, ("units",))
    raw_units = root.array(doc, "units", lo=1, hi=MAX_UNITS)
    seen: dict[str, int] = {}
    out: list[content_pb2.StoredUnit] = []
    for n, raw in enumerate(raw_units, start=1):
        at = _Where(text, f"unit #{n}")
        obj = at.object(raw, doc.key_pos["units"])
        at.need(obj, "id")
        unit_id = at.string(obj, "id", pattern=_SLUG)
        at = _Where(text, f'unit "{unit_id}"')  # ids are plain ASCII
        if unit_id in seen:
            first = line_of(text, seen[unit_id])
            at.fail(obj.key_pos["id"], f"duplicate unit id (first on line {first})")
        seen[unit_id] = obj.key_pos["id"]  # an offset: lines are counted only for errors
        out.append(_unit(at, obj, unit_id))
    return out


def _unit(at: _Where, obj: PosDict, unit_id: str) -> content_pb2.StoredUnit:
    at.keys(obj, _UNIT_KEYS)
    subject = at.string(obj, "subject", pattern=_SLUG)
    title = at.string(obj, "title", hi=MAX_TITLE_CHARS)
    body = at.string(obj, "body", allow_empty=True, max_bytes=MAX_BODY_BYTES)
    reward = at.integer(obj, "reward", lo=0, hi=MAX_REWARD)
    quiz = at.object(obj["quiz"], obj.key_pos["quiz"], what="quiz")
    at.keys(quiz, _QUIZ_KEYS)
    raw_questions = at.array(quiz, "questions", lo=1, hi=MAX_QUESTIONS)
    questions: list[tuple[content_pb2.Question, str]] = []
    question_pos: dict[str, int] = {}
    for n, raw in enumerate(raw_questions, start=1):
        q_at = at.into(f"question #{n}")
        q_obj = q_at.object(raw, quiz.key_pos["questions"])
        q_at.need(q_obj, "id")
        qid = q_at.string(q_obj, "id", pattern=_KEY)
        q_at = at.into(f'question "{qid}"')
        if qid in question_pos:
            first = line_of(at.text, question_pos[qid])
            q_at.fail(q_obj.key_pos["id"], f"duplicate question id (first on line {first})")
        question_pos[qid] = q_obj.key_pos["id"]
        questions.append(_question(q_at, q_obj, qid))
    pass_score = at.integer(quiz, "pass_score", lo=1, hi=len(questions), what="quiz pass_score")
    stored = content_pb2.StoredUnit(
        unit=content_pb2.Unit(
            id=unit_id,
            subject=subject,
            title=title,
            body=body,
            reward=reward,
            quiz=content_pb2.Quiz(pass_score=pass_score, questions=[q for q, _ in questions]),
        ),
        answers={q.id: answer for q, answer in questions},
    )
    stored.unit.digest = unit_digest(stored)
    return stored


def _question(at: _Where, obj: PosDict, qid: str) -> tuple[content_pb2.Question, str]:
    at.keys(obj, _QUESTION_KEYS)
    prompt = at.string(obj, "prompt", hi=MAX_PROMPT_CHARS)
    raw_choices = at.array(obj, "choices", lo=2, hi=MAX_CHOICES)
    choices: list[content_pb2.Choice] = []
    for n, raw in enumerate(raw_choices, start=1):
        c_at = at.into(f"choice #{n}")
        c_obj = c_at.object(raw, obj.key_pos["choices"])
        c_at.keys(c_obj, _CHOICE_KEYS)
        cid = c_at.string(c_obj, "id", pattern=_KEY)
        c_at = at.into(f'choice "{cid}"')
        if any(c.id == cid for c in choices):
            c_at.fail(c_obj.key_pos["id"], "duplicate choice id")
        text = c_at.string(c_obj, "text", hi=MAX_CHOICE_CHARS)
        choices.append(content_pb2.Choice(id=cid, text=text))
    answer = at.string(obj, "answer", pattern=_KEY)
    if not any(c.id == answer for c in choices):
        at.fail(obj.key_pos["answer"], f"answer {_show(answer)} is not one of its choices")
    return content_pb2.Question(id=qid, prompt=prompt, choices=choices), answer


def unit_digest(stored: content_pb2.StoredUnit) -> str:
    """Hex SHA-256 of the unit's canonical JSON, answers included.

    Independent of key order and whitespace in the pack and of the version,
    so an unchanged unit keeps its digest across imports.
    """
    unit = stored.unit
    canonical = {
        "id": unit.id,
        "subject": unit.subject,
        "title": unit.title,
        "body": unit.body,
        "reward": unit.reward,
        "quiz": {
            "pass_score": unit.quiz.pass_score,
            "questions": [
                {
                    "id": q.id,
                    "prompt": q.prompt,
                    "choices": [{"id": c.id, "text": c.text} for c in q.choices],
                    "answer": stored.answers[q.id],
                }
                for q in unit.quiz.questions
            ],
        },
    }
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Where:
    """Where the validator is, so that every failure names line and path."""

    text: str
    path: str

    def into(self, part: str) -> _Where:
        return _Where(self.text, f"{self.path}: {part}" if self.path else part)

    def fail(self, pos: int, reason: str) -> NoReturn:
        prefix = f"line {line_of(self.text, pos)}: "
        raise BadContentPack(prefix + (f"{self.path}: {reason}" if self.path else reason))

    def object(self, value: Any, pos: int, what: str = "") -> PosDict:
        if not isinstance(value, PosDict):
            self.fail(pos, f"{what or 'it'} must be an object, not {_kind(value)}")
        return value

    def keys(self, obj: PosDict, allowed: Sequence[str]) -> None:
        for key in obj:
            if key not in allowed:
                self.fail(
                    obj.key_pos[key],
                    f"unknown key {_show(key)} (expected {', '.join(allowed)})",
                )
        for key in allowed:
            self.need(obj, key)

    def need(self, obj: PosDict, key: str) -> None:
        if key not in obj:
            self.fail(obj.pos, f"missing key {_show(key)}")

    def array(self, obj: PosDict, key: str, *, lo: int, hi: int) -> list[Any]:
        value = obj[key]
        pos = obj.key_pos[key]
        if not isinstance(value, list):
            self.fail(pos, f"{key} must be a list, not {_kind(value)}")
        if not lo <= len(value) <= hi:
            self.fail(pos, f"{key} must have {lo} to {hi} entries, not {len(value)}")
        return value

    def string(
        self,
        obj: PosDict,
        key: str,
        *,
        pattern: re.Pattern[str] | None = None,
        allow_empty: bool = False,
        hi: int | None = None,
        max_bytes: int | None = None,
    ) -> str:
        value = obj[key]
        pos = obj.key_pos[key]
        if not isinstance(value, str):
            self.fail(pos, f"{key} must be a string, not {_kind(value)}")
        if pattern is not None and pattern.fullmatch(value) is None:
            self.fail(pos, f"{key} {_show(value)} must match {pattern.pattern}")
        if not allow_empty and not value.strip():
            self.fail(pos, f"{key} must not be empty")
        if hi is not None and len(value) > hi:
            self.fail(pos, f"{key} is longer than {hi} characters")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800"
            self.fail(pos, f"{key} is not valid Unicode")
        if max_bytes is not None and size > max_bytes:
            self.fail(pos, f"{key} is larger than {max_bytes} bytes")
        return value

    def integer(self, obj: PosDict, key: str, *, lo: int, hi: int, what: str = "") -> int:
        value = obj[key]
        if type(value) is not int or not lo <= value <= hi:
            self.fail(
                obj.key_pos[key],
                f"{what or key} must be an integer from {lo} to {hi}, not {_short(value)}",
            )
        return value


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


def _short(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    return _kind(value)


def _show(value: str, limit: int = 64) -> str:
    """A user string quoted for a message, cut short so messages stay small."""
    return json.dumps(value if len(value) <= limit else value[:limit] + "…", ensure_ascii=False)
