"""Proposals and their votes in the hub's LMDB (the ``proposals`` and ``votes`` databases).

A vote is keyed by (proposal, principal), so a shard that reports the same
vote again (a retry after a lost reply) changes nothing. Each vote's check
and its tally land in one serialised transaction with the proposal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lmdb

from hub import governance
from hub.store import HubStore
from protos import hub_pb2
from runtime.errors import ProposalDecided, UnknownProposal
from runtime.store import get_msg, put_msg

__all__ = ["ProposalStore", "VoteCount"]

_NEXT = b"next_proposal"


def _key(proposal_id: int) -> bytes:
    return proposal_id.to_bytes(8, "big")


@dataclass(frozen=True)
class VoteCount:
    """What became of one reported vote."""

    status: str
    """``counted``, ``duplicate``, ``decided`` or ``unknown``."""
    proposal: hub_pb2.Proposal | None


class ProposalStore:
    """Reads and writes proposals through the hub store's one writer."""

    def __init__(self, hub_store: HubStore) -> None:
        self._hub = hub_store

    def get(self, proposal_id: int) -> hub_pb2.Proposal:
        """Raises :class:`UnknownProposal`."""
        store = self._hub.store
        with store.read() as txn:
            found = get_msg(txn, store.db("proposals"), _key(proposal_id), hub_pb2.Proposal)
        if found is None:
            raise UnknownProposal(f"no proposal {proposal_id}")
        return found

    def page(self, before: int, limit: int) -> tuple[list[hub_pb2.Proposal], int]:
        """Up to ``limit`` proposals with an id below ``before`` (0: any), newest first,
        and the ``before`` of the next page (0 when there is none)."""
        store = self._hub.store
        out: list[hub_pb2.Proposal] = []
        with store.read() as txn:
            cursor = txn.cursor(db=store.db("proposals"))
            found = cursor.set_range(_key(before)) if before else cursor.last()
            if before:
                found = cursor.prev() if found else cursor.last()
            while found and len(out) < limit:
                p = hub_pb2.Proposal()
                p.ParseFromString(bytes(cursor.value()))
                out.append(p)
                found = cursor.prev()
            more = found
        return out, (out[-1].id if out and more else 0)

    def unfinished(self) -> list[hub_pb2.Proposal]:
        """Proposals still open, adopted or executing, oldest first."""
        store = self._hub.store
        keep = (governance.OPEN, governance.ADOPTED, governance.EXECUTING)
        out = []
        with store.read() as txn:
            for raw in txn.cursor(db=store.db("proposals")).iternext(keys=False, values=True):
                p = hub_pb2.Proposal()
                p.ParseFromString(bytes(raw))
                if p.state in keep:
                    out.append(p)
        return out

    async def create(self, build: Callable[[int], hub_pb2.Proposal]) -> hub_pb2.Proposal:
        """Take the next id and store ``build(id)`` under it."""
        store = self._hub.store

        def fn(txn: lmdb.Transaction) -> hub_pb2.Proposal:
            raw = txn.get(_NEXT, db=store.db("meta"))
            number = int(raw) if raw is not None else 1
            proposal = build(number)
            txn.put(_NEXT, str(number + 1).encode(), db=store.db("meta"))
            put_msg(txn, store.db("proposals"), _key(number), proposal)
            return proposal

        return await self._hub.committer.submit(fn)

    async def update(
        self, proposal_id: int, change: Callable[[hub_pb2.Proposal], hub_pb2.Proposal | None]
    ) -> hub_pb2.Proposal:
        """Store ``change(stored)`` unless it is None; return what is stored after."""
        store = self._hub.store

        def fn(txn: lmdb.Transaction) -> hub_pb2.Proposal:
            stored = get_msg(txn, store.db("proposals"), _key(proposal_id), hub_pb2.Proposal)
            if stored is None:
                raise UnknownProposal(f"no proposal {proposal_id}")
            after = change(stored)
            if after is None:
                return stored
            put_msg(txn, store.db("proposals"), _key(proposal_id), after)
            return after

        return await self._hub.committer.submit(fn)

    async def count(
        self, votes: list[hub_pb2.Vote], *, now_ms: int, voting_period_ms: int
    ) -> list[VoteCount]:
        """Tally each vote once per (proposal, principal); one outcome per vote, in order."""
        store = self._hub.store

        def fn(txn: lmdb.Transaction) -> list[VoteCount]:
            out = []
            for vote in votes:
                pkey = _key(vote.proposal_id)
                proposal = get_msg(txn, store.db("proposals"), pkey, hub_pb2.Proposal)
                if proposal is None:
                    out.append(VoteCount("unknown", None))
                    continue
                vkey = pkey + vote.principal.encode()
                if txn.get(vkey, db=store.db("votes")) is not None:
                    out.append(VoteCount("duplicate", proposal))
                    continue
                try:
                    after = governance.cast(
                        proposal,
                        yes=vote.yes,
                        power=vote.voting_power,
                        now_ms=now_ms,
                        voting_period_ms=voting_period_ms,
                    )
                except ProposalDecided:
                    out.append(VoteCount("decided", proposal))
                    continue
                put_msg(txn, store.db("votes"), vkey, vote)
                put_msg(txn, store.db("proposals"), pkey, after)
                out.append(VoteCount("counted", after))
            return out

        return await self._hub.committer.submit(fn)
