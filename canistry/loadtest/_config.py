"""The load run's settings, validated on construction, and the loopback rule. Pure.

Only loopback gateways are loaded unless the caller says otherwise: a load
test aimed at someone else's host by a typo is an attack, not a test. The
host is judged as written, never resolved (a name that resolves to loopback
today may not tomorrow), so only ``localhost`` and loopback addresses pass.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_MIX",
    "LOOPBACK_HELP",
    "ConfigError",
    "LoadTestConfig",
    "MixWeights",
    "check_gateway_url",
    "is_loopback_host",
]

LOOPBACK_HELP = "127.0.0.0/8, localhost, ::1"


class ConfigError(ValueError):
    """Settings that cannot make a load run; the message names the flag."""


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ::1 (also IPv4-mapped)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


@dataclass(frozen=True)
class MixWeights:
    """What share of a user's steps goes to each kind of request, in percent of the whole.

    ``read`` covers browsing the unit list, reading units, ``/v1/me`` and the
    balance (in the fixed proportions of ``_mix.READ_SPLIT``); ``submit`` is a
    quiz submission; ``register`` is a new user signing up during the load.
    """

    read: int = 70
    submit: int = 30
    register: int = 0

    def __post_init__(self) -> None:
        for name, value in (("read", self.read), ("submit", self.submit),
                            ("register", self.register)):  # fmt: skip
            if value < 0:
                raise ConfigError(f"--mix {name}={value}: a share cannot be negative")
        if self.read + self.submit + self.register == 0:
            raise ConfigError("--mix: at least one share must be above 0")

    @classmethod
    def parse(cls, text: str) -> MixWeights:
        """From ``read=70,submit=25,register=5``; kinds not named get 0.

        Shares are relative weights (they need not add up to 100). Raises
        :class:`ConfigError` naming what is wrong.
        """
        shares: dict[str, int] = {}
        for part in text.split(","):
            name, sep, value = part.strip().partition("=")
            name = name.strip()
            if not sep or name not in ("read", "submit", "register"):
                raise ConfigError(
                    f"--mix {text!r}: give kind=share pairs of read, submit and register, "
                    "e.g. read=70,submit=25,register=5"
                )
            if name in shares:
                raise ConfigError(f"--mix {text!r}: {name} is given twice")
            try:
                shares[name] = int(value)
            except ValueError:
                raise ConfigError(
                    f"--mix {text!r}: {name}={value!r} is not a whole number"
                ) from None
        return cls(**{"read": 0, "submit": 0, "register": 0, **shares})

    def __str__(self) -> str:
        return f"read={self.read},submit={self.submit},register={self.register}"


DEFAULT_MIX = MixWeights()


def check_gateway_url(url: str, *, allow_remote: bool) -> str:
    """``url`` normalised to ``scheme://host:port``; raises :class:`ConfigError` when unfit.

    A host that is not loopback is refused unless ``allow_remote``.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError as exc:
        raise ConfigError(f"--gateway {url!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"--gateway {url!r}: give the gateway's http(s) URL, e.g. http://127.0.0.1:8080"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"--gateway {url!r}: give the gateway's root URL, without a path or query"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"--gateway {url!r}: no credentials in the URL")
    if not allow_remote and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"--gateway host {parts.hostname} is not loopback ({LOOPBACK_HELP}); "
            "only loopback gateways are loaded unless --allow-remote is given"
        )
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class LoadTestConfig:
    """One load run. Raises :class:`ConfigError` on construction when a value cannot work."""

    gateway: str
    """The gateway's root URL (http or https, no path); normalised without a trailing slash."""
    users: int
    """Users to register, each with its own Ed25519 identity."""
    duration_s: float
    """How long the load runs after registration."""
    concurrency: int = 16
    """Workers; each acts as one idle user at a time, so at most ``users`` of them run."""
    max_requests: int = 1_000_000
    """A bound on all requests of the run, registration included, whatever the duration."""
    report: Path | None = None
    """Where to write the summary as JSON."""
    quiet: bool = False
    """No progress lines on stderr."""
    allow_remote: bool = False
    """Load a gateway that is not on loopback."""
    seed: int | None = None
    """Seeds the mix's random choices, for runs that repeat the same decisions."""
    request_timeout_s: float = 10.0
    """Per request; a request in flight at the end can outlast the duration by this much."""
    progress_interval_s: float = 2.0
    """Seconds between progress lines (when not a live bar) and samples of the shards' fill."""
    setup_timeout_s: float = 60.0
    """How long registration and the catalogue may wait out 503s (new shards starting)."""
    mix: MixWeights = DEFAULT_MIX
    """Shares of reads, submissions and sign-ups in the load."""
    plot: Path | None = None
    """Where to draw throughput, p50/p99 over time and the shards' fill, as PNG."""
    data_dir: Path | None = None
    """The data directory of the cluster under load (``canistry up``'s): its operator
    certificate lets the run read the hub's and shards' own counters (hub calls,
    submissions per shard). None: only what the gateway's ``/v1/cluster`` shows."""
    live: bool | None = None
    """A live progress bar (rich) instead of progress lines; None: when stderr is a terminal."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "gateway", check_gateway_url(self.gateway, allow_remote=self.allow_remote)
        )
        for name, value in (
            ("--users", self.users),
            ("--concurrency", self.concurrency),
            ("--max-requests", self.max_requests),
        ):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        for name, seconds in (
            ("--duration", self.duration_s),
            ("--request-timeout", self.request_timeout_s),
            ("progress interval", self.progress_interval_s),
            ("setup timeout", self.setup_timeout_s),
        ):
            # `not x > 0` also refuses NaN.
            if not seconds > 0 or seconds == float("inf"):
                raise ConfigError(f"{name} must be a positive number of seconds, got {seconds}")
        for flag, path in (("--report", self.report), ("--plot", self.plot)):
            if path is not None and not path.parent.is_dir():
                raise ConfigError(f"{flag}: no directory {path.parent} to write it in")
        if self.plot is not None and importlib.util.find_spec("matplotlib") is None:
            raise ConfigError("--plot needs matplotlib: pip install 'canistry[loadtest]'")
        if self.data_dir is not None and not (self.data_dir / "cluster.json").is_file():
            raise ConfigError(f"--data-dir {self.data_dir}: no cluster.json (not a cluster's data)")

    @property
    def workers(self) -> int:
        """Workers that can act at once: a user makes one request at a time."""
        return min(self.concurrency, self.users)
