"""The asyncio client (httpx.AsyncClient)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from canistry.client import _calls as calls
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

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient:
    """Signs requests with ``identity`` and returns typed results; raises :class:`ApiError`.

    ``retry_unavailable_s`` is how long, in all, one call may keep retrying
    answers that say "try again" (503, or 409 while the same idempotency key
    is in flight) after their ``Retry-After``; 0 raises at once. Each retry is
    signed anew. Submissions always carry an ``Idempotency-Key`` (one is made
    if none is given), so a retry never counts twice.
    """

    def __init__(
        self,
        base_url: str,
        identity: Identity | None = None,
        *,
        timeout_s: float = 10.0,
        retry_unavailable_s: float = 0.0,
        transport: httpx.AsyncBaseTransport | None = None,
        limits: httpx.Limits | None = None,
    ) -> None:
        self.identity = identity
        self.retry_unavailable_s = retry_unavailable_s
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout_s,
            transport=transport,
            limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _run(self, call: calls.Call[T]) -> T:
        deadline = time.monotonic() + self.retry_unavailable_s
        while True:
            response = await self.http.send(calls.build_request(self.http, self.identity, call))
            if response.status_code in call.ok:
                return call.parse(response)
            error = ApiError.from_response(response)
            wait = calls.retry_wait(error, deadline)
            if wait is None:
                raise error
            await asyncio.sleep(wait)

    async def register(
        self,
        name: str,
        email: str,
        education: str = "",
        gender: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Registration:
        return await self._run(calls.register(name, email, education, gender, idempotency_key))

    async def me(self) -> Me:
        return await self._run(calls.me())

    async def update_profile(
        self,
        *,
        name: str | None = None,
        email: str | None = None,
        education: str | None = None,
        gender: str | None = None,
        idempotency_key: str | None = None,
    ) -> Me:
        fields = {"name": name, "email": email, "education": education, "gender": gender}
        return await self._run(calls.update_profile(fields, idempotency_key))

    async def balance(self) -> Balance:
        return await self._run(calls.balance())

    async def units(
        self, subject: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> UnitPage:
        return await self._run(calls.units(subject, cursor, limit))

    async def unit(self, unit_id: str) -> Unit:
        unit = await self._run(calls.unit(unit_id, None))
        assert unit is not None
        return unit

    async def unit_if_changed(self, unit_id: str, etag: str) -> Unit | None:
        """The unit, or None when it still has ``etag`` (304 Not Modified)."""
        return await self._run(calls.unit(unit_id, etag))

    async def submit(
        self, unit_id: str, answers: Mapping[str, str], *, idempotency_key: str | None = None
    ) -> SubmissionResult:
        return await self._run(calls.submit(unit_id, answers, idempotency_key))

    async def cluster(self) -> ClusterInfo:
        return await self._run(calls.cluster())

    async def propose(
        self,
        kind: str,
        title: str,
        summary: str = "",
        *,
        shard: str | None = None,
        template: str | None = None,
    ) -> Proposal:
        """Make a proposal (``disable_shard``/``enable_shard`` name a shard, ``upgrade_shards``
        a template). 403 ``not-enough-stake`` below the hub's minimum stake."""
        return await self._run(calls.propose(kind, title, summary, shard, template))

    async def proposal(self, proposal_id: int) -> Proposal:
        return await self._run(calls.proposal(proposal_id))

    async def proposals(
        self, *, cursor: str | None = None, limit: int | None = None
    ) -> ProposalPage:
        """Proposals, newest first."""
        return await self._run(calls.proposals(cursor, limit))

    async def vote(self, proposal_id: int, yes: bool) -> VoteResult:
        """Vote with the signed-in user's staked balance: 403 with no stake, 409 if
        already voted or decided."""
        return await self._run(calls.vote(proposal_id, yes))

    async def health(self) -> dict[str, Any]:
        return await self._run(calls.health("/healthz"))

    async def ready(self) -> dict[str, Any]:
        return await self._run(calls.health("/readyz"))

    async def send_signed(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A raw signed request, answered as is (for tools and tests)."""
        call: calls.Call[httpx.Response] = calls.Call(
            method, path, lambda r: r, json=json, headers=dict(headers or {})
        )
        return await self.http.send(calls.build_request(self.http, self.identity, call))
