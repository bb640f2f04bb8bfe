"""The benchmarks keep working: the ceiling chain, one scaling step and the table, tiny.

Not timed: the figures on a shared 2-core machine mean nothing here. This
runs the real processes (the ceiling's two servers, a one-shard cluster with
one load process) with tiny bounds, and checks that each reports what
``python -m bench`` prints.
"""

from __future__ import annotations

import os

import pytest

from bench.__main__ import main as bench_main
from bench.__main__ import rows_of, table
from bench._ceiling import run_ceiling
from bench._cpu import proc_cpu_s, self_cpu_s
from bench.scaling import run_step


def test_cpu_of_a_process_is_read_from_proc() -> None:
    burn = sum(i * i for i in range(200_000))
    assert burn > 0
    assert proc_cpu_s(os.getpid()) > 0
    assert self_cpu_s() > 0
    assert proc_cpu_s(2**22 + 12345) == 0.0  # no such process


def test_the_ceiling_chain_serves_and_reports_cpu_per_role() -> None:
    s = run_ceiling(concurrency=4, submissions=60, seconds=10.0)
    assert s["submissions"] == 60 and s["errors"] == 0
    assert s["per_second"] > 0
    assert set(s["cpu_per_1000"]) == {"echo", "front", "load"}
    assert s["cpu_s"]["front"] > 0 and s["cpu_s"]["echo"] > 0


def test_one_scaling_step_drives_its_shard_and_counts_each_role() -> None:
    step = run_step(1, users_per_shard=3, concurrency=2, submissions=30, seconds=10.0)
    assert step["shards"] == 1
    assert step["submissions"] == 30 and step["errors"] == 0
    assert set(step["cores"]) == {"content", "shards", "load"}
    assert step["cpu_per_1000"]["shards"] > 0


def test_the_table_has_a_row_with_ratio_and_target_per_figure() -> None:
    results = {
        "shard_submit": {
            "group_commit": {
                "per_second": 800.0,
                "p50_ms": 10.0,
                "p99_ms": 30.0,
                "cpu_per_1000": {"content": 0.1, "shard": 0.7, "load": 0.2},
            },
            "ceiling": {
                "per_second": 1000.0,
                "p50_ms": 8.0,
                "p99_ms": 20.0,
                "cpu_per_1000": {"echo": 0.4, "front": 0.9, "load": 0.3},
            },
        },
        "scaling": {
            "steps": [
                {"shards": 1, "per_second": 500.0, "cores": {"content": 0.1, "shards": 0.6,
                                                            "load": 0.2}},
                {"shards": 2, "per_second": 900.0, "cores": {"content": 0.2, "shards": 1.2,
                                                            "load": 0.4}},
            ]
        },
    }  # fmt: skip
    rows = {r.figure: r for r in rows_of(results)}
    ratio = rows["one shard: submissions/s"].ratio
    assert ratio is not None and abs(ratio - 0.8) < 1e-9
    assert rows["scaling: 2 shard(s), submissions/s"].ratio == pytest.approx(1.8)
    text = table(list(rows.values()))
    assert "one shard: submissions/s" in text and ">= 0.8" in text


def test_python_m_bench_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_main(["--only", "nope"])
    assert "unknown benchmark" in capsys.readouterr().err
