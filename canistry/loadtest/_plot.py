"""Pictures of a report, as PNG (matplotlib, drawn off-screen).

:func:`plot_run` draws one run: requests per second (errors apart), p50 and
p99 latency per second, and each shard's fill (users over its capacity)
over time. :func:`plot_sweep` draws a sweep: throughput and p50/p99 against
the shard count. Both read only the JSON report, so a saved report can be
drawn again later.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["plot_run", "plot_sweep"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def plot_run(report: dict[str, Any], path: Path) -> None:
    """Draw one run's report to ``path`` (PNG). Raises OSError if it cannot be written."""
    plt = _pyplot()
    series = report.get("timeline") or {}
    # Each one-second bucket is drawn at its middle; the last one, cut short by the
    # end of the run, as a rate over the part of it that ran.
    t = [x + 0.5 for x in series.get("t_s", [])]
    requests = list(series.get("requests", []))
    errors = list(series.get("errors", []))
    end_s = report.get("registration_s", 0.0) + report.get("load_s", 0.0)
    if t and 0.1 < end_s - (t[-1] - 0.5) < 1.0:
        part = end_s - (t[-1] - 0.5)
        requests[-1], errors[-1] = requests[-1] / part, errors[-1] / part
    fig, (ax_rate, ax_lat, ax_fill) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    try:
        fig.suptitle(
            f"canistry loadtest of {report['gateway']}: {report['users_registered']} users, "
            f"{report['load']['per_second']:,.0f} req/s, p99 {report['load']['p99_ms']:,.0f} ms"
        )
        ok = [n - e for n, e in zip(requests, errors, strict=True)]
        ax_rate.plot(t, ok, label="ok (incl. 429)", color="tab:blue", marker=".")
        ax_rate.plot(t, errors, label="errors", color="tab:red", marker=".")
        ax_rate.set_ylabel("requests / s")
        ax_lat.plot(t, _gaps(series.get("p50_ms", [])), label="p50", color="tab:green", marker=".")
        ax_lat.plot(t, _gaps(series.get("p99_ms", [])), label="p99", color="tab:orange", marker=".")
        ax_lat.set_ylabel("latency (ms)")
        _plot_fill(ax_fill, report.get("fill") or [])
        if t:
            ax_fill.set_xlim(0, t[-1] + 0.5)
        load_at = series.get("load_starts_s")
        for ax in (ax_rate, ax_lat, ax_fill):
            if load_at is not None:
                ax.axvline(load_at, color="grey", linestyle=":", label="load starts")
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize="small")
        ax_fill.set_xlabel("seconds from the first registration")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def _gaps(values: list[float | None]) -> list[float]:
    """None (a second without requests) as NaN: a gap in the line, not a fall to 0."""
    return [math.nan if v is None else v for v in values]


def _plot_fill(ax: Any, fill: list[dict[str, Any]]) -> None:
    """Users per shard over time, stacked, with the cluster's total capacity."""
    ids = sorted({sid for sample in fill for sid in sample["shards"]})
    if not ids:
        ax.text(0.5, 0.5, "no shard figures", transform=ax.transAxes, ha="center")
        ax.set_ylabel("users per shard")
        return
    t = [sample["t_s"] for sample in fill]
    users = [[sample["shards"].get(sid, {}).get("users", 0) for sample in fill] for sid in ids]
    ax.stackplot(t, users, labels=ids, alpha=0.8, step="post")
    capacity = [sum(s["capacity"] for s in sample["shards"].values()) for sample in fill]
    ax.step(
        t, capacity, where="post", color="black", linestyle="--", label="capacity (hard limits)"
    )
    ax.set_ylabel("users per shard (stacked)")
    ax.set_ylim(bottom=0)


def plot_sweep(sweep: dict[str, Any], path: Path) -> None:
    """Draw a sweep's report to ``path`` (PNG): throughput and p50/p99 per shard count."""
    plt = _pyplot()
    rows = [r for r in sweep["runs"] if r.get("load")]
    shards = [r["shards"] for r in rows]
    fig, (ax_rate, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.5))
    try:
        cfg = sweep["config"]
        fig.suptitle(
            f"canistry loadtest sweep: {cfg['users']} users, {cfg['duration_s']:g} s each, "
            f"mix {cfg['mix']}"
        )
        rates = [r["load"]["per_second"] for r in rows]
        ax_rate.plot(shards, rates, marker="o")
        for x, y in zip(shards, rates, strict=True):
            ax_rate.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(0, 6),
                             ha="center", fontsize="small")  # fmt: skip
        ax_rate.set_xlabel("shards")
        ax_rate.set_ylabel("throughput (requests / s)")
        ax_rate.set_ylim(0, max(rates, default=1.0) * 1.15 or 1.0)
        ax_lat.plot(shards, [r["load"]["p50_ms"] for r in rows], marker="o", label="p50")
        p99 = [r["load"]["p99_ms"] for r in rows]
        ax_lat.plot(shards, p99, marker="o", label="p99")
        for x, y in zip(shards, p99, strict=True):
            ax_lat.annotate(f"{y:,.0f} ms", (x, y), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize="small")  # fmt: skip
        ax_lat.set_xlabel("shards")
        ax_lat.set_ylabel("latency (ms)")
        ax_lat.set_ylim(0, max(p99, default=1.0) * 1.15 or 1.0)
        ax_lat.legend()
        for ax in (ax_rate, ax_lat):
            ax.set_xticks(shards)
            ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)
