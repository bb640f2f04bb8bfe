"""`canistry loadtest` as an operator runs it: a real cluster, the command as a process.

The run's own figures must agree with the cluster's: the tokens it reports
earned are exactly what the shards credited (or hold pending) to its users,
on a cluster nobody else uses.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.net import free_port
from tests.integration.conftest import MakeCluster
from tests.integration.direct import Direct

pytestmark = pytest.mark.timeout(90)


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
