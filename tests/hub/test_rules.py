"""Pure rules: treasury, capacity decision, restart backoff, init config."""

import pytest

from hub import capacity, treasury
from hub.backoff import Backoff
from hub.config import HubSettings, differences, kept_notes
from protos import hub_pb2, registry_pb2
from runtime.errors import Conflict, InvalidArgument, PermissionDenied
from runtime.tls import Identity, Role

ACTIVE = registry_pb2.SHARD_STATE_ACTIVE
FULL = registry_pb2.SHARD_STATE_FULL


class Ledger:
    """The treasury rule applied to in-memory state, as the store would."""

    def __init__(self, cap: int, max_grant: int = 10**12) -> None:
        self.cap, self.max_grant = cap, max_grant
        self.totals = hub_pb2.Treasury()
        self.accounts: dict[str, hub_pb2.ShardGrant] = {}
        self.grants: dict[tuple[str, int], hub_pb2.GrantRecord] = {}
        self.known = {"s1", "s2"}

    def ask(self, shard: str, seq: int, amount: int, staked: int = 0) -> treasury.GrantOutcome:
        out = treasury.grant(
            treasury.Ask(shard, seq, amount, staked),
            cap=self.cap,
            max_grant=self.max_grant,
            known_shard=shard in self.known,
            totals=self.totals,
            shard=self.accounts.get(shard),
            stored=self.grants.get((shard, seq)),
            now_ms=1,
        )
        self.totals = out.totals
        if out.new:
            self.accounts[shard] = out.shard
            self.grants[(shard, seq)] = out.grant
        return out


def test_grant_is_capped_by_max_grant_and_the_cap() -> None:
    ledger = Ledger(cap=1000, max_grant=400)
    assert ledger.ask("s1", 1, 500).grant.granted == 400
    assert ledger.ask("s2", 1, 400).grant.granted == 400
    assert ledger.ask("s1", 2, 400).grant.granted == 200
    assert ledger.ask("s1", 3, 400).grant.granted == 0
    assert ledger.totals.total_granted == 1000
    assert ledger.accounts["s1"].granted == 600


def test_same_seq_returns_the_stored_grant_and_changes_nothing() -> None:
    ledger = Ledger(cap=1000)
    first = ledger.ask("s1", 7, 300, staked=50)
    again = ledger.ask("s1", 7, 300, staked=50)
    assert again.grant == first.grant and not again.new
    assert ledger.totals.total_granted == 300
    assert ledger.totals.total_staked == 50
    assert ledger.accounts["s1"].staked == 50
    assert ledger.totals.allowance_calls == 2


def test_lower_unseen_seq_is_a_conflict_and_gaps_are_fine() -> None:
    ledger = Ledger(cap=1000)
    ledger.ask("s1", 5, 10)
    with pytest.raises(Conflict):
        ledger.ask("s1", 4, 10)
    assert ledger.ask("s1", 9, 10).new
    assert ledger.accounts["s1"].last_seq == 9
    assert ledger.ask("s2", 1, 10).new  # seqs are per shard


def test_unknown_shard_and_bad_input_are_refused() -> None:
    ledger = Ledger(cap=1000)
    with pytest.raises(PermissionDenied):
        ledger.ask("intruder", 1, 10)
    with pytest.raises(InvalidArgument):
        treasury.Ask("", 1, 1, 0)
    with pytest.raises(InvalidArgument):
        treasury.Ask("s1", -1, 1, 0)


def directory(*users: int, states: tuple[int, ...] = ()) -> registry_pb2.ShardDirectory:
    d = registry_pb2.ShardDirectory(soft_limit=90, hard_limit=100)
    for i, n in enumerate(users):
        state = states[i] if i < len(states) else ACTIVE
        d.shards.add(shard_id=f"s{i}", users=n, state=state)
    return d


def decide(d: registry_pb2.ShardDirectory, records=(), **kw) -> capacity.Decision:  # type: ignore[no-untyped-def]
    return capacity.decide(
        d, list(records), min_shards=kw.pop("min_shards", 1), soft_limit=90, **kw
    )


def test_capacity_decision() -> None:
    assert decide(directory()).action is capacity.Action.SPAWN
    assert decide(directory(10), min_shards=2).action is capacity.Action.SPAWN
    assert decide(directory(10)).action is capacity.Action.ENOUGH
    assert decide(directory(90, 91)).action is capacity.Action.SPAWN
    assert decide(directory(90, 89)).action is capacity.Action.ENOUGH
    assert decide(directory(100, states=(FULL,))).action is capacity.Action.SPAWN
    assert decide(directory(95), spawn_running=True).action is capacity.Action.IN_PROGRESS
    unfinished = hub_pb2.ShardRecord(shard_id="shard-0002", step=hub_pb2.SPAWN_STEP_STARTED)
    done = hub_pb2.ShardRecord(shard_id="shard-0001", step=hub_pb2.SPAWN_STEP_REGISTERED)
    d = decide(directory(10), [done, unfinished])
    assert d.action is capacity.Action.RESUME and d.record == unfinished
    abandoned = hub_pb2.ShardRecord(shard_id="shard-0003", step=hub_pb2.SPAWN_STEP_ABANDONED)
    assert decide(directory(10), [done, abandoned]).action is capacity.Action.ENOUGH


