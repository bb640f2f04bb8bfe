import pytest

from content_service import parse_pack, verify
from runtime.errors import InvalidArgument
from tests.content_service.helpers import dump, make_unit


@pytest.fixture(scope="module")
def stored():
    return parse_pack(dump([make_unit("math-001", questions=3, pass_score=2)]))[0]


@pytest.mark.parametrize(
    ("answers", "score", "passed"),
    [
        ({"q1": "a", "q2": "a", "q3": "a"}, 3, True),
        ({"q1": "a", "q2": "b", "q3": "a"}, 2, True),
        ({"q1": "a", "q2": "b", "q3": "b"}, 1, False),
        ({"q1": "a", "q2": "a"}, 2, True),  # a left-out question counts as wrong
        ({"q3": "a"}, 1, False),
        ({}, 0, False),
    ],
)
def test_score_and_pass(stored, answers, score, passed) -> None:
    result = verify(stored, answers)
    assert (result.score, result.total, result.passed) == (score, 3, passed)


@pytest.mark.parametrize(
    ("answers", "fragment"),
    [
        (
            {"q1": "a", "q2": "a", "q3": "a", "q4": "a"},
            "4 answers given but the quiz has 3 questions",
        ),
        ({"q9": "a"}, 'no question "q9"'),
        ({"q1": "z"}, 'question "q1": no choice "z"'),
        ({"": "a"}, "empty question id"),
        ({"q1": ""}, 'question "q1": empty choice id'),
        ({"q1": "x" * 1000}, "…"),  # echoed user input stays short
    ],
)
def test_malformed_answers_are_invalid_not_wrong(stored, answers, fragment) -> None:
    with pytest.raises(InvalidArgument) as info:
        verify(stored, answers)
    assert fragment in info.value.message
    assert info.value.message.startswith('unit "math-001": ')
    assert len(info.value.message) < 200
