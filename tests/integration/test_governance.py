"""Governance on a real cluster: stakers propose and vote, the hub decides and carries out.

Stakers earn tokens first (their shard reports the credits to the hub, whose
total staked is the total voting power a proposal snapshots). A proposal to
disable the only shard is rejected below quorum; a second one, with enough
yes votes, is adopted: the shard takes no new users (the hub spawns another
for them), mints nothing (submissions get 503 shard-disabled), and shows
``disabled``, while its users still read. A third proposal enables it again.
Votes with no stake, second votes and proposals below the minimum stake are
refused.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from canistry import __version__
from canistry.client import ApiError, AsyncClient, Identity
from canistry.status import fetch_status, render_status
from canistry.up import Cluster
from tests.integration.conftest import MakeCluster
from tests.integration.direct import SAMPLE, Direct, poll, right_answers

pytestmark = pytest.mark.timeout(240)

UNITS = {u["id"]: u for u in SAMPLE}
#: What each staker earns (sample rewards): A 150, B 40, C 50, D 45; 285 in all.
EARN = {
    "A": ["math-001", "math-002", "math-003", "math-004", "math-005"],
    "B": ["math-001"],
    "C": ["math-008"],
    "D": ["math-007"],
}
TOTAL = 285
MIN_STAKE = 100


class Users:
    """One signed HTTP client per named user."""

    def __init__(self, cluster: Cluster) -> None:
        self.url = cluster.gateway_url
        self.clients: dict[str, AsyncClient] = {}

    async def add(self, name: str, **kw: Any) -> AsyncClient:
        client = AsyncClient(self.url, Identity.generate(), timeout_s=30, **kw)
        self.clients[name] = client
        await client.register(name, f"{name.lower()}@example.org")
        return client

    def __getitem__(self, name: str) -> AsyncClient:
        return self.clients[name]

    async def close(self) -> None:
        for c in self.clients.values():
            await c.aclose()


@pytest.fixture
async def users(make_cluster: MakeCluster) -> AsyncIterator[tuple[Cluster, Users]]:
    cluster = make_cluster(voting_period_s=4.0, proposal_min_stake=MIN_STAKE)
    u = Users(cluster)
    try:
        yield cluster, u
    finally:
        await u.close()


async def _refused(call: Any, status: int, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        await call
    assert (caught.value.status, caught.value.code) == (status, code), caught.value


async def _state(client: AsyncClient, pid: int, *states: str) -> Any:
    async def reached() -> Any:
        p = await client.proposal(pid)
        return p if p.state in states else None

    return await poll(reached, timeout_s=30, what=f"proposal {pid} {states}")


async def _shard_state(client: AsyncClient, shard: str) -> str:
    info = await client.cluster()
    return next(s.state for s in info.shards if s.id == shard)


async def test_stakers_disable_and_enable_a_shard(users: tuple[Cluster, Users]) -> None:
    cluster, u = users
    direct = Direct(cluster)
    for name, units in EARN.items():
        client = await u.add(name)
        for unit_id in units:
            assert (await client.submit(unit_id, right_answers(UNITS[unit_id]))).passed
    broke = await u.add("E")  # registered, nothing staked
    a, b, c, d = u["A"], u["B"], u["C"], u["D"]
    shard = (await a.me()).shard

    async def staked() -> bool:
        return (await direct.treasury()).total_staked == TOTAL

    await poll(staked, timeout_s=30, what="the hub to see every credit")

    # Refused: proposals below the minimum stake, votes without stake, second votes.
    await _refused(b.propose("disable_shard", "too small", shard=shard), 403, "not-enough-stake")
    await _refused(broke.propose("disable_shard", "broke", shard=shard), 403, "not-enough-stake")
    await _refused(a.propose("disable_shard", "who?", shard="shard-9999"), 400, "invalid-argument")
    await _refused(a.proposal(99), 404, "unknown-proposal")
    await _refused(b.vote(99, True), 404, "unknown-proposal")

    # 1. Below quorum: 40 yes of 285 (14% < 20%) and 45 no: rejected at the deadline.
    # Made with an Idempotency-Key: its replay returns the same proposal, not a second one.
    body = {"action": {"kind": "disable_shard", "shard": shard}, "title": "stop it",
            "summary": "below quorum"}  # fmt: skip
    made = [
        await a.send_signed("POST", "/v1/proposals", json=body, headers={"Idempotency-Key": "p1"})
        for _ in range(2)
    ]
    assert [r.status_code for r in made] == [201, 201] and made[0].json() == made[1].json()
    first = await a.proposal(made[0].json()["id"])
    assert (first.state, first.total_voting_power) == ("open", TOTAL)
    vote = await b.vote(first.id, True)
    assert (vote.voting_power, vote.yes, vote.no, vote.state) == (40, 40, 0, "open")
    await _refused(b.vote(first.id, False), 409, "already-voted")
    await _refused(broke.vote(first.id, True), 403, "not-enough-stake")
    assert (await d.vote(first.id, False)).no == 45
    rejected = await _state(a, first.id, "rejected")
    assert (rejected.yes, rejected.no) == (40, 45) and rejected.results == ()
    assert await _shard_state(a, shard) == "active"
    await _refused(c.vote(first.id, True), 409, "proposal-decided")

    # 2. Enough yes: 200 of 285 (70% >= 67% of all voting power) adopts it at once.
    second = await a.propose("disable_shard", "stop it now", shard=shard)
    assert (await a.vote(second.id, True)).state == "open"
    assert (await c.vote(second.id, True)).state == "adopted"
    await _refused(d.vote(second.id, False), 409, "proposal-decided")
    done = await _state(a, second.id, "executed", "failed")
    assert done.state == "executed" and [r.shard for r in done.results] == [shard]
    assert (await a.proposals(limit=1)).proposals[0].id == second.id  # newest first

    credited = (await direct.shard_statuses())[shard].credited_total
    await _refused(a.submit("math-006", right_answers(UNITS["math-006"])), 503, "shard-disabled")
    assert (await a.me()).balance.staked == 150  # its users still read
    assert (await direct.shard_statuses())[shard].credited_total == credited  # minted nothing

    async def shows_disabled() -> bool:
        return await _shard_state(a, shard) == "disabled"

    await poll(shows_disabled, timeout_s=10, what=f"{shard} shown disabled")
    status = await fetch_status(cluster.children["hub"].address, cluster.tls("operator"))
    out = io.StringIO()
    render_status(status, out)  # `canistry status`
    assert re.search(rf"{shard}\s+\S+\s+disabled\s+{__version__}\s", out.getvalue()), out.getvalue()
    newcomer = await u.add("F", retry_unavailable_s=60)  # the hub spawns a shard for them
    assert (await newcomer.me()).shard != shard

    # 3. Enabled again: the shard takes submissions (and mints) once more.
    third = await a.propose("enable_shard", "resume", shard=shard)
    await a.vote(third.id, True)
    await c.vote(third.id, True)
    assert (await _state(a, third.id, "executed", "failed")).state == "executed"
    result = await a.submit("math-006", right_answers(UNITS["math-006"]))
    assert result.passed and result.balance + result.pending == 180

    async def shows_active() -> bool:
        return await _shard_state(a, shard) == "active"

    await poll(shows_active, timeout_s=10, what=f"{shard} shown active")
    await direct.assert_accounts_balance()
