"""Sweeps: the same load against throwaway clusters of 1, 2, 4, ... shards.

For each shard count N, :func:`run_sweep` starts a cluster in a temporary
directory (:class:`canistry.up.Cluster`) with N shards from the start, at
most N, and limits sized so the users spread evenly (each shard's hard
limit is ``ceil(users / N)``; the registry fills the newest shard to its
limit, then the next). The gateway's per-address registration limit is
lifted, since every simulated user registers from one address. It runs the
load with the cluster's own counters read through its data directory, stops
the cluster and removes the directory, then goes on to the next count. The
result is throughput and p50/p99 against the shard count, as a table, a
JSON report and a plot.

Sign-ups during the load (``register`` in ``--mix``) beyond the sized
capacity are refused by the cluster (503 no-capacity) and counted as errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from canistry.loadtest._config import DEFAULT_MIX, ConfigError, LoadTestConfig, MixWeights
from canistry.loadtest._run import run_load
from canistry.loadtest._setup import SetupFailed, Unreachable

__all__ = ["SweepConfig", "parse_shard_counts", "render_sweep", "run_sweep", "sweep_cluster"]

MAX_COUNTS = 8
MAX_SHARDS = 64
#: Registrations per second (and burst) the sweep's gateway lets one address send.
OPEN_REGISTRATION = 1_000_000


def parse_shard_counts(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> ``(1, 2, 4)``; raises :class:`ConfigError` naming the problem."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--shards {text!r}: give shard counts like 1,2,4") from None
    return counts


def _default_gateway_workers() -> int:
    from gateway.config import default_workers

    return default_workers()


@dataclass(frozen=True)
class SweepConfig:
    """One sweep. Raises :class:`ConfigError` on construction when a value cannot work."""

    shards: tuple[int, ...]
    """The shard counts, each run in turn on its own fresh cluster."""
    users: int
    """Users registered on each cluster (the same number for every count)."""
    duration_s: float
    """Seconds of load on each cluster."""
    concurrency: int = 16
    max_requests: int = 1_000_000
    """A bound on each run's requests."""
    mix: MixWeights = DEFAULT_MIX
    report: Path | None = None
    """Where to write the sweep as JSON (every run's full report included)."""
    plot: Path | None = None
    """Where to draw throughput and p50/p99 against the shard count (PNG)."""
    quiet: bool = False
    seed: int | None = None
    request_timeout_s: float = 10.0
    gateway_workers: int = field(default_factory=_default_gateway_workers)
    """Worker processes of each cluster's gateway."""
    live: bool | None = None
    """A live progress bar; None: when stderr is a terminal."""
    boot_timeout_s: float = 120.0
    """A cluster that makes no progress starting for this long is given up."""

    def __post_init__(self) -> None:
        if not 1 <= len(self.shards) <= MAX_COUNTS:
            raise ConfigError(f"--shards: give 1 to {MAX_COUNTS} shard counts")
        if len(set(self.shards)) != len(self.shards):
            raise ConfigError(f"--shards: a count is given twice in {self.shards}")
        for n in self.shards:
            if not 1 <= n <= MAX_SHARDS:
                raise ConfigError(f"--shards: each count must be in 1..{MAX_SHARDS}, got {n}")
        if self.gateway_workers < 1:
            raise ConfigError("--gateway-workers must be at least 1")
        # The run's own checks (users, duration, paths, ...), once, before any cluster starts.
        self.run_config("http://127.0.0.1:1", None)

    def run_config(self, gateway: str, data_dir: Path | None) -> LoadTestConfig:
        """The settings of one run of the sweep, against ``gateway``."""
        return LoadTestConfig(
            gateway=gateway,
            users=self.users,
            duration_s=self.duration_s,
            concurrency=self.concurrency,
            max_requests=self.max_requests,
            report=self.report,
            plot=self.plot,
            quiet=self.quiet,
            seed=self.seed,
            request_timeout_s=self.request_timeout_s,
            mix=self.mix,
            data_dir=data_dir,
            live=self.live,
        )


def sweep_cluster(config: SweepConfig, shards: int, data_dir: Path) -> Any:
    """The :class:`~canistry.up.UpConfig` of the cluster for ``shards`` shards."""
    from canistry.up import UpConfig

    per_shard = max(1, math.ceil(config.users / shards))
    return UpConfig(
        data_dir=data_dir,
        port=0,
        gateway_workers=config.gateway_workers,
        register_rate=float(OPEN_REGISTRATION),
        register_burst=OPEN_REGISTRATION,
        soft_limit=per_shard,
        hard_limit=per_shard,
        min_shards=shards,
        max_shards=shards,
        warm_pool=0,
        content_replicas=1,
        scale_interval_s=1.0,
        stall_timeout_s=config.boot_timeout_s,
    )


