"""What a load run counted: per-operation latencies and outcomes, and the run's totals. Pure.

One :class:`Tally` per run, written from one event loop (no locking). A
response is *ok* below 400, *limited* at 429 (the daily limit: an expected
answer in a realistic mix, so not an error), and an *error* otherwise; a
request that got no response (refused, reset, timed out) is an error too.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["OPS", "OpStats", "SubmissionCounts", "Tally", "Timeline", "percentile"]

#: Operation -> the route it drives, as the summary shows it.
OPS = {
    "register": "POST /v1/users",
    "list_units": "GET /v1/units",
    "read_unit": "GET /v1/units/{id}",
    "read_unit_cond": "GET /v1/units/{id} If-None-Match",
    "submit": "POST /v1/units/{id}/submissions",
    "submit_replay": "  same, replayed (same key)",
    "me": "GET /v1/me",
    "balance": "GET /v1/me/balance",
    "signup": "POST /v1/users (during the load)",
}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ascending values; 0.0 if none."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class OpStats:
    """One operation's requests: how many, how they ended, how long each took."""

    count: int = 0
    errors: int = 0
    limited: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def add(self, latency_ms: float, *, error: bool = False, limited: bool = False) -> None:
        self.count += 1
        self.errors += error
        self.limited += limited
        self.latencies_ms.append(latency_ms)

    def figures(self, seconds: float) -> dict[str, float | int]:
        """Count, outcomes, rate over ``seconds`` and latency percentiles (ms, 2 decimals)."""
        xs = sorted(self.latencies_ms)
        return {
            "count": self.count,
            "errors": self.errors,
            "limited": self.limited,
            "per_second": round(self.count / seconds, 1) if seconds > 0 else 0.0,
            "p50_ms": round(percentile(xs, 50), 2),
            "p90_ms": round(percentile(xs, 90), 2),
            "p95_ms": round(percentile(xs, 95), 2),
            "p99_ms": round(percentile(xs, 99), 2),
            "max_ms": round(xs[-1], 2) if xs else 0.0,
        }


@dataclass
class SubmissionCounts:
    """Quiz submissions that the gateway answered (200), and those it refused with 429."""

    answered: int = 0
    passed: int = 0
    failed: int = 0
    rewarded: int = 0
    """Answered with a reward > 0 (a first completion that earned tokens)."""
    wrong_on_purpose: int = 0
    """Sent with answers known to be wrong, as a user who guesses."""
    guessed: int = 0
    """Sent with a fixed guess: the unit's quiz is not the shipped sample pack's."""
    limited: int = 0
    replays: int = 0
    """Sent again with the same Idempotency-Key, as a client that lost the answer."""
    replays_differing: int = 0
    """Replays answered with another body than the first: idempotency is broken."""


#: The most one-second buckets a timeline keeps; later requests land in the last one.
MAX_BUCKETS = 24 * 3600


class Timeline:
    """Requests by the second they ended in, from :meth:`start`: counts, errors, latencies."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.counts: list[int] = []
        self.errors: list[int] = []
        self.latencies_ms: list[list[float]] = []
        self.marks: dict[str, float] = {}
        """Named moments (``load``: when the load began), seconds from the start."""

    def start(self, now: float | None = None) -> None:
        self.t0 = time.monotonic() if now is None else now

    def mark(self, name: str, now: float | None = None) -> None:
        if self.t0 is not None:
            self.marks[name] = (time.monotonic() if now is None else now) - self.t0

    def add(self, latency_ms: float, *, error: bool, now: float | None = None) -> None:
        if self.t0 is None:
            return
        second = int((time.monotonic() if now is None else now) - self.t0)
        second = min(max(second, 0), MAX_BUCKETS - 1)
        while len(self.counts) <= second:
            self.counts.append(0)
            self.errors.append(0)
            self.latencies_ms.append([])
        self.counts[second] += 1
        self.errors[second] += error
        self.latencies_ms[second].append(latency_ms)

    def series(self) -> dict[str, list[float | None]]:
        """Per second: ``t_s``, ``requests``, ``errors``, ``p50_ms`` and ``p99_ms`` (JSON-ready).

        A second in which no request ended has no latency (None), not 0.
        """
        p50: list[float | None] = []
        p99: list[float | None] = []
        for xs in self.latencies_ms:
            ordered = sorted(xs)
            p50.append(round(percentile(ordered, 50), 2) if ordered else None)
            p99.append(round(percentile(ordered, 99), 2) if ordered else None)
        return {
            "t_s": [float(i) for i in range(len(self.counts))],
            "requests": [float(n) for n in self.counts],
            "errors": [float(n) for n in self.errors],
            "p50_ms": p50,
            "p99_ms": p99,
        }


@dataclass
class Tally:
    """Everything one run counted."""

    ops: dict[str, OpStats] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    """Responses by HTTP status ("200", "429", ...); "none" when no response came,
    "unreadable" when one came that the client could not read."""
    problems: Counter[str] = field(default_factory=Counter)
    """Responses that were not ok, by status and problem type ("503 no-capacity")."""
    submissions: SubmissionCounts = field(default_factory=SubmissionCounts)
    tokens_earned: int = 0
    """Sum of the rewards of answered submissions (replays not counted again)."""
    backoffs: int = 0
    """Times a worker waited out a 503's Retry-After before trying again."""
    backoff_s: float = 0.0
    errors_by_type: Counter[str] = field(default_factory=Counter)
    """Requests that count as errors, by what went wrong ("503 no-capacity",
    "no response: ReadTimeout", "unreadable answer: KeyError")."""
    timeline: Timeline = field(default_factory=Timeline)

    def op(self, name: str) -> OpStats:
        if name not in self.ops:
            self.ops[name] = OpStats()
        return self.ops[name]

    def ok(self, op: str, latency_ms: float, status: int) -> None:
        self.op(op).add(latency_ms)
        self.statuses[str(status)] += 1
        self.timeline.add(latency_ms, error=False)

    def refused(self, op: str, latency_ms: float, status: int, code: str) -> None:
        """A response >= 400, with the problem type's last segment as ``code``."""
        limited = status == 429
        self.op(op).add(latency_ms, error=not limited, limited=limited)
        self.statuses[str(status)] += 1
        self.problems[f"{status} {code}"] += 1
        if not limited:
            self.errors_by_type[f"{status} {code}"] += 1
        self.timeline.add(latency_ms, error=not limited)

    def failed(self, op: str, latency_ms: float, kind: str) -> None:
        """No usable response: ``kind`` names what went wrong (``ConnectError``)."""
        self.op(op).add(latency_ms, error=True)
        self.statuses["none"] += 1
        self.problems[f"no response: {kind}"] += 1
        self.errors_by_type[f"no response: {kind}"] += 1
        self.timeline.add(latency_ms, error=True)

    def unreadable(self, op: str, latency_ms: float, kind: str) -> None:
        """A response the client could not read (not JSON, fields missing): ``kind`` says why."""
        self.op(op).add(latency_ms, error=True)
        self.statuses["unreadable"] += 1
        self.problems[f"unreadable answer: {kind}"] += 1
        self.errors_by_type[f"unreadable answer: {kind}"] += 1
        self.timeline.add(latency_ms, error=True)

    @property
    def requests(self) -> int:
        return sum(s.count for s in self.ops.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.ops.values())

    @property
    def limited(self) -> int:
        return sum(s.limited for s in self.ops.values())

    def status_count(self, lo: int, hi: int) -> int:
        """Responses with a status in ``lo..hi`` inclusive."""
        return sum(n for s, n in self.statuses.items() if s.isdigit() and lo <= int(s) <= hi)
