"""The token bucket: a burst, then the rate; per client; bounded in size."""

from __future__ import annotations

import pytest

from gateway.ratelimit import TokenBuckets


def test_a_burst_then_the_rate() -> None:
    now = [100.0]
    buckets = TokenBuckets(5.0, 3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = buckets.take("a")
    assert wait == pytest.approx(0.2)
    assert buckets.retry_after_s(wait) == 1
    assert buckets.take("b") == 0.0  # another client has its own bucket
    now[0] += 0.2
    assert buckets.take("a") == 0.0
    assert buckets.take("a") > 0
    now[0] += 60  # refills only up to the burst
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_the_table_forgets_the_least_recently_seen() -> None:
    now = [0.0]
    buckets = TokenBuckets(1.0, 1, max_clients=2, clock=lambda: now[0])
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0
    assert buckets.take("a") > 0  # "a" is now the most recent
    assert buckets.take("c") == 0.0  # "b" goes
    assert len(buckets) == 2
    assert buckets.take("a") > 0  # still remembered, still empty
    assert buckets.take("b") == 0.0  # forgotten: full again


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBuckets(0, 1)
    with pytest.raises(ValueError):
        TokenBuckets(1, 0)
