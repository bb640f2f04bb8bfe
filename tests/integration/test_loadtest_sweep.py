"""`canistry loadtest --shards ...`: a sweep over throwaway clusters, the command as a process.

Each shard count gets its own real cluster in a temporary directory, sized
so the users spread evenly; the sweep must leave neither directories nor
processes behind, and must write its table, its JSON report and a real PNG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def _processes_under(path: Path) -> list[int]:
    """Live processes whose arguments mention ``path`` (the sweep's clusters' data)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_short_sweep_writes_its_table_report_and_plot(tmp_path: Path) -> None:
    report_file, plot_file = tmp_path / "sweep.json", tmp_path / "sweep.png"
    scratch = tmp_path / "tmp"  # where the sweep makes (and must remove) its clusters
    scratch.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "canistry", "loadtest", "--shards", "1,2", "--users", "4",
         "--duration", "2", "--concurrency", "4", "--gateway-workers", "1", "--seed", "3",
         "--report", str(report_file), "--plot", str(plot_file)],
        capture_output=True, text=True, timeout=270, env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]

    sweep = json.loads(report_file.read_text())
    assert [run["shards"] for run in sweep["runs"]] == [1, 2]
    one, two = sweep["runs"]
    # Limits sized to the shard count: the users spread evenly.
    assert one["users_per_shard"] == [4] and two["users_per_shard"] == [2, 2]
    for run in (one, two):
        assert run["users_registered"] == 4 and run["stopped_by"] == "duration"
        assert run["load"]["count"] > 0 and run["load"]["per_second"] > 0
        assert run["errors"] == 0, run["report"]["errors_by_type"]
        assert isinstance(run["hub_calls"], int)
        assert run["report"]["cluster"]["source"] == "cluster"

    # The table: one row per shard count, with throughput and p99.
    lines = result.stdout.splitlines()
    head = next(line for line in lines if line.lstrip().startswith("shards"))
    assert "req/s" in head and "p99 ms" in head and "hub calls" in head
    assert any(line.split()[:2] == ["1", "4-4"] for line in lines)
    assert any(line.split()[:2] == ["2", "2-2"] for line in lines)
    assert f"plot: {plot_file}" in result.stdout

    png = plot_file.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000

    # Each cluster was stopped and removed.
    assert list(scratch.iterdir()) == []
    assert _processes_under(scratch) == []
