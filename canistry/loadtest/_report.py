"""The run's summary: one JSON-ready dict, and the same figures as a readable table. Pure.

Counts cover every request of the run, registration included. Rates and
latency percentiles are per phase: registration on its own row, and the
load (everything after registration) per operation and in total.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, TextIO

from canistry.loadtest._config import LoadTestConfig
from canistry.loadtest._stats import OPS, OpStats, Tally

__all__ = ["build_report", "render_cluster", "render_summary"]


def build_report(
    *,
    config: LoadTestConfig,
    tally: Tally,
    users_registered: int,
    workers: int,
    units: int,
    registration_s: float,
    load_s: float,
    stopped_by: str | None,
    users_signed_up: int = 0,
    cluster: dict[str, Any] | None = None,
    fill: Sequence[tuple[float, Mapping[str, tuple[int, int]]]] = (),
) -> dict[str, Any]:
    """Everything the run measured, as plain JSON types.

    ``cluster`` is the cluster's own figures (``_cluster.shard_figures``);
    ``fill`` the samples of each shard's (users, capacity) by seconds from the
    first registration.
    """
    operations: dict[str, dict[str, float | int]] = {}
    load = OpStats()
    for op in (*OPS, *sorted(set(tally.ops) - set(OPS))):
        stats = tally.ops.get(op)
        if stats is None:
            continue
        operations[op] = stats.figures(registration_s if op == "register" else load_s)
        if op != "register":
            load.count += stats.count
            load.errors += stats.errors
            load.limited += stats.limited
            load.latencies_ms.extend(stats.latencies_ms)
    return {
        "gateway": config.gateway,
        "config": {
            "users": config.users,
            "duration_s": config.duration_s,
            "concurrency": config.concurrency,
            "max_requests": config.max_requests,
            "seed": config.seed,
            "mix": {
                "read": config.mix.read,
                "submit": config.mix.submit,
                "register": config.mix.register,
            },
        },
        "workers": workers,
        "users_registered": users_registered,
        "units": units,
        "registration_s": round(registration_s, 3),
        "load_s": round(load_s, 3),
        "stopped_by": stopped_by,
        "operations": operations,
        "load": load.figures(load_s),
        "totals": {
            "requests": tally.requests,
            "errors": tally.errors,
            "limited": tally.limited,
            "status_5xx": tally.status_count(500, 599),
            "status_503": tally.status_count(503, 503),
            "status_429": tally.status_count(429, 429),
            "no_response": tally.statuses.get("none", 0),
            "unreadable": tally.statuses.get("unreadable", 0),
            "backoffs": tally.backoffs,
            "backoff_s": round(tally.backoff_s, 2),
        },
        "submissions": asdict(tally.submissions),
        "tokens_earned": tally.tokens_earned,
        "statuses": dict(sorted(tally.statuses.items())),
        "problems": dict(tally.problems.most_common()),
        "errors_by_type": dict(tally.errors_by_type.most_common()),
        "users_signed_up": users_signed_up,
        "cluster": cluster,
        "timeline": {
            **tally.timeline.series(),
            "load_starts_s": tally.timeline.marks.get("load"),
        },
        "fill": [
            {
                "t_s": round(t, 2),
                "shards": {sid: {"users": u, "capacity": c} for sid, (u, c) in shards.items()},
            }
            for t, shards in fill
        ],
    }


_HEAD = ("operation", "request", "count", "errors", "429", "req/s", "p50 ms", "p90 ms", "p99 ms",
         "max ms")  # fmt: skip
_WIDTHS = (15, 34, 9, 7, 6, 9, 9, 9, 9, 9)


def _row(cells: tuple[str, ...]) -> str:
    op, request, *rest = cells
    return f"{op:<{_WIDTHS[0]}}{request:<{_WIDTHS[1]}}" + "".join(
        f"{c:>{w}}" for c, w in zip(rest, _WIDTHS[2:], strict=True)
    )


def _figures_row(op: str, f: dict[str, Any]) -> str:
    """One row, named by the report's own operation key (the JSON uses the same)."""
    return _row((
        op, OPS.get(op, "all operations" if op == "load" else ""),
        f"{f['count']:,}", f"{f['errors']:,}", f"{f['limited']:,}",
        f"{f['per_second']:,.1f}", f"{f['p50_ms']:.1f}", f"{f['p90_ms']:.1f}",
        f"{f['p99_ms']:.1f}", f"{f['max_ms']:.1f}",
    ))  # fmt: skip


