"""The load tester's pure parts, and whole runs against an in-memory fake gateway.

The fake (an ``httpx.MockTransport``) answers like the gateway, with the
rough edges a real one has under load: a 503 with Retry-After now and then,
the daily limit (429), a 500, an unreadable body. The run must count each
and keep going. Real processes are in tests/integration/test_loadtest.py.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from canistry.client import Choice, Question, Unit
from canistry.loadtest import (
    ConfigError,
    LoadTestConfig,
    MixWeights,
    SweepConfig,
    Unreachable,
    is_loopback_host,
    run_load,
)
from canistry.loadtest._answers import AnswerBook
from canistry.loadtest._mix import step_weights
from canistry.loadtest._report import render_summary
from canistry.loadtest._stats import Tally, percentile
from canistry.loadtest._sweep import sweep_cluster
from content_service.service import load_sample_pack

SAMPLE = {u["id"]: u for u in json.loads(load_sample_pack())["units"]}

# -- pure parts -------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == 50.0 and percentile(xs, 95) == 95.0 and percentile(xs, 99) == 99
    assert percentile([7.0], 99) == 7.0 and percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0 and percentile([1.0, 2.0], 100) == 2.0


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.9.8.7", "localhost", "LOCALHOST.", "::1", "[::1]", "::ffff:127.0.0.1"],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["example.com", "10.0.0.1", "0.0.0.0", "128.0.0.1", "::2", "localhost.example.com",
             "127.0.0.1.nip.io", "fe80::1%lo"],
)  # fmt: skip
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_config_normalises_the_url_and_bounds_workers_by_users() -> None:
    config = LoadTestConfig("http://127.0.0.1:8080/", users=3, duration_s=1, concurrency=8)
    assert config.gateway == "http://127.0.0.1:8080" and config.workers == 3
    assert LoadTestConfig("http://[::1]:80", users=1, duration_s=1).gateway == "http://[::1]:80"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"gateway": "https://example.org"}, "not loopback"),
        ({"gateway": "http://192.168.1.10:8080"}, "--allow-remote"),
        ({"gateway": "ftp://127.0.0.1"}, "http(s) URL"),
        ({"gateway": "127.0.0.1:8080"}, "http(s) URL"),
        ({"gateway": "http://127.0.0.1:8080/v1"}, "without a path"),
        ({"gateway": "http://127.0.0.1:99999"}, "not a URL"),
        ({"gateway": "http://u:p@127.0.0.1"}, "credentials"),
        ({"users": 0}, "--users"),
        ({"concurrency": 0}, "--concurrency"),
        ({"max_requests": 0}, "--max-requests"),
        ({"duration_s": 0}, "--duration"),
        ({"duration_s": -1}, "--duration"),
        ({"duration_s": math.nan}, "--duration"),
        ({"duration_s": math.inf}, "--duration"),
        ({"request_timeout_s": 0}, "--request-timeout"),
        ({"report": Path("/nonexistent-dir/r.json")}, "--report"),
    ],
)
def test_config_refuses_what_cannot_work(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"gateway": "http://127.0.0.1:8080", "users": 1, "duration_s": 1.0}
    with pytest.raises(ConfigError, match=re.escape(message)):
        LoadTestConfig(**{**base, **fields})


def test_a_plot_without_matplotlib_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image and a plain install have no matplotlib: say so before any load, not after."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name)
    )
    with pytest.raises(ConfigError, match=re.escape("pip install 'canistry[loadtest]'")):
        LoadTestConfig("http://127.0.0.1:8080", users=1, duration_s=1, plot=tmp_path / "p.png")
    LoadTestConfig("http://127.0.0.1:8080", users=1, duration_s=1, report=tmp_path / "r.json")


def test_allow_remote_lets_a_remote_gateway_through() -> None:
    config = LoadTestConfig("https://gw.example.org", users=1, duration_s=1, allow_remote=True)
    assert config.gateway == "https://gw.example.org"


def _unit(raw: dict[str, Any], *, unit_id: str | None = None) -> Unit:
    questions = tuple(
        Question(q["id"], q["prompt"], tuple(Choice(c["id"], c["text"]) for c in q["choices"]))
        for q in raw["quiz"]["questions"]
    )
    return Unit(unit_id or raw["id"], raw["subject"], raw["title"], raw["body"], raw["reward"],
                1, raw["quiz"]["pass_score"], questions, '"e1"')  # fmt: skip


def test_answer_book_knows_the_sample_pack_and_guesses_otherwise() -> None:
    book, raw = AnswerBook.sample(), SAMPLE["math-001"]
    key = {q["id"]: q["answer"] for q in raw["quiz"]["questions"]}
    right = book.answers(_unit(raw), right=True)
    assert right.known and right.choices == key
    wrong = book.answers(_unit(raw), right=False)
    assert wrong.known and all(wrong.choices[q] != a for q, a in key.items())
    # Same id, another quiz (a changed pack): the key does not apply.
    changed = dict(raw, quiz=dict(raw["quiz"], questions=raw["quiz"]["questions"][:2]))
    guess = book.answers(_unit(changed), right=True)
    assert not guess.known and len(guess.choices) == 2
    assert not book.answers(_unit(raw, unit_id="elsewhere-001"), right=True).known


def test_tally_sorts_outcomes() -> None:
    tally = Tally()
    tally.ok("me", 1.0, 200)
    tally.refused("submit", 2.0, 429, "daily-limit-exceeded")
    tally.refused("submit", 3.0, 503, "no-capacity")
    tally.failed("me", 4.0, "ConnectError")
    assert (tally.requests, tally.errors, tally.limited) == (4, 2, 1)
    assert tally.status_count(500, 599) == 1 and tally.statuses["none"] == 1
    assert tally.problems["429 daily-limit-exceeded"] == 1


# -- whole runs against a fake gateway -----------------------------------------------------------

_KEY = re.compile(r"key=([A-Za-z0-9_-]+)")
#: Units the fake lists; the last is not in the sample pack, so its answers are guessed.
_UNITS = [*(u for u in SAMPLE if u.startswith("math-")), "mystery-001"]


def _public_unit(unit_id: str) -> dict[str, Any]:
    raw = SAMPLE.get(unit_id) or dict(SAMPLE["money-001"], id=unit_id)
    questions = [{"id": q["id"], "prompt": q["prompt"], "choices": q["choices"]}
                 for q in raw["quiz"]["questions"]]  # fmt: skip
    return {"id": unit_id, "subject": raw["subject"], "title": raw["title"], "body": raw["body"],
            "reward": raw["reward"], "version": 1,
            "quiz": {"pass_score": raw["quiz"]["pass_score"], "questions": questions}}  # fmt: skip


def _problem(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"type": f"https://canistry.dev/problems/{code}", "title": code, "status": status,
            "detail": code}  # fmt: skip
    return httpx.Response(status, json=body, headers=headers)


class FakeGateway:
    """Enough of the gateway for the load tester, with its answers counted to check the run's."""

    ATTEMPTS = 15
    TOKENS = 150  # a user passes a few math units, then a pass is refused (429)

    def __init__(self, *, healthy: bool = True) -> None:
        self.healthy = healthy
        self.requests = 0
        self.users: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, httpx.Response] = {}
        self.bounced: set[str] = set()
        self.rewards = 0
        self.seen: Counter[str] = Counter()
        self.cluster_reads = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if path == "/healthz":
            return httpx.Response(200, json={"status": "ok"} if self.healthy else {"x": 1})
        if path == "/v1/cluster":  # read by the run for its shard figures, not load
            self.cluster_reads += 1
            shards = [{"id": "shard-0001", "state": "active", "users": len(self.users),
                       "capacity": 100}]  # fmt: skip
            return httpx.Response(200, json={"shards": shards, "soft_limit": 90, "cap": 10**6,
                                             "total_granted": 0, "total_staked": 0})  # fmt: skip
        self.requests += 1
        self.seen[method + " " + re.sub(r"/units/[^/]+", "/units/{id}", path)] += 1
        if path == "/v1/units":
            units = [{"id": u, "subject": "math", "title": u, "reward": 10, "version": 1,
                      "question_count": 3} for u in _UNITS]  # fmt: skip
            return httpx.Response(200, json={"units": units, "next_cursor": None})
        if method == "GET" and path.startswith("/v1/units/"):
            if request.headers.get("If-None-Match") == '"v1"':
                return httpx.Response(304, headers={"ETag": '"v1"'})
            unit = _public_unit(path.split("/")[3])
            return httpx.Response(200, json=unit, headers={"ETag": '"v1"'})
        match = _KEY.search(request.headers.get("Authorization", ""))
        if match is None:
            return _problem(401, "missing-authorization")
        who = match.group(1)
        if path == "/v1/users":
            if who not in self.users and len(self.bounced) == 0:
                self.bounced.add("register")
                return _problem(503, "no-capacity", **{"Retry-After": "0"})
            self.users.setdefault(who, {"attempts": 0, "staked": 0, "done": set()})
            profile = {"name": "n", "email": "e@x", "education": "", "gender": ""}
            return httpx.Response(201, json={"principal": who, "shard": "s", "profile": profile})
        user = self.users[who]
        if path.endswith("/submissions"):
            return self.submit(request, user, path.split("/")[3])
        if path == "/v1/me/balance":
            if self.requests % 7 == 0:
                return httpx.Response(200, content=b"not json")
            return httpx.Response(200, json={"staked": user["staked"], "pending": 0})
        if path == "/v1/me":
            if self.requests % 11 == 0:
                return _problem(500, "internal")
            return httpx.Response(200, json={
                "principal": who, "shard": "s",
                "profile": {"name": "n", "email": "e@x", "education": "", "gender": ""},
                "completed_units": sorted(user["done"]),
                "today": {"day": "2025-01-01", "attempts": user["attempts"], "earned": 0,
                          "attempts_left": self.ATTEMPTS - user["attempts"]},
                "balance": {"staked": user["staked"], "pending": 0},
            })  # fmt: skip
        return _problem(404, "no-such-route")

    def submit(self, request: httpx.Request, user: dict[str, Any], unit: str) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        if key in self.replies:
            return self.replies[key]
        if len(self.replies) % 3 == 1 and key not in self.bounced:
            self.bounced.add(key)
            return _problem(503, "unavailable", **{"Retry-After": "0.01"})
        if user["attempts"] >= self.ATTEMPTS:
            return _problem(429, "daily-limit-exceeded")
        answers = json.loads(request.content)["answers"]
        raw = SAMPLE.get(unit)
        passed = raw is not None and all(
            answers.get(q["id"]) == q["answer"] for q in raw["quiz"]["questions"]
        )
        first = passed and unit not in user["done"]
        reward = raw["reward"] if first and raw else 0
        if user["staked"] + reward > self.TOKENS:
            return _problem(429, "daily-limit-exceeded")  # nothing recorded, as the shard does
        user["attempts"] += 1
        if first:
            user["done"].add(unit)
        user["staked"] += reward
        self.rewards += reward
        body = {"passed": passed, "score": 3 if passed else 0, "total": 3, "reward": reward,
                "first_completion": first, "balance": user["staked"], "pending": 0,
                "attempts_today": user["attempts"],
                "attempts_left": self.ATTEMPTS - user["attempts"]}  # fmt: skip
        self.replies[key] = httpx.Response(200, json=body)
        return self.replies[key]


