"""Protobuf replies to the JSON bodies the API sends (see :mod:`gateway.models`). Pure."""

from __future__ import annotations

import json
from typing import Any

from protos import content_pb2, hub_pb2, registry_pb2, shard_pb2

__all__ = [
    "balance_view",
    "cluster_view",
    "dumps",
    "me_view",
    "profile_view",
    "registration_view",
    "submission_body",
    "submission_view",
    "unit_page_view",
    "unit_view",
]

_STATES = {
    registry_pb2.SHARD_STATE_ACTIVE: "active",
    registry_pb2.SHARD_STATE_FULL: "full",
    registry_pb2.SHARD_STATE_DISABLED: "disabled",
}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def profile_view(p: shard_pb2.Profile) -> dict[str, str]:
    return {"name": p.name, "email": p.email, "education": p.education, "gender": p.gender}


def registration_view(principal: str, shard_id: str, reply: shard_pb2.UserReply) -> dict[str, Any]:
    return {"principal": principal, "shard": shard_id, "profile": profile_view(reply.user.profile)}


def balance_view(staked: int, pending: int) -> dict[str, int]:
    return {"staked": staked, "pending": pending}


def me_view(principal: str, shard_id: str, reply: shard_pb2.UserReply) -> dict[str, Any]:
    u = reply.user
    return {
        "principal": principal,
        "shard": shard_id,
        "profile": profile_view(u.profile),
        "completed_units": list(u.completed_units),
        "today": {
            "day": u.today.day,
            "attempts": u.today.attempts,
            "earned": u.today.earned,
            "attempts_left": reply.attempts_left,
        },
        "balance": balance_view(u.staked, u.pending),
    }


def submission_view(r: shard_pb2.SubmitQuizReply) -> dict[str, Any]:
    return {
        "passed": r.passed,
        "score": r.score,
        "total": r.total,
        "reward": r.reward,
        "first_completion": r.first_completion,
        "balance": r.balance,
        "pending": r.pending,
        "attempts_today": r.attempts_today,
        "attempts_left": r.attempts_left,
    }


_SUBMISSION = (
    b'{"passed":%s,"score":%d,"total":%d,"reward":%d,"first_completion":%s,'
    b'"balance":%d,"pending":%d,"attempts_today":%d,"attempts_left":%d}'
)
_JSON_BOOL = {False: b"false", True: b"true"}


def submission_body(r: shard_pb2.SubmitQuizReply) -> bytes:
    """``dumps(submission_view(r))``, byte for byte, without the dict and the encoder:
    every submission sends one."""
    return _SUBMISSION % (
        _JSON_BOOL[r.passed],
        r.score,
        r.total,
        r.reward,
        _JSON_BOOL[r.first_completion],
        r.balance,
        r.pending,
        r.attempts_today,
        r.attempts_left,
    )


def unit_view(u: content_pb2.Unit) -> dict[str, Any]:
    return {
        "id": u.id,
        "subject": u.subject,
        "title": u.title,
        "body": u.body,
        "reward": u.reward,
        "version": u.version,
        "quiz": {
            "pass_score": u.quiz.pass_score,
            "questions": [
                {
                    "id": q.id,
                    "prompt": q.prompt,
                    "choices": [{"id": c.id, "text": c.text} for c in q.choices],
                }
                for q in u.quiz.questions
            ],
        },
    }


def unit_page_view(page: content_pb2.ListUnitsReply) -> dict[str, Any]:
    return {
        "units": [
            {
                "id": s.id,
                "subject": s.subject,
                "title": s.title,
                "reward": s.reward,
                "version": s.version,
                "question_count": s.question_count,
            }
            for s in page.units
        ],
        "next_cursor": page.next_cursor or None,
    }


def cluster_view(
    d: registry_pb2.ShardDirectory,
    t: hub_pb2.Treasury,
    versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``versions``: the template version each shard runs, as the hub recorded it."""
    versions = versions or {}
    return {
        "shards": [
            {
                "id": s.shard_id,
                "state": _STATES.get(s.state, "unknown"),
                "users": s.users,
                "capacity": s.hard_limit or d.hard_limit,
                "template_version": versions.get(s.shard_id, ""),
            }
            for s in d.shards
        ],
        "soft_limit": d.soft_limit,
        "total_granted": t.total_granted,
        "cap": t.cap,
        "total_staked": t.total_staked,
    }