def render_summary(report: dict[str, Any], out: TextIO) -> None:
    """The report as a table per operation, then the totals, for a person to read."""
    rule = "-" * sum(_WIDTHS)
    ops: dict[str, dict[str, Any]] = report["operations"]
    totals, subs = report["totals"], report["submissions"]
    print(
        f"load test of {report['gateway']}: {report['users_registered']} users registered "
        f"in {report['registration_s']:.2f} s, then {report['workers']} workers for "
        f"{report['load_s']:.2f} s (stopped by {report['stopped_by'] or 'nothing'})",
        file=out,
    )
    print(_row(_HEAD), file=out)
    print(rule, file=out)
    if "register" in ops:
        print(_figures_row("register", ops["register"]), file=out)
        print(rule, file=out)
    for op, figures in ops.items():
        if op != "register":
            print(_figures_row(op, figures), file=out)
    print(rule, file=out)
    print(_figures_row("load", report["load"]), file=out)
    print(file=out)
    print(
        f"requests {totals['requests']:,}   errors {totals['errors']:,}   "
        f"5xx {totals['status_5xx']:,}   503 {totals['status_503']:,} "
        f"(backed off {totals['backoffs']:,} times, {totals['backoff_s']:.1f} s)   "
        f"429 {totals['status_429']:,}   no response {totals['no_response']:,}   "
        f"unreadable {totals['unreadable']:,}",
        file=out,
    )
    print(
        f"submissions {subs['answered']:,} answered: {subs['passed']:,} passed, "
        f"{subs['failed']:,} failed, {subs['rewarded']:,} rewarded; "
        f"{subs['wrong_on_purpose']:,} wrong on purpose, {subs['guessed']:,} guessed; "
        f"{subs['limited']:,} refused by the daily limit; {subs['replays']:,} replayed "
        f"({subs['replays_differing']:,} answered differently)",
        file=out,
    )
    print(f"tokens earned {report['tokens_earned']:,}", file=out)
    if report["problems"]:
        print("not ok, by status and problem type:", file=out)
        for kind, n in report["problems"].items():
            print(f"  {n:>9,}  {kind}", file=out)
    if report.get("cluster"):
        render_cluster(report["cluster"], out)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def render_cluster(cluster: dict[str, Any], out: TextIO) -> None:
    """Per-shard figures and the hub's calls, as the cluster counted them."""
    shards: dict[str, dict[str, Any]] = cluster["shards"]
    where = {
        "cluster": "the shards' and hub's own counters",
        "gateway": "the gateway's /v1/cluster (give --data-dir for the shards' counters)",
    }.get(cluster["source"], "nothing: the cluster's figures could not be read")
    print(f"\nshards ({len(shards)}), from {where}:", file=out)
    print(f"  {'shard':<14}{'state':<9}{'users':>9}{'added':>9}{'capacity':>10}"
          f"{'submits':>10}{'rewarded':>10}{'hub calls':>10}", file=out)  # fmt: skip
    for sid, s in shards.items():
        print(f"  {sid:<14}{s['state']:<9}{_n(s['users']):>9}{_n(s['users_added']):>9}"
              f"{_n(s['capacity']):>10}{_n(s['submissions']):>10}"
              f"{_n(s['rewarded_submissions']):>10}{_n(s['hub_calls']):>10}",
              file=out)  # fmt: skip
    hub = cluster["hub"]
    print(f"hub allowance calls during the run {_n(hub['allowance_calls_during'])} "
          f"({_n(hub['allowance_calls_before'])} before, {_n(hub['allowance_calls_after'])} "
          "after)", file=out)  # fmt: skip
