"""``canistry loadtest``: a realistic load through the HTTP gateway, and what it measured.

Layers, each only using those above it:

- ``_config``: the run's settings and the loopback rule (pure);
- ``_stats``: counting requests, outcomes and latencies (pure);
- ``_answers``: which answers a simulated user sends (pure; keys from the sample pack);
- ``_setup``: before the load: probe the gateway, read its unit list;
- ``_driver``: one timed, counted request, backed off on 503, ended with the run;
- ``_mix``: what a simulated user does next;
- ``_report``: the summary as JSON and as a table (pure);
- ``_run``: the run from probe to summary, and the command's exit status.
"""

from canistry.loadtest._config import LOOPBACK_HELP, ConfigError, LoadTestConfig, is_loopback_host
from canistry.loadtest._run import run_load, run_loadtest
from canistry.loadtest._setup import SetupFailed, Unreachable

__all__ = [
    "LOOPBACK_HELP",
    "ConfigError",
    "LoadTestConfig",
    "SetupFailed",
    "Unreachable",
    "is_loopback_host",
    "run_load",
    "run_loadtest",
]