def _config(**fields: Any) -> LoadTestConfig:
    base: dict[str, Any] = {"gateway": "http://127.0.0.1:9", "users": 3, "duration_s": 0.5,
                            "concurrency": 3, "seed": 7, "progress_interval_s": 0.2}  # fmt: skip
    return LoadTestConfig(**{**base, **fields})


async def test_a_run_counts_every_outcome_and_keeps_going(monkeypatch: pytest.MonkeyPatch) -> None:
    # More wrong answers and replays than a real mix, so that a short run surely has some.
    monkeypatch.setattr("canistry.loadtest._mix.RIGHT_ANSWER_P", 0.5)
    monkeypatch.setattr("canistry.loadtest._mix.REPLAY_P", 0.3)
    fake, err = FakeGateway(), io.StringIO()
    # Stopped by its request count, not the clock: as much load on a busy machine as on
    # an idle one, enough that every user reaches a daily limit. One request at a time,
    # so that the seed alone decides the run: with several in flight, their order (and
    # so which user draws which unit) follows the machine's timing, and about one run in
    # twenty never drew the unit whose answers are guessed.
    report = await run_load(
        _config(duration_s=120.0, max_requests=400, concurrency=1),
        err=err,
        transport=lambda: httpx.MockTransport(fake),
    )
    ops, totals, subs = report["operations"], report["totals"], report["submissions"]
    assert report["users_registered"] == 3 and report["stopped_by"] == "max-requests"
    # Every request the fake saw is counted, and nothing else.
    assert totals["requests"] == fake.requests - 1  # the catalogue read is setup
    assert ops["register"]["count"] == 4 and totals["backoffs"] >= 2
    assert totals["status_503"] == totals["backoffs"]
    assert totals["status_5xx"] > totals["status_503"]  # the 500s
    assert subs["answered"] > 0 and subs["limited"] > 0 and totals["status_429"] == subs["limited"]
    assert subs["guessed"] > 0 and subs["wrong_on_purpose"] > 0
    assert subs["replays"] > 0 and subs["replays_differing"] == 0
    assert report["tokens_earned"] == fake.rewards > 0
    assert report["problems"]["500 internal"] > 0
    assert report["problems"]["unreadable answer: JSONDecodeError"] > 0
    assert ops["read_unit_cond"]["count"] > 0 and ops["list_units"]["count"] > 0
    assert all(figures["p50_ms"] <= figures["p99_ms"] for figures in ops.values())
    # Progress lines, and each new kind of failure noted once.
    assert "load" in err.getvalue() and err.getvalue().count("first 500 internal") == 1
    out = io.StringIO()
    render_summary(report, out)
    text = out.getvalue()
    assert "POST /v1/units/{id}/submissions" in text and "p99 ms" in text
    rows = {line.split()[0] for line in text.splitlines() if line.strip()}
    assert set(ops) <= rows, "the table names each operation as the JSON report does"
    assert f"tokens earned {report['tokens_earned']:,}" in text


