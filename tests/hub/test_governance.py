"""Governance: the pure rules (thresholds, early decisions, wait-for-quiet), and the
operations over a real hub store with a fake clock and a fake executor."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import lmdb
import pytest

from hub import governance as g
from hub.execution import resolve_process_template
from hub.proposals import Governance, GovernancePolicy
from hub.store import HubStore
from protos import hub_pb2
from runtime.errors import (
    InvalidArgument,
    NotEnoughStake,
    PermissionDenied,
    ProposalDecided,
    UnknownProposal,
)
from runtime.store import put_msg
from runtime.tls import Identity, Role
from tests.clocks import WallClock

PERIOD_MS = 100_000


def proposal(yes: int = 0, no: int = 0, total: int = 1000, **fields: int) -> hub_pb2.Proposal:
    p = hub_pb2.Proposal(
        id=1, state=g.OPEN, yes=yes, no=no, total_voting_power=total, created_at_ms=0
    )
    p.deadline_ms = fields.get("deadline_ms", PERIOD_MS)
    return p


# -- thresholds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yes", "no", "total", "state"),
    [
        (200, 0, 1000, g.ADOPTED),  # 100% of cast, 20% of total
        (199, 0, 1000, g.REJECTED),  # below 20% participation
        (670, 330, 1000, g.ADOPTED),  # exactly 67% of cast
        (669, 331, 1000, g.REJECTED),  # just under
        (0, 0, 1000, g.REJECTED),  # nobody voted
        (0, 0, 0, g.REJECTED),  # nobody could vote
        (300, 100, 1000, g.ADOPTED),  # 75% of cast, 30% of total
    ],
)
def test_the_deadline_decision(yes: int, no: int, total: int, state: int) -> None:
    assert g.at_deadline(yes, no, total) == state


@pytest.mark.parametrize(
    ("yes", "no", "total", "state"),
    [
        (670, 0, 1000, g.ADOPTED),  # 67% of all voting power: certain
        (669, 0, 1000, None),
        (0, 331, 1000, g.REJECTED),  # more than 33% no: 67% yes is out of reach
        (0, 330, 1000, None),
        (100, 100, 1000, None),
    ],
)
def test_early_decisions(yes: int, no: int, total: int, state: int | None) -> None:
    assert g.early(yes, no, total) == state


def test_a_vote_is_tallied_and_may_decide_early() -> None:
    p = g.cast(proposal(), yes=True, power=500, now_ms=10, voting_period_ms=PERIOD_MS)
    assert (p.yes, p.no, p.state) == (500, 0, g.OPEN)
    p = g.cast(p, yes=True, power=170, now_ms=20, voting_period_ms=PERIOD_MS)
    assert (p.yes, p.state, p.decided_at_ms) == (670, g.ADOPTED, 20)
    with pytest.raises(ProposalDecided):
        g.cast(p, yes=False, power=1, now_ms=30, voting_period_ms=PERIOD_MS)


def test_a_vote_after_the_deadline_is_too_late() -> None:
    with pytest.raises(ProposalDecided):
        g.cast(proposal(), yes=True, power=1, now_ms=PERIOD_MS, voting_period_ms=PERIOD_MS)


def test_a_late_swing_extends_the_deadline_and_a_quiet_vote_does_not() -> None:
    quiet = g.quiet_ms(PERIOD_MS)
    late = PERIOD_MS - quiet // 2
    # Would pass (yes 300 of 1000); a late no of 200 flips it to rejected.
    p = g.cast(proposal(yes=300), yes=False, power=200, now_ms=late, voting_period_ms=PERIOD_MS)
    assert p.deadline_ms == late + quiet and p.state == g.OPEN
    # A late vote that does not flip the outcome leaves the deadline alone.
    q = g.cast(proposal(yes=300), yes=True, power=10, now_ms=late, voting_period_ms=PERIOD_MS)
    assert q.deadline_ms == PERIOD_MS
    # An early swing does not extend it either.
    r = g.cast(proposal(yes=300), yes=False, power=200, now_ms=10, voting_period_ms=PERIOD_MS)
    assert r.deadline_ms == PERIOD_MS


def test_swings_never_extend_past_twice_the_period() -> None:
    p = proposal(yes=300, deadline_ms=2 * PERIOD_MS - 10)
    p = g.cast(p, yes=False, power=200, now_ms=2 * PERIOD_MS - 20, voting_period_ms=PERIOD_MS)
    assert p.deadline_ms == 2 * PERIOD_MS


def test_settle_decides_only_at_the_deadline() -> None:
    p = proposal(yes=300)
    assert g.settle(p, PERIOD_MS - 1) is None
    done = g.settle(p, PERIOD_MS)
    assert done is not None and done.state == g.ADOPTED
    assert g.settle(done, PERIOD_MS + 1) is None  # decided once
    assert g.settle(proposal(yes=100), PERIOD_MS).state == g.REJECTED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kind", "shard", "template", "title"),
    [
        ("nuke", "s", "", "t"),
        ("disable_shard", "", "", "t"),
        ("upgrade_shards", "", "", "t"),
        ("enable_shard", "s", "", ""),
        ("enable_shard", "s", "", "x" * 300),
    ],
)
def test_bad_actions_are_refused(kind: str, shard: str, template: str, title: str) -> None:
    action = hub_pb2.ProposalAction(kind=kind, shard_id=shard, template=template)
    with pytest.raises(InvalidArgument):
        g.validate_action(action, title, "")


# -- the operations over a real store ----------------------------------------------


class Done:
    """A fake executor that records what it carried out."""

    def __init__(self) -> None:
        self.carried: list[int] = []

    async def __call__(self, p: hub_pb2.Proposal) -> tuple[bool, list[hub_pb2.ShardResult], str]:
        self.carried.append(p.id)
        return True, [hub_pb2.ShardResult(shard_id=p.action.shard_id, ok=True)], "done"


async def _resolve(template: str) -> str:
    if template != "/good/python":
        raise InvalidArgument("cannot resolve")
    return "canistry==9.9"


@pytest.fixture
async def gov(tmp_path: Path) -> AsyncIterator[tuple[Governance, WallClock, Done]]:
    store = HubStore(tmp_path / "hub", durable=False)
    await store.start()

    def stake(txn: lmdb.Transaction) -> None:  # 1000 tokens staked, as shards reported
        put_msg(txn, store.store.db("treasury"), b"totals", hub_pb2.Treasury(total_staked=1000))

    await store.committer.submit(stake)
    clock, done = WallClock(), Done()
    governance = Governance(
        store,
        cap=10**9,
        policy=GovernancePolicy(voting_period_s=PERIOD_MS / 1000, proposal_min_stake=50),
        known_shard=lambda s: s == "shard-0001",
        resolve_template=_resolve,
        execute=done,
        clock=clock,
    )
    yield governance, clock, done
    await store.stop()


def _ask(
    stake: int = 100, kind: str = "disable_shard", **action: str
) -> hub_pb2.CreateProposalRequest:
    return hub_pb2.CreateProposalRequest(
        proposer="alice",
        proposer_stake=stake,
        title="stop it",
        action=hub_pb2.ProposalAction(kind=kind, shard_id=action.get("shard", "shard-0001"),
                                      template=action.get("template", "")),
    )  # fmt: skip


def _vote(pid: int, who: str, yes: bool, power: int) -> hub_pb2.Vote:
    return hub_pb2.Vote(proposal_id=pid, principal=who, yes=yes, voting_power=power)


async def test_a_proposal_snapshots_the_total_voting_power(
    gov: tuple[Governance, WallClock, Done],
) -> None:
    governance, clock, _ = gov
    p = await governance.create(_ask())
    assert (p.id, p.state, p.total_voting_power) == (1, g.OPEN, 1000)
    assert p.deadline_ms == clock.now_ms + PERIOD_MS
    assert governance.get(1) == p
    with pytest.raises(UnknownProposal):
        governance.get(2)


async def test_proposals_below_the_minimum_stake_or_malformed_are_refused(
    gov: tuple[Governance, WallClock, Done],
) -> None:
    governance, _, _ = gov
    with pytest.raises(NotEnoughStake):
        await governance.create(_ask(stake=49))
    with pytest.raises(InvalidArgument):
        await governance.create(_ask(shard="shard-9999"))
    with pytest.raises(InvalidArgument):
        await governance.create(_ask(kind="upgrade_shards", template="/no/such/python"))
    up = await governance.create(_ask(kind="upgrade_shards", template="/good/python"))
    assert up.action.template_version == "canistry==9.9" and up.action.shard_id == ""


async def test_votes_count_once_and_the_hub_decides_and_executes(
    gov: tuple[Governance, WallClock, Done],
) -> None:
    governance, clock, done = gov
    await governance.create(_ask())
    batch = hub_pb2.VoteBatch(
        shard_id="shard-0001", votes=[_vote(1, "a", True, 300), _vote(9, "a", True, 1)]
    )
    reply = await governance.report_votes(batch)
    assert [o.status for o in reply.outcomes] == ["counted", "unknown"]
    again = await governance.report_votes(batch)  # a retried batch counts nothing more
    assert [o.status for o in again.outcomes] == ["duplicate", "unknown"]
    assert governance.get(1).yes == 300

    await governance.step()
    assert governance.get(1).state == g.OPEN and done.carried == []
    clock.advance(PERIOD_MS / 1000)
    await governance.step()
    after = governance.get(1)
    assert after.state == g.EXECUTED and done.carried == [1]
    assert [r.shard_id for r in after.results] == ["shard-0001"]
    late = await governance.report_votes(
        hub_pb2.VoteBatch(shard_id="shard-0001", votes=[_vote(1, "b", False, 5)])
    )
    assert late.outcomes[0].status == "decided"


async def test_early_rejection_and_pages_newest_first(
    gov: tuple[Governance, WallClock, Done],
) -> None:
    governance, _, done = gov
    for _ in range(3):
        await governance.create(_ask())
    await governance.report_votes(
        hub_pb2.VoteBatch(shard_id="s", votes=[_vote(2, "a", False, 340)])
    )
    await governance.step()
    assert governance.get(2).state == g.REJECTED and done.carried == []
    first = governance.page(hub_pb2.ListProposalsRequest(limit=2))
    assert [p.id for p in first.proposals] == [3, 2] and first.next_before == 2
    rest = governance.page(hub_pb2.ListProposalsRequest(before=first.next_before, limit=2))
    assert [p.id for p in rest.proposals] == [1] and rest.next_before == 0


async def test_only_a_shard_reports_votes_in_its_own_name(
    gov: tuple[Governance, WallClock, Done],
) -> None:
    governance, _, _ = gov
    batch = hub_pb2.VoteBatch(shard_id="shard-0001", votes=[])
    with pytest.raises(PermissionDenied):
        await governance.report_votes(batch, Identity(Role.SHARD, "shard-0002"))
    await governance.report_votes(batch, Identity(Role.SHARD, "shard-0001"))


async def test_only_a_python_with_canistry_under_the_root_is_a_template(tmp_path: Path) -> None:
    root = str(Path(sys.prefix))  # this interpreter's environment
    assert (await resolve_process_template(sys.executable, root)).startswith("canistry==")
    for bad in ("/bin/sh", "python3", str(tmp_path / "python3")):
        with pytest.raises(InvalidArgument):
            await resolve_process_template(bad, "/")
    # A staker names the path: nothing outside the operator's root is ever run.
    elsewhere = str(tmp_path / "templates")
    with pytest.raises(InvalidArgument, match="not under the template root"):
        await resolve_process_template(sys.executable, elsewhere)
    with pytest.raises(InvalidArgument, match="not under the template root"):
        await resolve_process_template(f"{elsewhere}/../python3", elsewhere)
    with pytest.raises(InvalidArgument, match="without --template-root"):
        await resolve_process_template(sys.executable, "")


async def test_governance_policy_is_fixed_at_init_and_filled_in_for_older_configs(
    tmp_path: Path,
) -> None:
    store = HubStore(tmp_path / "old", durable=False)
    await store.start()
    try:
        older = hub_pb2.HubConfig(cap=10, max_shards=4)  # stored before governance existed
        await store.init_config(older)
        wanted = hub_pb2.HubConfig(cap=10, max_shards=4, voting_period_s=3.0,
                                   proposal_min_stake=5, rollout_concurrency=2)  # fmt: skip
        stored, differences = await store.init_config(wanted)
        assert (stored.voting_period_s, stored.proposal_min_stake, stored.rollout_concurrency) == (
            3.0, 5, 2
        )  # fmt: skip
        assert differences == []
        later = hub_pb2.HubConfig(cap=10, max_shards=4, voting_period_s=1.0,
                                  proposal_min_stake=1, rollout_concurrency=9)  # fmt: skip
        stored, differences = await store.init_config(later)  # a restart cannot change them
        assert stored.voting_period_s == 3.0
        assert set(differences) == {"voting_period_s", "proposal_min_stake", "rollout_concurrency"}
    finally:
        await store.stop()
