"""``canistry loadtest``: a realistic load through the HTTP gateway, and what it measured.

Layers, each only using those above it:

- ``_config``: the run's settings and the loopback rule (pure);
- ``_stats``: counting requests, outcomes and latencies (pure);
- ``_answers``: which answers a simulated user sends (pure; keys from the sample pack);
- ``_setup``: before the load: probe the gateway, read its unit list;
- ``_driver``: one timed, counted request, backed off on 503, ended with the run;
- ``_mix``: what a simulated user does next;
- ``_cluster``: the cluster's own counters (per shard, the hub's calls), read, not loaded;
- ``_live``: progress as it goes: a live bar (rich) on a terminal, lines in a log;
- ``_report``: the summary as JSON and as a table (pure);
- ``_plot``: the report drawn as PNG (matplotlib);
- ``_run``: the run from probe to summary, and the command's exit status;
- ``_sweep``: the same load against throwaway clusters of several shard counts.

``locustfile.py`` runs the same mix under Locust, for load beyond one machine.
"""

from canistry.loadtest._config import (
    LOOPBACK_HELP,
    ConfigError,
    LoadTestConfig,
    MixWeights,
    is_loopback_host,
)
from canistry.loadtest._run import run_load, run_loadtest
from canistry.loadtest._setup import SetupFailed, Unreachable
from canistry.loadtest._sweep import SweepConfig, parse_shard_counts, run_sweep

__all__ = [
    "LOOPBACK_HELP",
    "ConfigError",
    "LoadTestConfig",
    "MixWeights",
    "SetupFailed",
    "SweepConfig",
    "Unreachable",
    "is_loopback_host",
    "parse_shard_counts",
    "run_load",
    "run_loadtest",
    "run_sweep",
]