async def test_a_run_stops_at_its_request_cap() -> None:
    fake = FakeGateway()
    report = await run_load(
        _config(duration_s=60, max_requests=40), transport=lambda: httpx.MockTransport(fake)
    )
    assert report["stopped_by"] == "max-requests" and report["totals"]["requests"] == 40


async def test_a_gateway_that_goes_away_is_counted_not_fatal() -> None:
    fake, calls = FakeGateway(), Counter[str]()

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] > 12:
            raise httpx.ConnectError("connection refused", request=request)
        return fake(request)

    report = await run_load(_config(duration_s=0.5), transport=lambda: httpx.MockTransport(flaky))
    assert report["totals"]["no_response"] > 0
    assert report["problems"]["no response: ConnectError"] == report["totals"]["no_response"]
    # Workers pause after a request gets no response: a few per worker, not thousands.
    assert report["totals"]["no_response"] < 3 * 0.5 / 0.2 + 6


async def test_no_gateway_or_not_a_gateway_is_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    with pytest.raises(Unreachable, match=re.escape("no gateway answers at http://127.0.0.1:9")):
        await run_load(_config(), transport=lambda: httpx.MockTransport(refuse))
    with pytest.raises(Unreachable, match="no Canistry gateway answers"):
        await run_load(_config(), transport=lambda: httpx.MockTransport(FakeGateway(healthy=False)))


