"""``python -m bench``: every benchmark in turn, and one table of every figure.

Runs ``shard_submit`` (with its same-run ceiling), ``hub_calls``,
``gateway_http``, ``spawn_time`` and ``scaling`` with short settings
(``--quick``: shorter still, for a smoke run), prints each one's own lines
as it goes, then one table: each figure, the reference it is compared with
where it has one (a ceiling measured in the same run, or the earlier figure
the issue states), the ratio, and the target. ``--json FILE`` writes every
benchmark's figures and the table. ``--only`` picks benchmarks by name.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime import logs

NAMES = ("shard_submit", "hub_calls", "gateway_http", "spawn_time", "scaling")

#: Per benchmark: keyword arguments of its ``run_*`` function, normal and ``--quick``.
SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "shard_submit": (
        {"concurrency": 32, "submissions": 6000, "seconds": 8.0, "users": 100},
        {"concurrency": 16, "submissions": 1500, "seconds": 3.0, "users": 20},
    ),
    "hub_calls": (
        {"concurrency": 32, "submissions": 6000, "seconds": 15.0, "users": 200},
        {"concurrency": 16, "submissions": 1500, "seconds": 4.0, "users": 40},
    ),
    "gateway_http": (
        {
            "concurrency": 32,
            "requests": 20000,
            "seconds": 6.0,
            "users": 40,
            "latency_requests": 300,
        },
        {"concurrency": 16, "requests": 4000, "seconds": 3.0, "users": 10, "latency_requests": 100},
    ),
    "spawn_time": ({"reps": 3}, {"reps": 1}),
    "scaling": (
        {
            "counts": [1, 2, 4, 8],
            "users_per_shard": 20,
            "concurrency": 16,
            "submissions": 3000,
            "seconds": 6.0,
        },
        {
            "counts": [1, 2],
            "users_per_shard": 10,
            "concurrency": 8,
            "submissions": 800,
            "seconds": 3.0,
        },
    ),
}

#: The issue's earlier figures (2 cores): content core-s per 1,000 submissions at one shard.
CONTENT_CPU_BEFORE = 0.67


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    figure: str
    value: float
    unit: str
    reference: float | None = None
    reference_is: str = ""
    target: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference is None or not self.reference:
            return None
        return self.value / self.reference

    def cells(self) -> list[str]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        ref = "" if self.reference is None else f"{_num(self.reference)} ({self.reference_is})"
        return [self.figure, f"{_num(self.value)} {self.unit}", ref, ratio, self.target]

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "reference": self.reference,
            "reference_is": self.reference_is,
            "ratio": None if ratio is None else round(ratio, 3),
            "target": self.target,
        }


def _num(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3f}" if abs(x) < 1 else f"{x:.2f}"


def _runners() -> dict[str, Callable[..., dict[str, Any]]]:
    from bench.gateway_http import run_gateway_http
    from bench.hub_calls import run_hub_calls
    from bench.scaling import run_scaling
    from bench.shard_submit import run_all
    from bench.spawn_time import run_spawn_time

    return {
        "shard_submit": run_all,
        "hub_calls": run_hub_calls,
        "gateway_http": run_gateway_http,
        "spawn_time": run_spawn_time,
        "scaling": run_scaling,
    }


def rows_of(results: dict[str, dict[str, Any]]) -> list[Row]:
    """The table's rows from whatever benchmarks ran."""
    rows: list[Row] = []
    if "shard_submit" in results:
        r = results["shard_submit"]
        g, c = r["group_commit"], r["ceiling"]
        rows += [
            Row(
                "one shard: submissions/s",
                g["per_second"],
                "/s",
                c["per_second"],
                "bare chain, same run",
                ">= 0.8",
            ),
            Row("one shard: p50 latency", g["p50_ms"], "ms", c["p50_ms"], "bare chain"),
            Row("one shard: p99 latency", g["p99_ms"], "ms", c["p99_ms"], "bare chain"),
            Row(
                "content CPU per 1,000 submissions",
                g["cpu_per_1000"]["content"],
                "core-s",
                CONTENT_CPU_BEFORE,
                "issue, before batching",
                "<= 0.2 (0.134 core-s)",
            ),
            Row(
                "shard CPU per 1,000 submissions",
                g["cpu_per_1000"]["shard"],
                "core-s",
                c["cpu_per_1000"]["front"],
                "bare chain's A",
            ),
            Row(
                "load CPU per 1,000 submissions",
                g["cpu_per_1000"]["load"],
                "core-s",
                c["cpu_per_1000"]["load"],
                "bare chain's load",
            ),
        ]
        if "per_request_fsync" in r:
            p = r["per_request_fsync"]
            rows.append(
                Row(
                    "one shard, group commit",
                    g["per_second"],
                    "/s",
                    p["per_second"],
                    "one fsync each",
                )
            )
    if "hub_calls" in results:
        h = results["hub_calls"]
        rows.append(Row("hub calls per 1,000 rewarded", h["per_1000_rewarded"], "calls"))
    if "gateway_http" in results:
        runs = {f["label"]: f for f in results["gateway_http"]["runs"]}
        bare = runs["bare uvicorn, fixed JSON"]
        unit, submit = runs["GET /v1/units/{id} (cached)"], runs["POST submissions (signed)"]
        shard = runs["shard direct (gRPC)"]
        rows += [
            Row(
                "gateway: cached unit reads",
                unit["per_second"],
                "req/s",
                bare["per_second"],
                "bare uvicorn",
                ">= 0.5",
            ),
            Row(
                "gateway: signed submissions",
                submit["per_second"],
                "req/s",
                shard["per_second"],
                "shard direct",
                ">= 0.8",
            ),
        ]
        batched = runs.get("shard direct, batched (gRPC)")
        if batched is not None:
            rows.append(
                Row(
                    "gateway: signed submissions",
                    submit["per_second"],
                    "req/s",
                    batched["per_second"],
                    "shard direct, batched",
                )
            )
        for label, name in (
            ("GET /v1/units/{id}, 1 at a time", "unit read"),
            ("POST submissions, 1 at a time", "signed submission"),
        ):
            if label in runs:
                rows.append(Row(f"gateway: unloaded {name}, p50", runs[label]["p50_ms"], "ms"))
        for run, name in ((unit, "cached unit reads"), (submit, "signed submissions")):
            if "gateway_cpu_per_1000" in run:
                rows.append(
                    Row(f"gateway CPU per 1,000 {name}", run["gateway_cpu_per_1000"], "core-s")
                )
    if "spawn_time" in results:
        s = results["spawn_time"]
        rows += [
            Row("spawn: decision -> serving, cold", s["cold"]["serving_median_ms"], "ms"),
            Row(
                "spawn: decision -> serving, warm pool",
                s["warm"]["serving_median_ms"],
                "ms",
                s["cold"]["serving_median_ms"],
                "cold",
            ),
        ]
    if "scaling" in results:
        steps = results["scaling"]["steps"]
        first = steps[0]["per_second"] if steps else 0.0
        for st in steps:
            n = st["shards"]
            rows.append(
                Row(
                    f"scaling: {n} shard(s), submissions/s",
                    st["per_second"],
                    "/s",
                    first if n != steps[0]["shards"] else None,
                    f"{steps[0]['shards']} shard(s)",
                )
            )
            c = st["cores"]
            rows.append(
                Row(
                    f"scaling: {n} shard(s), cores content/shards/load",
                    c["content"],
                    f"/ {c['shards']:.2f} / {c['load']:.2f}",
                )
            )
    return rows


def table(rows: list[Row]) -> str:
    head = ["figure", "value", "compared with", "ratio", "target"]
    cells = [head, *(r.cells() for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(head))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run")
    p.add_argument("--only", default=",".join(NAMES), help="benchmarks to run, comma-separated")
    p.add_argument(
        "--per-request", action="store_true", help="shard_submit also runs one fsync per submission"
    )
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    # Servers' own logs go to their files; the bench's info lines would only interleave.
    logs.configure("bench", level="warning")
    runners = _runners()
    results: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    for name in NAMES:
        if name not in chosen:
            continue
        kwargs = dict(SETTINGS[name][1 if args.quick else 0])
        if name == "shard_submit":
            kwargs["per_request"] = args.per_request
        print(f"\n== {name} {json.dumps(kwargs)}", flush=True)
        results[name] = runners[name](**kwargs)
    rows = rows_of(results)
    print(f"\n== all figures ({time.monotonic() - started:.0f} s, {os.cpu_count()} cores)")
    print(table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "cpu_count": os.cpu_count(),
            "quick": args.quick,
            "results": results,
            "table": [r.as_dict() for r in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
