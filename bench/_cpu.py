"""CPU time of real processes, for figures per 1,000 requests.

Another process's CPU comes from ``/proc/<pid>/stat`` (utime + stime, in
clock ticks); this process's own from :func:`resource.getrusage`. Both are
read before and after a run, and the difference is what the run cost.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "Meter",
    "cluster_pids",
    "per_1000",
    "proc_cpu_s",
    "process_tree",
    "self_cpu_s",
]

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds that process ``pid`` has used; 0.0 if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants now (a gateway and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(k) for k in kids)
    return out


def self_cpu_s() -> float:
    """User + system CPU seconds this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cluster_pids(data_dir: Path) -> dict[str, list[int]]:
    """``{"content": [pid, ...], "shard": [pid, ...]}`` from the pid files of a
    ``canistry up`` data directory (every content replica and every shard that runs now)."""
    out: dict[str, list[int]] = {"content": [], "shard": []}
    # service.pid, or service-<k>.pid per replica when several content processes serve.
    for path in sorted((data_dir / "content").glob("service*.pid")):
        pid = _read_pid(path)
        if pid:
            out["content"].append(pid)
    shards = data_dir / "shards"
    if shards.is_dir():
        for d in sorted(shards.iterdir()):
            pid = _read_pid(d / "service.pid")
            if pid:
                out["shard"].append(pid)
    return out


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class Meter:
    """CPU seconds used by groups of processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, roles: Mapping[str, Iterable[int]]) -> None:
        self.roles = {role: list(pids) for role, pids in roles.items()}
        self._before: dict[str, float] = {}
        self.used_s: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {role: sum(proc_cpu_s(p) for p in pids) for role, pids in self.roles.items()}

    def start(self) -> None:
        self._before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        self.used_s = {role: after[role] - self._before.get(role, 0.0) for role in after}
        return self.used_s


def per_1000(cpu_s: Mapping[str, float], count: int) -> dict[str, float]:
    """CPU seconds per 1,000 of ``count`` requests, per role (NaN-free: 0 when count is 0)."""
    return {role: round(1000 * s / count, 4) if count else 0.0 for role, s in cpu_s.items()}
