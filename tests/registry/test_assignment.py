import pytest

from protos import registry_pb2
from registry import assignment
from runtime.errors import InvalidArgument, NoCapacity
from runtime.principals import check_principal

ACTIVE = registry_pb2.SHARD_STATE_ACTIVE
FULL = registry_pb2.SHARD_STATE_FULL


def shard(shard_id: str, seq: int, users: int = 0, state: int = ACTIVE) -> registry_pb2.ShardInfo:
    return registry_pb2.ShardInfo(
        shard_id=shard_id, address="127.0.0.1:1", state=state, users=users, registration_seq=seq
    )


def test_newest_open_shard_wins() -> None:
    shards = [shard("a", 1), shard("c", 3, users=10, state=FULL), shard("b", 2, users=3)]
    assert assignment.choose_shard(shards, hard_limit=10).shard_id == "b"
    shards.append(shard("d", 4, users=9))
    assert assignment.choose_shard(shards, hard_limit=10).shard_id == "d"


def test_active_shard_at_hard_limit_is_not_open() -> None:
    with pytest.raises(NoCapacity):
        assignment.choose_shard([shard("a", 1, users=10)], hard_limit=10)
    with pytest.raises(NoCapacity):
        assignment.choose_shard([], hard_limit=10)


def test_admit_marks_full_at_hard_limit_and_reports_soft_crossing() -> None:
    a = assignment.admit(shard("a", 1, users=7), soft_limit=8, hard_limit=9)
    assert (a.shard.users, a.reached_soft, a.became_full) == (8, True, False)
    b = assignment.admit(a.shard, soft_limit=8, hard_limit=9)
    assert (b.shard.users, b.shard.state, b.reached_soft, b.became_full) == (9, FULL, False, True)


def test_register_keeps_count_state_and_order_of_known_shard() -> None:
    known = shard("a", 1, users=5, state=FULL)
    again = assignment.register(
        known, shard_id="a", address="127.0.0.1:2", now_ms=99, registration_seq=7
    )
    assert (again.users, again.state, again.registration_seq) == (5, FULL, 1)
    assert again.address == "127.0.0.1:2"
    fresh = assignment.register(
        None, shard_id="b", address="127.0.0.1:3", now_ms=99, registration_seq=7
    )
    assert (fresh.users, fresh.state, fresh.registration_seq) == (0, ACTIVE, 7)


@pytest.mark.parametrize("bad", ["", "a b", "x\n", "p" * 129, "é" * 3])
def test_bad_principals_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        check_principal(bad)


@pytest.mark.parametrize("bad", ["", "nohost", ":80", "h:0", "h:99999", "h:x"])
def test_bad_addresses_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        assignment.validate_address(bad)
