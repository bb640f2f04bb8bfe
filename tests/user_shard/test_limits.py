from datetime import UTC, datetime

import pytest

from protos import shard_pb2
from runtime.errors import DailyLimitExceeded
from user_shard import microbank
from user_shard.limits import DailyLimits, today, utc_day
from user_shard.submission import Verdict, precheck, record_submission

DAY_MS = 86_400_000
# 2024-03-01T23:59:59.999Z and one ms later
LAST_MS = 1_709_337_599_999
NEXT_MS = LAST_MS + 1

LIMITS = DailyLimits(attempts=3, tokens=250)
PASS = Verdict(passed=True, score=2, total=2, reward=100)
FAIL = Verdict(passed=False, score=0, total=2, reward=100)


def test_utc_day_turns_at_midnight_utc() -> None:
    assert utc_day(LAST_MS) == "2024-03-01"
    assert utc_day(NEXT_MS) == "2024-03-02"


def test_stats_roll_over_to_zero_on_a_new_day_without_mutating() -> None:
    stats = shard_pb2.DailyStats(day="2024-03-01", attempts=3, earned=200)
    assert today(stats, LAST_MS) is stats
    fresh = today(stats, NEXT_MS)
    assert (fresh.day, fresh.attempts, fresh.earned) == ("2024-03-02", 0, 0)
    assert stats.attempts == 3


def fresh_user() -> shard_pb2.UserRecord:
    return shard_pb2.UserRecord(principal="p", today=shard_pb2.DailyStats(day=utc_day(LAST_MS)))


def funded_ledger() -> shard_pb2.Ledger:
    ledger = microbank.new_ledger()
    microbank.begin_request(ledger, 10_000)
    microbank.apply_grant(ledger, 1, 10_000)
    return ledger


def test_wrong_answers_use_attempts_until_the_limit() -> None:
    user, ledger = fresh_user(), funded_ledger()
    for n in (1, 2, 3):
        rec = record_submission(user, ledger, "u1", FAIL, LIMITS, LAST_MS)
        assert (rec.reply.attempts_today, rec.reply.attempts_left, rec.earned) == (n, 3 - n, 0)
    before = user.SerializeToString()
    with pytest.raises(DailyLimitExceeded):
        precheck(user, LIMITS, LAST_MS)
    with pytest.raises(DailyLimitExceeded):
        record_submission(user, ledger, "u1", FAIL, LIMITS, LAST_MS)
    assert user.SerializeToString() == before
    # a new UTC day brings the attempts back
    precheck(user, LIMITS, NEXT_MS)
    rec = record_submission(user, ledger, "u1", FAIL, LIMITS, NEXT_MS)
    assert rec.reply.attempts_today == 1 and user.today.day == "2024-03-02"


def test_a_pass_past_the_token_limit_records_nothing() -> None:
    user, ledger = fresh_user(), funded_ledger()
    record_submission(user, ledger, "u1", PASS, LIMITS, LAST_MS)
    record_submission(user, ledger, "u2", PASS, LIMITS, LAST_MS)
    assert user.today.earned == 200
    user_before, ledger_before = user.SerializeToString(), ledger.SerializeToString()
    with pytest.raises(DailyLimitExceeded, match="token"):
        record_submission(user, ledger, "u3", PASS, LIMITS, LAST_MS)
    assert user.SerializeToString() == user_before
    assert ledger.SerializeToString() == ledger_before
    # a wrong answer still may use the last attempt, and the next day u3 pays
    record_submission(user, ledger, "u3", FAIL, LIMITS, LAST_MS)
    rec = record_submission(user, ledger, "u3", PASS, LIMITS, NEXT_MS)
    assert rec.earned == 100 and user.today.earned == 100 and user.staked == 300


def test_a_repeat_pass_earns_nothing_and_is_not_a_first_completion() -> None:
    user, ledger = fresh_user(), funded_ledger()
    first = record_submission(user, ledger, "u1", PASS, LIMITS, LAST_MS)
    again = record_submission(user, ledger, "u1", PASS, LIMITS, LAST_MS)
    assert (first.reply.reward, first.reply.first_completion) == (100, True)
    assert (again.reply.reward, again.reply.first_completion) == (0, False)
    assert again.reply.balance == 100 and list(user.completed_units) == ["u1"]
    assert ledger.rewarded_submissions == 1


def test_utc_day_is_right_around_midnight_in_any_order() -> None:
    """utc_day remembers the last day it formatted; a fake clock may go anywhere."""
    midnight = 1_700_006_400_000  # 2023-11-15T00:00:00Z
    instants = [midnight - 1, midnight, midnight + 1, midnight - 1, midnight + 86_399_999]
    instants += [midnight + 86_400_000, 0, -1, midnight, 253_402_300_799_999]
    for ms in instants:
        expected = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")
        assert utc_day(ms) == expected, ms