def test_warm_pool_decision() -> None:
    done = hub_pb2.ShardRecord(shard_id="shard-0001", step=hub_pb2.SPAWN_STEP_REGISTERED)
    warm = hub_pb2.ShardRecord(shard_id="shard-0002", step=hub_pb2.SPAWN_STEP_WARM, warm=True)
    filling = hub_pb2.ShardRecord(shard_id="shard-0003", step=hub_pb2.SPAWN_STEP_STARTED, warm=True)
    ready = {"shard-0002"}
    # Short of capacity: a ready warm shard is promoted, even while a spawn runs.
    d = decide(directory(95), [done, warm], warm_pool=1, ready=ready)
    assert d.action is capacity.Action.PROMOTE and d.record == warm
    d = decide(directory(95), [done, warm, filling], warm_pool=2, ready=ready, spawn_running=True)
    assert d.action is capacity.Action.PROMOTE
    assert decide(directory(), [warm], ready=ready).action is capacity.Action.PROMOTE
    # A warm shard whose process is down is not promoted: spawn, or wait for the running one.
    assert decide(directory(95), [done, warm], warm_pool=1).action is capacity.Action.SPAWN
    d = decide(directory(95), [done, filling], warm_pool=1, spawn_running=True)
    assert d.action is capacity.Action.IN_PROGRESS
    # Capacity to spare: finish what is unfinished, then fill the pool up to its size.
    assert decide(directory(10), [done], warm_pool=1).action is capacity.Action.FILL
    assert decide(directory(10), [done, warm], warm_pool=1).action is capacity.Action.ENOUGH
    assert decide(directory(10), [done, warm], warm_pool=2).action is capacity.Action.FILL
    d = decide(directory(10), [done, filling], warm_pool=2)
    assert d.action is capacity.Action.RESUME and d.record == filling
    assert decide(directory(10), [done], warm_pool=0).action is capacity.Action.ENOUGH
    # A promotion that a dead hub decided but did not finish is carried on, not counted warm.
    halfway = hub_pb2.ShardRecord()
    halfway.CopyFrom(warm)
    halfway.decided_at_ms = 5
    d = decide(directory(10), [done, halfway], warm_pool=1, ready=ready)
    assert d.action is capacity.Action.RESUME and d.record == halfway
    assert decide(directory(95), [done, halfway], ready=ready).action is capacity.Action.RESUME
    # min_shards come first, cold, before any warm shard.
    assert decide(directory(), [], warm_pool=1).action is capacity.Action.SPAWN


def test_backoff_doubles_to_thirty_and_resets_after_a_minute_up() -> None:
    b = Backoff()
    b.alive(0.0)
    delays = []
    now = 1.0
    for _ in range(8):
        assert not b.dead(now)
        due = b.retry_at
        assert due is not None
        delays.append(due - now)
        assert b.dead(due)
        b.restarted(due)
        now = due + 0.1
    assert delays == pytest.approx([0.5, 1, 2, 4, 8, 16, 30, 30])
    b.alive(now)
    b.alive(now + 59)
    assert b.delay_s == 30
    b.alive(now + 60)
    assert b.delay_s == 0.5


def test_settings_validate_and_differences_name_fields(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = dict(
        data_dir=tmp_path, shards_dir=tmp_path, registry_address="r:1", content_address="c:1"
    )
    with pytest.raises(ValueError, match="soft_limit"):
        HubSettings(**base, soft_limit=10, hard_limit=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spawner"):
        HubSettings(**base, spawner="nomad")  # type: ignore[arg-type]
    a = HubSettings(**base).init_config()  # type: ignore[arg-type]
    b = HubSettings(**base, cap=5, min_shards=3).init_config()  # type: ignore[arg-type]
    assert differences(a, b) == ["cap", "min_shards"]
    assert differences(a, a) == []
    c = HubSettings(**base, soft_limit=5, warm_pool=1, scale_interval_s=2).init_config()  # type: ignore[arg-type]
    assert kept_notes(a, c) == [
        "soft_limit 90000 (asked 5)",
        "scale_interval_s 60 (asked 2)",
        "warm_pool 0 (asked 1)",
    ]
    assert kept_notes(a, c, ["warm_pool"]) == ["warm_pool 0 (asked 1)"]
    with pytest.raises(ValueError, match="warm_pool"):
        HubSettings(**base, warm_pool=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spawner"):
        HubSettings(**base, spawner="fake")  # type: ignore[arg-type]  # only injected
    benchmark = HubSettings(**base, shard_commit_per_request=True)  # type: ignore[arg-type]
    assert benchmark.init_config() == a, "a benchmark switch, not stored policy"


def test_a_shard_asks_only_in_its_own_name() -> None:
    treasury.check_caller(Identity(Role.SHARD, "s1"), "s1")
    treasury.check_caller(None, "s1")  # no TLS, no identity: in-process tests only
    for who in (Identity(Role.SHARD, "s2"), Identity(Role.GATEWAY, "s1")):
        with pytest.raises(treasury.NotThisShard):
            treasury.check_caller(who, "s1")
