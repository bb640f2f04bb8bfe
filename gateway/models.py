"""The HTTP API's request and response schemas (pydantic), as OpenAPI shows them.

Requests are validated here, before anything reaches a service: a body that
fails gets a 422 problem document. Responses are built by
:mod:`gateway.views` as plain JSON; these models document them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "SLUG_PATTERN",
    "Balance",
    "ClusterView",
    "Health",
    "Me",
    "ProblemDocument",
    "Profile",
    "ProfilePatch",
    "Ready",
    "RegisterRequest",
    "Registration",
    "ShardView",
    "SubmissionRequest",
    "SubmissionResult",
    "Today",
    "Unit",
    "UnitPage",
    "UnitSummary",
]

#: Unit ids and subjects (the content service's slug rule).
SLUG_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def _encodable(value: str) -> str:
    # JSON may carry lone surrogates ("\ud800"), which no service can store.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_encodable)]
Name = Annotated[Text, Field(min_length=1, max_length=100), AfterValidator(_not_blank)]
Email = Annotated[Text, Field(min_length=3, max_length=254, pattern="@")]
Short = Annotated[Text, Field(max_length=50)]
AnswerId = Annotated[Text, Field(min_length=1, max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Strict):
    """``POST /v1/users``: the new user's profile."""

    name: Name
    email: Email
    education: Short = ""
    gender: Short = ""


class ProfilePatch(_Strict):
    """``PATCH /v1/me``: the fields to change; at least one."""

    name: Name | None = None
    email: Email | None = None
    education: Short | None = None
    gender: Short | None = None

    @model_validator(mode="after")
    def _some_field(self) -> ProfilePatch:
        if not self.fields():
            raise ValueError("name at least one of name, email, education, gender")
        return self

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class SubmissionRequest(_Strict):
    """``POST /v1/units/{unit_id}/submissions``: question id -> choice id."""

    answers: Annotated[dict[AnswerId, AnswerId], Field(min_length=1, max_length=200)]


class Profile(BaseModel):
    name: str
    email: str
    education: str
    gender: str


class Registration(BaseModel):
    principal: str
    shard: str
    profile: Profile


class Today(BaseModel):
    day: str = Field(description="UTC day, YYYY-MM-DD")
    attempts: int
    earned: int
    attempts_left: int


class Balance(BaseModel):
    staked: int = Field(description="tokens credited to the user")
    pending: int = Field(description="tokens earned, waiting for the shard's allowance")


class Me(BaseModel):
    principal: str
    shard: str
    profile: Profile
    completed_units: list[str]
    today: Today
    balance: Balance


class UnitSummary(BaseModel):
    id: str
    subject: str
    title: str
    reward: int
    version: int
    question_count: int


class UnitPage(BaseModel):
    units: list[UnitSummary]
    next_cursor: str | None = Field(description="pass back as ?cursor= for the next page")


class Choice(BaseModel):
    id: str
    text: str


class Question(BaseModel):
    id: str
    prompt: str
    choices: list[Choice]


class Quiz(BaseModel):
    pass_score: int
    questions: list[Question]


class Unit(BaseModel):
    id: str
    subject: str
    title: str
    body: str
    reward: int
    version: int
    quiz: Quiz


class SubmissionResult(BaseModel):
    passed: bool
    score: int
    total: int
    reward: int = Field(description="earned by this submission (credited or pending)")
    first_completion: bool
    balance: int = Field(description="staked after this submission")
    pending: int
    attempts_today: int
    attempts_left: int


class ShardView(BaseModel):
    id: str
    state: Literal["active", "full", "disabled", "unknown"]
    users: int
    capacity: int
    template_version: str


class ClusterView(BaseModel):
    shards: list[ShardView]
    soft_limit: int
    total_granted: int
    cap: int
    total_staked: int


class Health(BaseModel):
    status: Literal["ok"]
    worker: int = Field(description="the answering worker's process id")


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


class ProblemDocument(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = Field(description="stable: https://canistry.dev/problems/<code>")
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="for validation-error: where and why"
    )
