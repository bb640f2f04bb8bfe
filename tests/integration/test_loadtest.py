"""`canistry loadtest` as an operator runs it: a real cluster, the command as a process.

The run's own figures must agree with the cluster's: the tokens it reports
earned are exactly what the shards credited (or hold pending) to its users,
on a cluster nobody else uses.
"""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.net import free_port
from tests.integration.conftest import MakeCluster
from tests.integration.direct import Direct

pytestmark = pytest.mark.timeout(90)


LOCUSTFILE = Path(__file__).resolve().parents[2] / "canistry" / "loadtest" / "locustfile.py"


def _loadtest(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "canistry", "loadtest", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def test_a_load_run_reports_what_the_cluster_recorded(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    # A low token limit, so that users meet the daily limit (429) within seconds.
    cluster = make_cluster(daily_token_limit=200)
    report_file = tmp_path / "report.json"
    result = await asyncio.to_thread(
        _loadtest,
        "--gateway", cluster.gateway_url, "--users", "5", "--duration", "4",
        "--concurrency", "4", "--report", str(report_file), "--seed", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_file.read_text())
    totals, subs = report["totals"], report["submissions"]
    assert report["users_registered"] == 5 and report["stopped_by"] == "duration"
    assert subs["answered"] > 0 and subs["rewarded"] > 0 and report["tokens_earned"] > 0
    assert totals["status_5xx"] == 0 and totals["no_response"] == 0, report["problems"]
    assert totals["errors"] == 0, report["problems"]
    assert subs["limited"] > 0 and totals["status_429"] == subs["limited"]
    assert subs["replays_differing"] == 0 and subs["guessed"] == 0
    for op in ("list_units", "read_unit", "submit", "me", "balance"):
        assert report["operations"][op]["count"] > 0, op
    # The summary and the progress lines a person reads.
    assert "POST /v1/units/{id}/submissions" in result.stdout
    assert f"tokens earned {report['tokens_earned']:,}" in result.stdout
    assert " load " in result.stderr and "req/s" in result.stderr

    # The cluster's own figures: what the shards credited and hold pending is what
    # the run says its users earned, and they are the run's users.
    statuses = await Direct(cluster).shard_statuses()
    assert sum(s.users for s in statuses.values()) == 5
    earned = sum(s.credited_total + s.pending_total for s in statuses.values())
    assert earned == report["tokens_earned"]
    assert sum(s.rewarded_submissions for s in statuses.values()) == subs["rewarded"]


def test_help_says_only_loopback_unless_allowed() -> None:
    result = _loadtest("--help", timeout=30)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--allow-remote" in text and "loopback" in text and "127.0.0.0/8" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--users", "0", "--duration", "1"], "--users: must be >= 1"),
        (["--users", "2"], "required: --duration"),
        (["--users", "2", "--duration", "-3"], "--duration must be a positive number"),
        (["--users", "2", "--duration", "soon"], "--duration: invalid float value"),
        (["--users", "2", "--duration", "1", "--concurrency", "0"], "--concurrency: must be >= 1"),
    ],
)
def test_bad_flags_exit_2(args: list[str], message: str) -> None:
    result = _loadtest("--gateway", "http://127.0.0.1:1", *args, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_remote_gateway_is_refused_without_allow_remote() -> None:
    # Refused before anything is sent: the address is judged as written.
    result = _loadtest("--gateway", "http://192.0.2.1:8080", "--users", "1", "--duration", "1")
    assert result.returncode == 2
    assert "not loopback" in result.stderr and "--allow-remote" in result.stderr


def test_no_gateway_answering_exits_2_with_a_clear_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = _loadtest("--gateway", url, "--users", "1", "--duration", "1", timeout=30)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no gateway answers at {url}" in result.stderr
    assert result.stdout == ""


@pytest.mark.timeout(180)
async def test_users_spread_over_shards_and_the_report_shows_each(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    # A hard limit of 2 for 6 users: the hub must add shards while they register.
    cluster = make_cluster(soft_limit=1, hard_limit=2, register_rate=1000, register_burst=1000,
                           content_replicas=1)  # fmt: skip
    report_file, plot_file = tmp_path / "report.json", tmp_path / "run.png"
    result = await asyncio.to_thread(
        _loadtest,
        "--gateway", cluster.gateway_url, "--users", "6", "--duration", "2",
        "--concurrency", "6", "--data-dir", str(cluster.config.data_dir),
        "--report", str(report_file), "--plot", str(plot_file), "--seed", "2",
        timeout=150,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_file.read_text())
    assert report["users_registered"] == 6, report["problems"]
    figures = report["cluster"]
    assert figures["source"] == "cluster", result.stderr
    shards = figures["shards"]
    holding = {sid: s for sid, s in shards.items() if s["users"] > 0}
    assert len(holding) >= 3, shards
    assert all(s["users"] <= 2 for s in shards.values()), shards
    assert sum(s["users_added"] for s in shards.values()) == 6
    # Submissions per shard, from the shards' own counters, agree with the run's.
    subs = report["submissions"]
    assert all(s["submissions"] is not None for s in holding.values()), shards
    assert sum(s["rewarded_submissions"] for s in shards.values()) == subs["rewarded"]
    assert sum(s["submissions"] for s in shards.values()) >= subs["answered"] > 0
    # The hub's count of allowance calls moved: the new shards asked for theirs.
    hub = figures["hub"]
    assert (
        hub["allowance_calls_during"]
        == hub["allowance_calls_after"] - hub["allowance_calls_before"]
    )
    assert hub["allowance_calls_during"] >= 1
    for sid in holding:
        assert sid in result.stdout
    assert "from the shards' and hub's own counters" in result.stdout
    assert f"hub allowance calls during the run {hub['allowance_calls_during']:,}" in result.stdout
    # The fill over time saw the shards fill up, and the plot is a real PNG.
    assert max(len(sample["shards"]) for sample in report["fill"]) >= 3
    png = plot_file.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def _needs_locust() -> None:
    # Never import locust here: it monkey-patches this process for gevent.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed")


def _locust_stats(path: Path) -> dict[str, dict[str, str]]:
    """Locust's --csv stats by request name ("Aggregated" for the total)."""
    return {row["Name"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


@pytest.mark.timeout(180)
async def test_locust_runs_the_mix_headless_with_no_failures(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    _needs_locust()
    cluster = make_cluster(register_rate=1000, register_burst=1000, content_replicas=1)
    stats = tmp_path / "locust"
    env = {**os.environ, "CANISTRY_MIX": "read=70,submit=25,register=5"}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "20",
         "-r", "20", "-t", "10s", "--host", cluster.gateway_url, "--csv", str(stats),
         "--only-summary", "--stop-timeout", "5"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = _locust_stats(Path(f"{stats}_stats.csv"))
    total = rows["Aggregated"]
    assert int(total["Failure Count"]) == 0, result.stderr[-3000:]
    assert int(total["Request Count"]) > 20
    assert int(rows["register"]["Request Count"]) >= 20
    for op in ("submit", "read_unit", "me", "balance"):
        assert int(rows[op]["Request Count"]) > 0, op
    # Every user it registered is one the cluster holds (plus at most one sign-up per
    # Locust user cut off by the end of the run, answered but never reported).
    statuses = await Direct(cluster).shard_statuses()
    signed = int(rows["register"]["Request Count"]) + int(
        rows.get("signup", {"Request Count": "0"})["Request Count"]
    )
    assert signed <= sum(s.users for s in statuses.values()) <= signed + 20


def test_locust_refuses_a_remote_host(tmp_path: Path) -> None:
    _needs_locust()
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "1",
         "-t", "5s", "--host", "http://192.0.2.1:8080", "--only-summary"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "not loopback" in result.stderr, result.stderr[-2000:]
    assert "# reqs" not in result.stdout or " 0     0(0.00%)" in result.stdout