# -- the mix, the report's new figures, the live bar, plots, sweeps ------------------------------


@pytest.mark.parametrize(
    ("text", "shares"),
    [
        ("read=70,submit=25,register=5", (70, 25, 5)),
        ("submit=1", (0, 1, 0)),
        (" read = 3 , register=1 ", (3, 0, 1)),
    ],
)
def test_mix_parses_shares(text: str, shares: tuple[int, int, int]) -> None:
    mix = MixWeights.parse(text)
    assert (mix.read, mix.submit, mix.register) == shares
    assert MixWeights.parse(str(mix)) == mix


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read=70,write=30", "kind=share pairs"),
        ("read", "kind=share pairs"),
        ("read=a", "not a whole number"),
        ("read=1,read=2", "given twice"),
        ("read=-1,submit=5", "cannot be negative"),
        ("read=0,submit=0", "at least one share"),
    ],
)
def test_mix_refuses_what_cannot_work(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        MixWeights.parse(text)


def test_the_read_share_splits_as_the_default_mix_always_did() -> None:
    weights = step_weights(MixWeights(read=70, submit=25, register=5))
    assert weights == {"list": 15, "read": 30, "me": 15, "balance": 10, "submit": 25, "signup": 5}
    assert "signup" not in step_weights(MixWeights())


async def test_a_run_with_signups_loads_the_new_users_too() -> None:
    fake = FakeGateway()
    report = await run_load(
        _config(duration_s=0.6, mix=MixWeights(read=50, submit=10, register=40)),
        transport=lambda: httpx.MockTransport(fake),
    )
    signups = report["operations"]["signup"]
    assert report["users_signed_up"] > 0 and signups["count"] >= report["users_signed_up"]
    assert report["config"]["mix"] == {"read": 50, "submit": 10, "register": 40}
    # Every user the fake knows is one the run registered, before or during the load.
    assert len(fake.users) == report["users_registered"] + report["users_signed_up"]


async def test_the_report_holds_percentiles_errors_by_type_a_timeline_and_shards() -> None:
    fake = FakeGateway()
    report = await run_load(_config(duration_s=1.0), transport=lambda: httpx.MockTransport(fake))
    for figures in report["operations"].values():
        assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    # Errors by type: everything counted as an error, and no 429 (an expected answer).
    assert sum(report["errors_by_type"].values()) == report["totals"]["errors"]
    assert not any(kind.startswith("429") for kind in report["errors_by_type"])
    timeline = report["timeline"]
    assert sum(timeline["requests"]) == report["totals"]["requests"]
    assert sum(timeline["errors"]) == report["totals"]["errors"]
    assert 0 <= timeline["load_starts_s"] <= timeline["t_s"][-1] + 1
    # Without a data directory, the shards' figures come from the gateway's /v1/cluster.
    cluster = report["cluster"]
    assert cluster["source"] == "gateway" and cluster["shard_count"] == 1
    assert cluster["shards"]["shard-0001"]["users"] == 3
    assert cluster["shards"]["shard-0001"]["users_added"] == 3
    assert cluster["shards"]["shard-0001"]["hub_calls"] is None  # unknown, not 0
    assert report["fill"] and fake.cluster_reads >= 2
    out = io.StringIO()
    render_summary(report, out)
    text = out.getvalue()
    assert "p90 ms" in text and "max ms" in text and "shard-0001" in text
    assert "hub allowance calls during the run -" in text


async def test_a_live_bar_shows_the_phases_on_a_terminal() -> None:
    err = io.StringIO()
    run = _config(duration_s=0.6, live=True)
    await run_load(run, err=err, transport=lambda: httpx.MockTransport(FakeGateway()))
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.getvalue())
    assert "registering" in text and "3/3 users" in text
    assert re.search(r"load +━+ 0.6/0.6 s .* req [0-9,]+/s .* err", text), text
    assert "\x1b[" in err.getvalue(), "drawn in place, as a live bar"


