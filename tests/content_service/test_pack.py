import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from content_service import load_sample_pack, parse_pack
from content_service.pack import MAX_BODY_BYTES, unit_digest
from runtime.errors import BadContentPack, InvalidArgument
from tests.content_service.helpers import dump, line_of, make_unit

Units = list[dict[str, Any]]


def two_units() -> Units:
    return [make_unit("math-001", "math"), make_unit("sci-001", "science")]


def set_in(path: tuple[Any, ...], value: Any) -> Callable[[Units], None]:
    def mutate(units: Units) -> None:
        target: Any = units
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


def delete(path: tuple[Any, ...]) -> Callable[[Units], None]:
    def mutate(units: Units) -> None:
        target: Any = units
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return mutate


Q = (1, "quiz", "questions")  # the second unit's questions


def at(needle: str, occurrence: int = 1, delta: int = 0) -> Callable[[str], int]:
    """Where the error should point: the line of a needle's n-th occurrence, plus delta."""
    return lambda text: line_of(text, needle, occurrence) + delta


# (name, mutation, fragment of the message, where the message's line should be)
CASES: list[tuple[str, Callable[[Units], None], str, Callable[[str], int]]] = [
    (
        "answer-not-a-choice",
        set_in((*Q, 0, "answer"), "z"),
        'unit "sci-001": question "q1": answer "z" is not one of its choices',
        at('"answer": "z"'),
    ),
    ("bad-unit-id", set_in((1, "id"), "Sci 1"), 'unit #2: id "Sci 1" must match', at('"Sci 1"')),
    (
        "duplicate-unit-id",
        set_in((1, "id"), "math-001"),
        'unit "math-001": duplicate unit id (first on line 4)',
        at('"id": "math-001"', 2),
    ),
    ("empty-subject", set_in((1, "subject"), ""), 'subject "" must match', at('"subject": ""')),
    ("empty-title", set_in((1, "title"), "   "), "title must not be empty", at('"title": "   "')),
    (
        "title-not-string",
        set_in((1, "title"), 7),
        "title must be a string, not a number",
        at('"title": 7'),
    ),
    (
        "negative-reward",
        set_in((1, "reward"), -1),
        "reward must be an integer from 0",
        at('"reward": -1'),
    ),
    ("huge-reward", set_in((1, "reward"), 1_000_001), "not 1000001", at('"reward": 1000001')),
    ("float-reward", set_in((1, "reward"), 2.5), "not 2.5", at('"reward": 2.5')),
    ("bool-reward", set_in((1, "reward"), True), "not true/false", at('"reward": true')),
    ("string-reward", set_in((1, "reward"), "10"), "not a string", at('"reward": "10"')),
    ("no-questions", set_in(Q, []), "questions must have 1 to 50 entries", at('"questions": []')),
    (
        "duplicate-question-id",
        set_in((*Q, 2, "id"), "q1"),
        'question "q1": duplicate question id (first on line',
        at('"id": "q1"', 3),
    ),
    (
        "one-choice",
        set_in((*Q, 1, "choices"), [{"id": "a", "text": "x"}]),
        'question "q2": choices must have 2 to 10 entries, not 1',
        at('"choices"', 5),
    ),
    (
        "duplicate-choice-id",
        set_in((*Q, 1, "choices", 1, "id"), "a"),
        'question "q2": choice "a": duplicate choice id',
        at('"id": "a"', 6),
    ),
    (
        "pass-score-zero",
        set_in((1, "quiz", "pass_score"), 0),
        "quiz pass_score must be an integer from 1 to 3",
        at('"pass_score": 0'),
    ),
    ("pass-score-too-high", set_in((1, "quiz", "pass_score"), 4), "not 4", at('"pass_score": 4')),
    ("unknown-unit-key", set_in((1, "level"), 3), 'unknown key "level"', at('"level": 3')),
    (
        "unknown-question-key",
        set_in((*Q, 0, "hint"), "h"),
        'question "q1": unknown key "hint"',
        at('"hint"'),
    ),
    (
        "unknown-choice-key",
        set_in((*Q, 0, "choices", 0, "ok"), 1),
        'question "q1": choice #1: unknown key "ok"',
        at('"ok": 1'),
    ),
    # A missing key is reported at the object's opening brace.
    (
        "missing-body",
        delete((1, "body")),
        'unit "sci-001": missing key "body"',
        at('"sci-001"', 1, -1),
    ),
    ("missing-unit-id", delete((1, "id")), 'unit #2: missing key "id"', at('"science"', 1, -1)),
    (
        "missing-question-id",
        delete((*Q, 1, "id")),
        'unit "sci-001": question #2: missing key "id"',
        at('"prompt": "Question 2 of sci-001?"', 1, -1),
    ),
    (
        "missing-choice-id",
        delete((*Q, 0, "choices", 0, "id")),
        'choice #1: missing key "id"',
        at('"text": "right"', 4, -1),
    ),
    (
        "missing-answer",
        delete((*Q, 0, "answer")),
        'question "q1": missing key "answer"',
        at('"id": "q1"', 2, -1),
    ),
    (
        "huge-body",
        set_in((1, "body"), "x" * (MAX_BODY_BYTES + 1)),
        "body is larger than 204800 bytes",
        at('"body": "xxx'),
    ),
    (
        "quiz-not-object",
        set_in((1, "quiz"), []),
        "quiz must be an object, not a list",
        at('"quiz": []'),
    ),
    (
        "unit-not-object",
        set_in((1,), "math-002"),
        "unit #2: it must be an object, not a string",
        at('"units"'),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "fragment", "where"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_rejects_the_pack_naming_line_and_reason(
    mutate: Callable[[Units], None], fragment: str, where: Callable[[str], int]
) -> None:
    units = two_units()
    mutate(units)
    text = dump(units)
    with pytest.raises(BadContentPack) as info:
        parse_pack(text)
    message = info.value.message
    assert fragment in message
    assert message.startswith(f"line {where(text)}: "), message


def test_the_design_example_reads_as_documented() -> None:
    unit = make_unit("math-001")
    unit["quiz"]["questions"][0]["answer"] = "z"
    text = dump([unit])
    with pytest.raises(BadContentPack) as info:
        parse_pack(text)
    line = line_of(text, '"answer": "z"')
    assert info.value.message == (
        f'line {line}: unit "math-001": question "q1": answer "z" is not one of its choices'
    )
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize(
    ("text", "fragment", "line"),
    [
        ('{"units": [\n  {"id": "a",\n', "invalid JSON", 3),
        ('{"units": [],\n "units": []}', 'invalid JSON: duplicate key "units"', 2),
        ("[]", "a pack must be a JSON object with a units list, not a list", 1),
        ("{}", 'missing key "units"', 1),
        ('{"units": []}', "units must have 1 to", 1),
        ('{\n"units": {}}', "units must be a list, not an object", 2),
        ("", "invalid JSON", 1),
        ('{"units": [' * 5000, "invalid JSON", 1),
    ],
    ids=[
        "truncated",
        "duplicate-key",
        "not-object",
        "no-units",
        "empty",
        "units-object",
        "empty-text",
        "deep",
    ],
)
def test_structural_errors(text: str, fragment: str, line: int) -> None:
    with pytest.raises(BadContentPack) as info:
        parse_pack(text)
    assert fragment in info.value.message
    if "nested too deeply" not in info.value.message:
        assert info.value.message.startswith(f"line {line}: ")


def test_unknown_top_level_key_and_oddities() -> None:
    text = dump([make_unit()], version=2)
    line = line_of(text, '"version"')
    with pytest.raises(BadContentPack, match=f'^line {line}: unknown key "version"'):
        parse_pack(text)
    # A lone surrogate would break protobuf encoding later: refuse it now.
    text = dump([make_unit()]).replace('"Fractions"', '"bad \\ud800"')
    with pytest.raises(BadContentPack, match="title is not valid Unicode"):
        parse_pack(text)
    text = dump([make_unit()]).replace('"reward": 50', '"reward": ' + "9" * 5000)
    with pytest.raises(BadContentPack, match="reward must be an integer"):
        parse_pack(text)
    text = dump([make_unit()]).replace('"reward": 50', '"reward": NaN')
    with pytest.raises(BadContentPack, match="reward must be an integer"):
        parse_pack(text)


def test_parsed_units_carry_answers_and_a_stable_digest() -> None:
    units = parse_pack(dump(two_units()))
    assert [u.unit.id for u in units] == ["math-001", "sci-001"]
    first = units[0]
    assert dict(first.answers) == {"q1": "a", "q2": "a", "q3": "a"}
    assert first.unit.version == 0
    assert first.unit.quiz.pass_score == 2
    assert [c.id for c in first.unit.quiz.questions[0].choices] == ["a", "b"]
    assert first.unit.digest == unit_digest(first) and len(first.unit.digest) == 64

    # Key order and whitespace do not change the digest; content and answers do.
    reordered = json.dumps({"units": [dict(reversed(list(two_units()[0].items())))]})
    assert parse_pack(reordered)[0].unit.digest == first.unit.digest
    changed = two_units()
    changed[0]["quiz"]["questions"][0]["choices"][1]["id"] = "c"
    changed[0]["quiz"]["questions"][0]["answer"] = "c"
    assert parse_pack(dump(changed))[0].unit.digest != first.unit.digest


def test_the_sample_pack_is_valid_and_big_enough() -> None:
    units = parse_pack(load_sample_pack())
    assert len(units) >= 30
    subjects = Counter(u.unit.subject for u in units)
    assert len(subjects) >= 3
    for stored in units:
        unit = stored.unit
        assert 10 <= unit.reward <= 100
        assert unit.body.strip() and unit.title.strip()
        assert len(unit.quiz.questions) == 3 and unit.quiz.pass_score == 2
        for q in unit.quiz.questions:
            assert 2 <= len(q.choices) <= 4
            assert stored.answers[q.id] in {c.id for c in q.choices}


def test_any_mangled_pack_is_a_bad_pack_never_a_crash() -> None:
    """Deterministic fuzz: wrong types, missing keys and broken text all read as BadContentPack."""
    rng = random.Random(7)
    base = dump(two_units())
    values: list[Any] = [None, True, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, "A" * 300]

    def paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        children = (
            value.items()
            if isinstance(value, dict)
            else (enumerate(value) if isinstance(value, list) else ())
        )
        return [path] + [p for k, v in children for p in paths(v, (*path, k))]

    spots = paths(json.loads(base))[1:]
    for i in range(1500):
        if i % 2:
            chars = list(base)
            pos = rng.randrange(len(chars))
            chars[pos : pos + 1] = rng.choice(["", "{", "]", ",", ":", '"', "0", "\\"])
            text = "".join(chars)
        else:
            doc = json.loads(base)
            *parents, last = rng.choice(spots)
            target = doc
            for step in parents:
                target = target[step]
            if isinstance(target, dict) and rng.random() < 0.3:
                del target[last]
            else:
                target[last] = rng.choice(values)
            text = json.dumps(doc, indent=2)
        try:
            parse_pack(text)
        except BadContentPack as exc:
            assert exc.message.startswith("line "), exc.message
