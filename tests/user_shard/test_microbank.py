import pytest

from protos import shard_pb2
from user_shard import microbank


def granted(amount: int) -> shard_pb2.Ledger:
    ledger = microbank.new_ledger()
    request = microbank.begin_request(ledger, amount)
    assert microbank.apply_grant(ledger, request.seq, amount)
    return ledger


def test_credit_from_allowance_then_pending() -> None:
    ledger = granted(150)
    a, b = shard_pb2.UserRecord(principal="a"), shard_pb2.UserRecord(principal="b")
    assert microbank.credit(ledger, a, 100) is False
    assert (a.staked, ledger.allowance_remaining, ledger.credited_total) == (100, 50, 100)
    assert microbank.credit(ledger, b, 100) is True  # does not fit: b starts waiting
    assert (b.staked, b.pending, ledger.pending_total) == (0, 100, 100)
    # while b waits, even a reward that would fit waits behind b
    assert microbank.credit(ledger, a, 10) is True
    assert microbank.credit(ledger, a, 10) is False  # already queued
    assert (a.pending, ledger.pending_total, ledger.allowance_remaining) == (20, 120, 50)
    assert microbank.is_balanced(ledger)


def test_grants_apply_once_per_seq() -> None:
    ledger = microbank.new_ledger()
    request = microbank.begin_request(ledger, 500)
    assert microbank.inflight(ledger) == request
    with pytest.raises(ValueError):
        microbank.begin_request(ledger, 500)
    assert microbank.apply_grant(ledger, request.seq, 400)
    assert not microbank.apply_grant(ledger, request.seq, 400)  # a retried answer
    assert (ledger.granted_total, ledger.allowance_remaining, ledger.last_grant) == (400, 400, 400)
    assert microbank.inflight(ledger) is None
    with pytest.raises(ValueError):
        microbank.apply_grant(ledger, request.seq + 1, 1)  # never asked
    assert microbank.is_balanced(ledger)


def test_requests_carry_unreported_credits_once() -> None:
    ledger = granted(1000)
    microbank.credit(ledger, shard_pb2.UserRecord(), 70)
    first = microbank.begin_request(ledger, 10)
    assert (first.seq, first.staked_delta, ledger.unreported_staked) == (2, 70, 0)
    microbank.apply_grant(ledger, first.seq, 10)
    assert microbank.begin_request(ledger, 10).staked_delta == 0


def test_settle_is_fifo_whole_pendings_only() -> None:
    ledger = microbank.new_ledger()
    users = {name: shard_pb2.UserRecord(principal=name) for name in "abc"}
    for name, reward in (("a", 100), ("b", 300), ("c", 50)):
        assert microbank.credit(ledger, users[name], reward)
    request = microbank.begin_request(ledger, 350)
    microbank.apply_grant(ledger, request.seq, 350)
    settled = microbank.settle(ledger, ((n, users[n]) for n in "abc"))
    # a fits (100); b's 300 does not fit the 250 left, and c may not overtake b
    assert [key for key, _ in settled] == ["a"]
    assert (users["a"].staked, users["a"].pending, users["b"].pending) == (100, 0, 300)
    assert (ledger.allowance_remaining, ledger.pending_total) == (250, 350)
    assert microbank.is_balanced(ledger)
    request = microbank.begin_request(ledger, 100)
    microbank.apply_grant(ledger, request.seq, 100)
    settled = microbank.settle(ledger, ((n, users[n]) for n in "bc"))
    assert [key for key, _ in settled] == ["b", "c"]
    assert (ledger.allowance_remaining, ledger.pending_total, ledger.credited_total) == (0, 0, 450)
    assert microbank.is_balanced(ledger)


def test_refill_policy_low_water_and_sizing() -> None:
    policy = microbank.RefillPolicy(
        base_allowance=1000, low_water_fraction=0.25, refill_target_s=60
    )
    ledger = microbank.new_ledger()
    assert policy.needs_refill(ledger)  # a new shard asks at once
    assert policy.amount(ledger, mint_rate=0) == 1000
    ledger = granted(4000)
    assert policy.low_water(ledger) == 1000  # a fraction of the last grant
    ledger.allowance_remaining, ledger.credited_total = 1000, 3000
    assert not policy.needs_refill(ledger)
    ledger.allowance_remaining, ledger.credited_total = 999, 3001
    assert policy.needs_refill(ledger)
    # at 100 tokens/s a grant should last 2 x 60 s; waiting rewards are added
    ledger.pending_total = 30
    assert policy.amount(ledger, mint_rate=100) == 12_000 + 30
    ledger.allowance_remaining = 4000
    assert policy.needs_refill(ledger)  # someone waits


def test_hub_calls_stay_near_one_a_minute_at_any_load() -> None:
    """Simulate steady minting; count requests per simulated minute."""
    policy = microbank.RefillPolicy(
        base_allowance=1000, low_water_fraction=0.25, refill_target_s=60
    )
    for tokens_per_s in (10, 1_000, 100_000):
        ledger, rate, calls = microbank.new_ledger(), microbank.MintRate(window_s=60), 0
        waiting: list[shard_pb2.UserRecord] = []
        for second in range(1800):
            if policy.needs_refill(ledger):
                request = microbank.begin_request(ledger, policy.amount(ledger, rate.rate(second)))
                microbank.apply_grant(ledger, request.seq, request.amount)
                calls += 1
                settled = microbank.settle(ledger, ((None, user) for user in waiting))
                del waiting[: len(settled)]
            user = shard_pb2.UserRecord()
            if microbank.credit(ledger, user, tokens_per_s):
                waiting.append(user)
            rate.record(tokens_per_s, second)
        assert microbank.is_balanced(ledger)
        # ~30 minutes: a request every ~90 s once the rate is known
        assert calls <= 30, (tokens_per_s, calls)


def test_mint_rate_window() -> None:
    rate = microbank.MintRate(window_s=10)
    assert rate.rate(0) == 0
    for t in range(10):
        rate.record(50, t + 0.5)
    assert rate.rate(9.9) == 50
    assert rate.rate(15.0) == 25  # seconds 5..9 remain
    assert rate.rate(100) == 0