def _png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, len(data)


async def test_a_run_and_a_sweep_are_drawn_as_png(tmp_path: Path) -> None:
    from canistry.loadtest._plot import plot_run, plot_sweep

    report = await run_load(
        _config(duration_s=0.5), transport=lambda: httpx.MockTransport(FakeGateway())
    )
    plot_run(report, tmp_path / "run.png")
    _png(tmp_path / "run.png")
    load = {"per_second": 100.0, "p50_ms": 5.0, "p99_ms": 40.0}
    runs = [{"shards": 1, "load": load}, {"shards": 2, "load": dict(load, per_second=180)},
            {"shards": 4, "error": "the cluster did not start"}]  # fmt: skip
    sweep = {"config": {"users": 8, "duration_s": 2, "mix": "read=70,submit=30"}, "runs": runs}
    plot_sweep(sweep, tmp_path / "sweep.png")
    _png(tmp_path / "sweep.png")


def test_a_sweep_sizes_each_cluster_to_spread_the_users_evenly(tmp_path: Path) -> None:
    config = SweepConfig(shards=(1, 2, 4), users=10, duration_s=1, gateway_workers=1)
    up = sweep_cluster(config, 4, tmp_path)
    assert (up.min_shards, up.max_shards, up.soft_limit, up.hard_limit) == (4, 4, 3, 3)
    assert up.register_rate >= 1000 and up.register_burst >= 1000 and up.warm_pool == 0
    assert sweep_cluster(config, 1, tmp_path).hard_limit == 10


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shards": ()}, "1 to 8 shard counts"),
        ({"shards": (1, 1)}, "given twice"),
        ({"shards": (0,)}, "in 1..64"),
        ({"shards": (65,)}, "in 1..64"),
        ({"users": 0}, "--users"),
        ({"duration_s": math.nan}, "--duration"),
        ({"plot": Path("/nonexistent-dir/p.png")}, "--plot"),
    ],
)
def test_a_sweep_refuses_what_cannot_work(fields: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"shards": (1, 2), "users": 2, "duration_s": 1.0, "gateway_workers": 1}
    with pytest.raises(ConfigError, match=re.escape(message)):
        SweepConfig(**{**base, **fields})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shards", "1,x"], "give shard counts like 1,2,4"),
        (["--shards", "1", "--data-dir", "."], "--data-dir is for --gateway"),
        (["--gateway", "http://127.0.0.1:1", "--gateway-workers", "2"], "for a sweep"),
        (["--gateway", "http://127.0.0.1:1", "--mix", "read=1,pay=2"], "--mix"),
        (["--gateway", "http://127.0.0.1:1", "--data-dir", "/nonexistent"], "no cluster.json"),
    ],
)
def test_loadtest_flags_that_cannot_work_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from canistry.cli import main

    assert main(["loadtest", "--users", "2", "--duration", "1", *args]) == 2
    assert message in capsys.readouterr().err


def test_gateway_and_shards_are_one_or_the_other(capsys: pytest.CaptureFixture[str]) -> None:
    from canistry.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["loadtest", "--gateway", "http://127.0.0.1:1", "--shards", "1", "--users", "1",
              "--duration", "1"])  # fmt: skip
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
