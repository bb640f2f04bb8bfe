"""Each API call as data: what to send and how to read the answer. Shared by both clients.

A :class:`Call` is built by one function per route; :func:`build_request`
turns it into a signed ``httpx.Request``; :func:`retry_wait` says whether an
error answer is worth another try (503 or 409-in-flight with ``Retry-After``)
within the caller's budget.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from canistry.client._identity import Identity
from canistry.client._models import (
    ApiError,
    Balance,
    ClusterInfo,
    Me,
    Proposal,
    ProposalPage,
    Registration,
    SubmissionResult,
    Unit,
    UnitPage,
    VoteResult,
)

__all__ = ["Call", "build_request", "retry_wait"]

T = TypeVar("T")

_RETRYABLE = {503: None, 409: "idempotency-key-in-flight"}


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    signed: bool = True
    json: Any = None
    params: Mapping[str, str | int] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (200,)


def build_request(
    http: httpx.Client | httpx.AsyncClient, identity: Identity | None, call: Call[Any]
) -> httpx.Request:
    """A new request for ``call``, freshly signed (new ts and nonce) if it needs signing."""
    request = http.build_request(
        call.method, call.path, params=call.params, json=call.json, headers=dict(call.headers)
    )
    if call.signed:
        if identity is None:
            raise RuntimeError(f"{call.method} {call.path} is signed: give the client an identity")
        path = request.url.raw_path.decode("ascii")
        request.headers["Authorization"] = identity.authorization(
            call.method, path, request.content
        )
    return request


def retry_wait(error: ApiError, deadline: float) -> float | None:
    """Seconds to wait before retrying, or None to give up and raise."""
    if error.status not in _RETRYABLE or error.retry_after is None:
        return None
    needed = _RETRYABLE[error.status]
    if needed is not None and error.code != needed:
        return None
    wait = max(0.05, min(error.retry_after, 5.0))
    return wait if time.monotonic() + wait <= deadline else None


def _json(response: httpx.Response) -> Any:
    return response.json()


def register(
    name: str, email: str, education: str, gender: str, key: str | None
) -> Call[Registration]:
    return Call(
        "POST",
        "/v1/users",
        lambda r: Registration.from_json(_json(r), created=r.status_code == 201),
        json={"name": name, "email": email, "education": education, "gender": gender},
        headers=_key(key),
        ok=(200, 201),
    )


def me() -> Call[Me]:
    return Call("GET", "/v1/me", lambda r: Me.from_json(_json(r)))


def update_profile(fields: Mapping[str, str | None], key: str | None) -> Call[Me]:
    body = {k: v for k, v in fields.items() if v is not None}
    return Call("PATCH", "/v1/me", lambda r: Me.from_json(_json(r)), json=body, headers=_key(key))


def balance() -> Call[Balance]:
    return Call("GET", "/v1/me/balance", lambda r: Balance.from_json(_json(r)))


def units(subject: str | None, cursor: str | None, limit: int | None) -> Call[UnitPage]:
    params: dict[str, str | int] = {}
    if subject is not None:
        params["subject"] = subject
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    return Call(
        "GET",
        "/v1/units",
        lambda r: UnitPage.from_json(_json(r), etag=r.headers.get("ETag")),
        signed=False,
        params=params,
    )


def unit(unit_id: str, etag: str | None) -> Call[Unit | None]:
    def parse(r: httpx.Response) -> Unit | None:
        if r.status_code == 304:
            return None
        return Unit.from_json(_json(r), etag=r.headers.get("ETag"))

    headers = {"If-None-Match": etag} if etag is not None else {}
    return Call("GET", f"/v1/units/{unit_id}", parse, signed=False, headers=headers, ok=(200, 304))


def submit(unit_id: str, answers: Mapping[str, str], key: str | None) -> Call[SubmissionResult]:
    # Always keyed: a retry after a lost answer or a 503 must not count twice.
    return Call(
        "POST",
        f"/v1/units/{unit_id}/submissions",
        lambda r: SubmissionResult.from_json(_json(r)),
        json={"answers": dict(answers)},
        headers=_key(key if key is not None else uuid.uuid4().hex),
    )


def cluster() -> Call[ClusterInfo]:
    return Call("GET", "/v1/cluster", lambda r: ClusterInfo.from_json(_json(r)), signed=False)


def propose(
    kind: str, title: str, summary: str, shard: str | None, template: str | None
) -> Call[Proposal]:
    action: dict[str, str] = {"kind": kind}
    if shard is not None:
        action["shard"] = shard
    if template is not None:
        action["template"] = template
    return Call(
        "POST",
        "/v1/proposals",
        lambda r: Proposal.from_json(_json(r)),
        json={"action": action, "title": title, "summary": summary},
        ok=(201,),
    )


def proposal(proposal_id: int) -> Call[Proposal]:
    return Call(
        "GET", f"/v1/proposals/{proposal_id}", lambda r: Proposal.from_json(_json(r)), signed=False
    )


def proposals(cursor: str | None, limit: int | None) -> Call[ProposalPage]:
    params: dict[str, str | int] = {}
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    return Call(
        "GET",
        "/v1/proposals",
        lambda r: ProposalPage.from_json(_json(r)),
        signed=False,
        params=params,
    )


def vote(proposal_id: int, yes: bool) -> Call[VoteResult]:
    return Call(
        "POST",
        f"/v1/proposals/{proposal_id}/votes",
        lambda r: VoteResult.from_json(_json(r)),
        json={"vote": "yes" if yes else "no"},
    )


def health(path: str) -> Call[dict[str, Any]]:
    return Call("GET", path, _json, signed=False)


def _key(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key is not None else {}
