"""``canistry backup``: a consistent online copy of a cluster's data directory.

Every LMDB environment under the data directory (each core service's, the
gateway's and every shard's) is copied hot with LMDB's own copy, which reads
through one read transaction: each copy is its environment at one instant,
and the cluster keeps serving meanwhile. Everything else a cluster needs to
start again is copied as plain files: ``cluster.json``, the CA, certificates
and shard identities. Logs, ready files, pid files, locks and metrics are left
out.

The environments are copied in an order that keeps the copy coherent across
services, since no instant is shared between them:

1. **shards first**: they hold what users were acknowledged;
2. **then the registry**: a profile in a shard copy was assigned before it
   was created, so its assignment is in the later registry copy (the other
   way round, an assignment whose profile is missing, is what the registry
   already releases as a ghost);
3. **then the gateway and content**;
4. **the hub last**: a shard's allowance request is recorded by the shard
   before it is sent and replayed by the hub from its grants, so a hub copy
   later than the shards' answers every request a shard copy may retry.

The copy is written to ``DEST.partial`` and renamed to ``DEST`` only when
complete, so a backup cut short is never mistaken for a whole one.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import lmdb

__all__ = ["Backup", "BackupError", "backup_cluster"]

#: Files and folders that describe a running process, not the cluster's state.
_SKIPPED_NAMES = frozenset({"logs", "run", "metrics", "up.lock", "lock.mdb", "service.pid"})
_SKIPPED_SUFFIXES = (".log", ".pid", ".addr", ".partial")


class BackupError(RuntimeError):
    """The backup cannot be made (no cluster, or the destination is taken)."""


@dataclass(frozen=True)
class Backup:
    """What :func:`backup_cluster` copied."""

    destination: Path
    environments: list[tuple[Path, int]]
    """Each LMDB environment copied (relative path) and its copy's size in bytes."""
    files: int
    """Plain files copied besides the environments."""


def backup_cluster(
    data_dir: Path, destination: Path, *, progress: Callable[[str], None] | None = None
) -> Backup:
    """Copy the cluster at ``data_dir`` to ``destination`` (which must not exist).

    Raises :class:`BackupError` when ``data_dir`` holds no cluster or
    ``destination`` exists.
    """
    say = progress or (lambda _text: None)
    if not (data_dir / "cluster.json").is_file():
        raise BackupError(f"no cluster at {data_dir} (no cluster.json)")
    if destination.exists():
        raise BackupError(f"{destination} exists; give a new path")
    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    environments = sorted(_environments(data_dir), key=lambda p: _order(p.relative_to(data_dir)))
    copied: list[tuple[Path, int]] = []
    for n, env_dir in enumerate(environments, 1):
        relative = env_dir.relative_to(data_dir)
        target = staging / relative
        target.mkdir(parents=True)
        _copy_environment(env_dir, target)
        size = (target / "data.mdb").stat().st_size
        copied.append((relative, size))
        say(f"[{n}/{len(environments)}] {relative}  {size / 1e6:,.1f} MB")
    files = 0
    for source in _plain_files(data_dir):
        target = staging / source.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        files += 1
    say(f"{files} other files (cluster.json, CA, certificates, identities)")
    staging.rename(destination)
    return Backup(destination, copied, files)


def _environments(data_dir: Path) -> Iterator[Path]:
    for path in data_dir.rglob("data.mdb"):
        if not _skipped(path.parent.relative_to(data_dir)):
            yield path.parent


def _order(relative: Path) -> tuple[int, str]:
    first = relative.parts[0]
    rank = {"shards": 0, "registry": 1, "gateway": 2, "content": 3, "hub": 4}.get(first, 3)
    return rank, str(relative)


def _copy_environment(source: Path, target: Path) -> None:
    env = lmdb.open(str(source), readonly=True, lock=True, max_dbs=0, create=False)
    try:
        env.copy(str(target), compact=True)
    finally:
        env.close()


def _plain_files(data_dir: Path) -> Iterator[Path]:
    """Every file to copy as it is: not an environment's, not a running process's."""
    for root, dirs, names in os.walk(data_dir):
        here = Path(root)
        dirs[:] = [d for d in dirs if d not in _SKIPPED_NAMES]
        for name in names:
            path = here / name
            if name != "data.mdb" and path.is_file() and not _skipped(path.relative_to(data_dir)):
                yield path


def _skipped(relative: Path) -> bool:
    return any(part in _SKIPPED_NAMES for part in relative.parts) or relative.name.endswith(
        _SKIPPED_SUFFIXES
    )


def run_backup(data_dir: Path, destination: Path, out: TextIO = sys.stdout) -> int:
    """The CLI: copy, printing each step; 0 on success, 2 on a refusal."""
    try:
        made = backup_cluster(
            data_dir, destination, progress=lambda text: print(text, file=out, flush=True)
        )
    except BackupError as exc:
        print(f"canistry backup: {exc}", file=sys.stderr)
        return 2
    total = sum(size for _, size in made.environments)
    print(
        f"backed up {len(made.environments)} stores ({total / 1e6:,.1f} MB) to {made.destination}; "
        f"run `canistry up --data-dir {made.destination}` to start a cluster on it",
        file=out,
    )
    return 0
