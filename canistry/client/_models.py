"""What the client returns: typed, frozen dataclasses built from the API's JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

__all__ = [
    "ApiError",
    "Balance",
    "Choice",
    "ClusterInfo",
    "Me",
    "Profile",
    "Question",
    "Registration",
    "ShardInfo",
    "SubmissionResult",
    "Today",
    "Unit",
    "UnitPage",
    "UnitSummary",
]


class ApiError(Exception):
    """A problem document (RFC 9457) the gateway answered with.

    ``code`` is the stable last segment of ``type`` (``"daily-limit-exceeded"``);
    ``retry_after`` is the ``Retry-After`` header in seconds, if any.
    """

    def __init__(self, status: int, problem: dict[str, Any], retry_after: float | None) -> None:
        self.status = status
        self.problem = problem
        self.type: str = str(problem.get("type", "about:blank"))
        self.code: str = self.type.rsplit("/", 1)[-1]
        self.title: str = str(problem.get("title", ""))
        self.detail: str = str(problem.get("detail", ""))
        self.request_id: str | None = problem.get("request_id")
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {self.detail or self.title}")

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            problem = response.json()
            if not isinstance(problem, dict):
                raise ValueError
        except ValueError:
            problem = {"type": "about:blank", "title": response.reason_phrase,
                       "detail": response.text[:200]}  # fmt: skip
        return cls(response.status_code, problem, retry_after(response))


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Profile:
    name: str
    email: str
    education: str
    gender: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Profile:
        return cls(d["name"], d["email"], d["education"], d["gender"])


@dataclass(frozen=True)
class Registration:
    principal: str
    shard: str
    profile: Profile
    created: bool
    """True for 201 (a new user), False for 200 (already registered)."""

    @classmethod
    def from_json(cls, d: dict[str, Any], *, created: bool) -> Registration:
        return cls(d["principal"], d["shard"], Profile.from_json(d["profile"]), created)


@dataclass(frozen=True)
class Today:
    day: str
    attempts: int
    earned: int
    attempts_left: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Today:
        return cls(d["day"], d["attempts"], d["earned"], d["attempts_left"])


@dataclass(frozen=True)
class Balance:
    staked: int
    pending: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Balance:
        return cls(d["staked"], d["pending"])


@dataclass(frozen=True)
class Me:
    principal: str
    shard: str
    profile: Profile
    completed_units: tuple[str, ...]
    today: Today
    balance: Balance

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Me:
        return cls(
            d["principal"],
            d["shard"],
            Profile.from_json(d["profile"]),
            tuple(d["completed_units"]),
            Today.from_json(d["today"]),
            Balance.from_json(d["balance"]),
        )


@dataclass(frozen=True)
class UnitSummary:
    id: str
    subject: str
    title: str
    reward: int
    version: int
    question_count: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UnitSummary:
        return cls(d["id"], d["subject"], d["title"], d["reward"], d["version"],
                   d["question_count"])  # fmt: skip


@dataclass(frozen=True)
class UnitPage:
    units: tuple[UnitSummary, ...]
    next_cursor: str | None
    etag: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any], *, etag: str | None) -> UnitPage:
        return cls(tuple(UnitSummary.from_json(u) for u in d["units"]), d["next_cursor"], etag)


@dataclass(frozen=True)
class Choice:
    id: str
    text: str


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class Unit:
    id: str
    subject: str
    title: str
    body: str
    reward: int
    version: int
    pass_score: int
    questions: tuple[Question, ...]
    etag: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any], *, etag: str | None) -> Unit:
        quiz = d["quiz"]
        questions = tuple(
            Question(q["id"], q["prompt"], tuple(Choice(c["id"], c["text"]) for c in q["choices"]))
            for q in quiz["questions"]
        )
        return cls(d["id"], d["subject"], d["title"], d["body"], d["reward"], d["version"],
                   quiz["pass_score"], questions, etag)  # fmt: skip


@dataclass(frozen=True)
class SubmissionResult:
    passed: bool
    score: int
    total: int
    reward: int
    first_completion: bool
    balance: int
    pending: int
    attempts_today: int
    attempts_left: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubmissionResult:
        return cls(**{f: d[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ShardInfo:
    id: str
    state: str
    users: int
    capacity: int
    template_version: str = ""


@dataclass(frozen=True)
class ClusterInfo:
    shards: tuple[ShardInfo, ...]
    soft_limit: int
    total_granted: int
    cap: int
    total_staked: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ClusterInfo:
        shards = tuple(ShardInfo(s["id"], s["state"], s["users"], s["capacity"],
                                 s.get("template_version", "")) for s in d["shards"])  # fmt: skip
        return cls(shards, d["soft_limit"], d["total_granted"], d["cap"], d["total_staked"])


@dataclass(frozen=True)
class ShardResult:
    """What carrying out a proposal did to one shard."""

    shard: str
    ok: bool
    detail: str
    template_version: str


@dataclass(frozen=True)
class Proposal:
    """A governance proposal: ``state`` is open, adopted, rejected, executing, executed
    or failed; ``action`` is ``{kind, shard?, template?, template_version?}``."""

    id: int
    action: dict[str, Any]
    title: str
    summary: str
    proposer: str
    state: str
    yes: int
    no: int
    total_voting_power: int
    deadline: str
    deadline_ms: int
    results: tuple[ShardResult, ...]
    detail: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Proposal:
        results = tuple(ShardResult(**r) for r in d["results"])
        return cls(**{f: d[f] for f in cls.__dataclass_fields__ if f != "results"}, results=results)


@dataclass(frozen=True)
class ProposalPage:
    proposals: tuple[Proposal, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProposalPage:
        return cls(tuple(Proposal.from_json(p) for p in d["proposals"]), d["next_cursor"])


@dataclass(frozen=True)
class VoteResult:
    voting_power: int
    yes: int
    no: int
    state: str

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VoteResult:
        return cls(**{f: d[f] for f in cls.__dataclass_fields__})
