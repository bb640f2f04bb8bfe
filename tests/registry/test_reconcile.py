"""The pure rules that keep the directory true to the shards."""

from protos import registry_pb2
from registry import assignment, reconcile

ACTIVE = registry_pb2.SHARD_STATE_ACTIVE
FULL = registry_pb2.SHARD_STATE_FULL


def shard(**kw: object) -> registry_pb2.ShardInfo:
    kw.setdefault("state", ACTIVE)
    return registry_pb2.ShardInfo(shard_id="s1", **kw)  # type: ignore[arg-type]


def lease(at_ms: int) -> registry_pb2.PendingAssignment:
    return registry_pb2.PendingAssignment(shard_id="s1", assigned_at_ms=at_ms)


def test_an_admission_is_pending_until_confirmed() -> None:
    admitted = assignment.admit(shard(users=1), soft_limit=5, hard_limit=10).shard
    assert (admitted.users, admitted.pending) == (2, 1)
    settled = reconcile.settle(admitted, confirmed=1, released=0, hard_limit=10)
    assert (settled.users, settled.pending, settled.state) == (2, 0, ACTIVE)


def test_a_release_frees_capacity_and_reopens_a_full_shard() -> None:
    full = shard(users=3, pending=1, state=FULL)
    settled = reconcile.settle(full, confirmed=0, released=1, hard_limit=3)
    assert (settled.users, settled.pending, settled.state) == (2, 0, ACTIVE)
    assert assignment.is_open(settled, 3)


def test_judge_confirms_found_and_expires_only_old_unfound() -> None:
    pending = [("found", lease(0)), ("old", lease(0)), ("young", lease(9_500))]
    verdict = reconcile.judge(pending, {"found"}, now_ms=10_000, timeout_ms=1_000)
    assert verdict.confirmed == ["found"]
    assert verdict.expired == [("old", 0)]


def test_a_store_near_full_makes_the_shard_full_for_good() -> None:
    fine, became = reconcile.observe_store(
        shard(users=1), used=80, size=100, full_fraction=0.9, hard_limit=10
    )
    assert (fine.state, fine.store_full, became) == (ACTIVE, False, False)
    full, became = reconcile.observe_store(
        fine, used=90, size=100, full_fraction=0.9, hard_limit=10
    )
    assert (full.state, full.store_full, became) == (FULL, True, True)
    assert not assignment.is_open(full, 10)
    again, became = reconcile.observe_store(
        full, used=10, size=100, full_fraction=0.9, hard_limit=10
    )
    assert (again.state, became) == (FULL, False)
    # A release does not reopen a shard whose store is full.
    assert reconcile.settle(again, confirmed=0, released=1, hard_limit=10).state == FULL
    assert not reconcile.store_nearly_full(5, 0, 0.9)
