"""The blocking client (httpx.Client), for scripts and shells."""

from __future__ import annotations

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

__all__ = ["Client"]

T = TypeVar("T")


class Client:
    """The blocking twin of :class:`~canistry.client.AsyncClient`; same methods, same rules."""

    def __init__(
        self,
        base_url: str,
        identity: Identity | None = None,
        *,
        timeout_s: float = 10.0,
        retry_unavailable_s: float = 0.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.identity = identity
        self.retry_unavailable_s = retry_unavailable_s
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _run(self, call: calls.Call[T]) -> T:
        deadline = time.monotonic() + self.retry_unavailable_s
        while True:
            response = self.http.send(calls.build_request(self.http, self.identity, call))
            if response.status_code in call.ok:
                return call.parse(response)
            error = ApiError.from_response(response)
            wait = calls.retry_wait(error, deadline)
            if wait is None:
                raise error
            time.sleep(wait)

    def register(
        self,
        name: str,
        email: str,
        education: str = "",
        gender: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Registration:
        return self._run(calls.register(name, email, education, gender, idempotency_key))

    def me(self) -> Me:
        return self._run(calls.me())

    def update_profile(
        self,
        *,
        name: str | None = None,
        email: str | None = None,
        education: str | None = None,
        gender: str | None = None,
        idempotency_key: str | None = None,
    ) -> Me:
        fields = {"name": name, "email": email, "education": education, "gender": gender}
        return self._run(calls.update_profile(fields, idempotency_key))

    def balance(self) -> Balance:
        return self._run(calls.balance())

    def units(
        self, subject: str | None = None, cursor: str | None = None, limit: int | None = None
    ) -> UnitPage:
        return self._run(calls.units(subject, cursor, limit))

    def unit(self, unit_id: str) -> Unit:
        unit = self._run(calls.unit(unit_id, None))
        assert unit is not None
        return unit

    def unit_if_changed(self, unit_id: str, etag: str) -> Unit | None:
        return self._run(calls.unit(unit_id, etag))

    def submit(
        self, unit_id: str, answers: Mapping[str, str], *, idempotency_key: str | None = None
    ) -> SubmissionResult:
        return self._run(calls.submit(unit_id, answers, idempotency_key))

    def cluster(self) -> ClusterInfo:
        return self._run(calls.cluster())

    def propose(
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
        return self._run(calls.propose(kind, title, summary, shard, template))

    def proposal(self, proposal_id: int) -> Proposal:
        return self._run(calls.proposal(proposal_id))

    def proposals(self, *, cursor: str | None = None, limit: int | None = None) -> ProposalPage:
        """Proposals, newest first."""
        return self._run(calls.proposals(cursor, limit))

    def vote(self, proposal_id: int, yes: bool) -> VoteResult:
        """Vote with the signed-in user's staked balance: 403 with no stake, 409 if
        already voted or decided."""
        return self._run(calls.vote(proposal_id, yes))

    def health(self) -> dict[str, Any]:
        return self._run(calls.health("/healthz"))

    def ready(self) -> dict[str, Any]:
        return self._run(calls.health("/readyz"))