def _one(config: SweepConfig, shards: int, err: TextIO | None) -> dict[str, Any]:
    """Start a cluster of ``shards`` shards, load it, stop it; the run's row of the sweep."""
    from canistry.children import ChildFailed
    from canistry.up import Cluster, UpError

    row: dict[str, Any] = {"shards": shards}
    with tempfile.TemporaryDirectory(prefix=f"canistry-sweep-{shards}-") as tmp:
        data_dir = Path(tmp) / "data"
        boot_log = io.StringIO()
        cluster = Cluster(sweep_cluster(config, shards, data_dir), out=boot_log)
        t0 = time.monotonic()
        try:
            try:
                cluster.boot()
            except (ChildFailed, UpError) as exc:
                row["error"] = f"the cluster did not start: {exc}"
                return row
            row["boot_s"] = round(time.monotonic() - t0, 2)
            if err is not None:
                print(f"canistry loadtest: {shards} shard(s) up in {row['boot_s']:.1f} s at "
                      f"{cluster.gateway_url}", file=err, flush=True)  # fmt: skip
            run = config.run_config(cluster.gateway_url, data_dir)
            try:
                report = asyncio.run(run_load(run, err=err, handle_signals=True))
            except (Unreachable, SetupFailed) as exc:
                row["error"] = str(exc)
                return row
        finally:
            cluster.stop()
            cluster.close()
    per_shard = [s["users"] for s in report["cluster"]["shards"].values()]
    row.update({
        "users_registered": report["users_registered"],
        "users_per_shard": per_shard,
        "load": report["load"],
        "errors": report["totals"]["errors"],
        "hub_calls": report["cluster"]["hub"]["allowance_calls_during"],
        "stopped_by": report["stopped_by"],
        "report": report,
    })  # fmt: skip
    return row


def sweep(config: SweepConfig, err: TextIO | None) -> dict[str, Any]:
    """Every shard count in turn; stops early (with the rows so far) on a signal."""
    runs = []
    for shards in config.shards:
        row = _one(config, shards, err)
        runs.append(row)
        if row.get("stopped_by") == "signal":
            break
    return {
        "config": {
            "shards": list(config.shards),
            "users": config.users,
            "duration_s": config.duration_s,
            "concurrency": config.concurrency,
            "mix": str(config.mix),
            "gateway_workers": config.gateway_workers,
        },
        "runs": runs,
    }


def render_sweep(result: dict[str, Any], out: TextIO) -> None:
    """The sweep as a table: one row per shard count."""
    cfg = result["config"]
    print(f"sweep: {cfg['users']} users, {cfg['duration_s']:g} s of load each, "
          f"{cfg['concurrency']} workers, mix {cfg['mix']}", file=out)  # fmt: skip
    head = (f"{'shards':>6}  {'users/shard':<16}{'requests':>10}{'req/s':>10}{'p50 ms':>9}"
            f"{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}{'hub calls':>11}")  # fmt: skip
    print(head, file=out)
    print("-" * len(head), file=out)
    for row in result["runs"]:
        if "error" in row:
            print(f"{row['shards']:>6}  {row['error']}", file=out)
            continue
        f, spread = row["load"], row["users_per_shard"]
        users = f"{min(spread)}-{max(spread)}" if spread else "-"
        calls = "-" if row["hub_calls"] is None else f"{row['hub_calls']:,}"
        print(f"{row['shards']:>6}  {users:<16}{f['count']:>10,}{f['per_second']:>10,.1f}"
              f"{f['p50_ms']:>9.1f}{f['p90_ms']:>9.1f}{f['p99_ms']:>9.1f}{f['max_ms']:>9.1f}"
              f"{row['errors']:>8,}{calls:>11}", file=out)  # fmt: skip


def run_sweep(config: SweepConfig, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The ``canistry loadtest --shards ...`` command; its exit status.

    0 when every count ran; 1 when a cluster did not start, no user could
    register, or the report or plot could not be written; 130 when aborted.
    """
    from runtime import logs

    # The clusters' own log lines (shards stopping, ...) are not the sweep's output.
    logs.configure("loadtest", stream=io.StringIO())
    try:
        result = sweep(config, None if config.quiet else err)
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("canistry loadtest: aborted", file=err)
        return 130
    render_sweep(result, out)
    status = 0
    for row in result["runs"]:
        if "error" in row or row.get("users_registered") == 0:
            status = 1
    if config.report is not None:
        try:
            config.report.write_text(json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            print(f"canistry loadtest: cannot write the report: {exc}", file=err)
            status = 1
    if config.plot is not None:
        from canistry.loadtest._plot import plot_sweep

        try:
            plot_sweep(result, config.plot)
            print(f"plot: {config.plot}", file=out)
        except (OSError, ValueError) as exc:
            print(f"canistry loadtest: cannot draw the plot: {exc}", file=err)
            status = 1
    with contextlib.suppress(Exception):
        out.flush()
    return status
