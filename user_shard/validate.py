"""Input rules for the shard's RPCs, checked before anything is read or written.

Every check raises :class:`~runtime.errors.InvalidArgument` with a message a
user can act on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from protos import shard_pb2
from runtime.errors import InvalidArgument
from runtime.principals import check_principal

__all__ = [
    "PROFILE_FIELDS",
    "merge_profile",
    "request_fingerprint",
    "validate_principal",
    "validate_profile",
    "validate_submission",
]

MAX_UNIT_ID = 200
MAX_ANSWERS = 200
MAX_ANSWER_PART = 100
MAX_IDEMPOTENCY_KEY = 200
MAX_NAME = 100
MAX_EMAIL = 254
MAX_SHORT_FIELD = 50

#: The profile fields an update may name.
PROFILE_FIELDS = ("name", "email", "education", "gender")


def validate_principal(principal: str) -> bytes:
    """The principal's store key; raises as :func:`runtime.principals.check_principal`."""
    return check_principal(principal).encode()


def _check_field(profile: shard_pb2.Profile, name: str) -> None:
    value: str = getattr(profile, name)
    if name == "name":
        if not value.strip():
            raise InvalidArgument("name is required")
        if len(value) > MAX_NAME:
            raise InvalidArgument(f"name is longer than {MAX_NAME} characters")
    elif name == "email":
        if "@" not in value:
            raise InvalidArgument("email must contain @")
        if len(value) > MAX_EMAIL:
            raise InvalidArgument(f"email is longer than {MAX_EMAIL} characters")
    elif len(value) > MAX_SHORT_FIELD:
        raise InvalidArgument(f"{name} is longer than {MAX_SHORT_FIELD} characters")


def validate_profile(profile: shard_pb2.Profile) -> None:
    """A whole profile, as given at registration."""
    for name in PROFILE_FIELDS:
        _check_field(profile, name)


def merge_profile(
    current: shard_pb2.Profile, change: shard_pb2.Profile, fields: Sequence[str]
) -> shard_pb2.Profile:
    """``current`` with the named ``fields`` taken from ``change``; validated.

    Raises InvalidArgument for an empty or unknown field name.
    """
    if not fields:
        raise InvalidArgument("name at least one field to change")
    unknown = sorted(set(fields) - set(PROFILE_FIELDS))
    if unknown:
        raise InvalidArgument(
            f"unknown profile field(s): {', '.join(unknown)}; known: {', '.join(PROFILE_FIELDS)}"
        )
    merged = shard_pb2.Profile()
    merged.CopyFrom(current)
    for name in set(fields):
        setattr(merged, name, getattr(change, name))
        _check_field(merged, name)
    return merged


def validate_submission(request: shard_pb2.SubmitQuizRequest) -> None:
    validate_principal(request.principal)
    if not request.unit_id:
        raise InvalidArgument("unit_id is required")
    if len(request.unit_id) > MAX_UNIT_ID:
        raise InvalidArgument(f"unit_id is longer than {MAX_UNIT_ID} characters")
    if not request.answers:
        raise InvalidArgument("answers must not be empty")
    if len(request.answers) > MAX_ANSWERS:
        raise InvalidArgument(f"more than {MAX_ANSWERS} answers")
    for question, choice in request.answers.items():
        if not question or not choice:
            raise InvalidArgument("answers must map question ids to choice ids")
        if len(question) > MAX_ANSWER_PART or len(choice) > MAX_ANSWER_PART:
            raise InvalidArgument(f"answer ids are limited to {MAX_ANSWER_PART} characters")
    if len(request.idempotency_key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidArgument(f"idempotency key is longer than {MAX_IDEMPOTENCY_KEY} characters")


def request_fingerprint(unit_id: str, answers: Mapping[str, str]) -> bytes:
    """A digest of what a submission asks, to tell a replay from a reused key."""
    digest = hashlib.sha256()
    for part in (unit_id, *(x for q in sorted(answers) for x in (q, answers[q]))):
        raw = part.encode()
        digest.update(len(raw).to_bytes(4, "big"))
        digest.update(raw)
    return digest.digest()
