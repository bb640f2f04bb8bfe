"""``canistry serve content --replicas N``: several content processes under one parent.

This is how a container runs content replicas. LMDB keys its reader table by
process id, and in separate containers every service is pid 1, so replicas
sharing one volume must share one pid namespace: one container. Its pid 1 is
this parent, which

- imports the pack (``--pack`` or ``--sample``) once, before any replica
  opens the store;
- starts N replicas (``serve content --replica K``) on the same port, which
  the kernel balances between them (SO_REUSEPORT), over the same data
  directory (one LMDB: many readers, one writer for imports);
- restarts a replica that dies, paced as ``canistry up`` paces a core
  service, while callers' new connections go to the others;
- on SIGTERM or SIGINT stops them all (each drains) and exits.

Replicas log to the parent's stdout and stderr, as ``content-K``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from canistry.children import Child, ChildFailed, restart_exited, serve_argv
from runtime import logs
from runtime.files import write_atomically

__all__ = ["MAX_REPLICAS", "default_content_replicas", "parse_replicas", "run_replicas"]

log = logs.get_logger(__name__)

MAX_REPLICAS = 64


def default_content_replicas() -> int:
    """One content process per four cores, at least one and at most four."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


def parse_replicas(text: str) -> int:
    """``--replicas``: a count in 1..64, or ``auto`` (:func:`default_content_replicas`)."""
    if text == "auto":
        return default_content_replicas()
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count or 'auto': {text!r}") from None
    if not 1 <= count <= MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"must be in 1..{MAX_REPLICAS} or 'auto', not {count}")
    return count


def replica_argv(args: argparse.Namespace, k: int, ready_file: Path) -> list[str]:
    """The ``serve content`` command of replica ``k``: the parent's flags, no import."""
    security = ["--insecure"] if args.insecure else ["--tls-dir", str(args.tls_dir)]
    return serve_argv(
        "content",
        "--data-dir", str(args.data_dir),
        "--host", args.host,
        "--port", str(args.port),
        "--log-level", args.log_level,
        *(["--no-fsync"] if args.no_fsync else []),
        *security,
        "--replica", str(k),
        "--ready-file", str(ready_file),
    )  # fmt: skip


def run_replicas(args: argparse.Namespace, count: int, *, stall_s: float = 60.0) -> int:
    """Import, start ``count`` replicas, supervise them until signalled; the exit code."""
    from content_service.service import import_pack_file, import_pack_text, load_sample_pack

    if args.port == 0:
        print("canistry serve content: --replicas needs a --port to share", file=sys.stderr)
        return 2
    if args.metrics_port:
        print(
            "canistry serve content: each replica picks its own metrics port; "
            "drop --metrics-port with --replicas",
            file=sys.stderr,
        )
        return 2
    if args.pack is not None:
        import_pack_file(args.data_dir, args.pack)
    elif args.sample:
        import_pack_text(args.data_dir, load_sample_pack())

    # A list, not a threading.Event: the handler runs on this thread, maybe inside
    # Event.wait, which holds the lock Event.set would take (canistry up hung on it).
    stop: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    children = []
    for k in range(1, count + 1):
        ready = args.data_dir / f"replica-{k}.ready"
        children.append(Child(f"content-{k}", replica_argv(args, k, ready), ready, None))
    try:
        for child in children:
            if stop:
                return 0
            child.start()
            address = child.wait_ready(stall_s)
        log.info("content_replicas_serving", replicas=count, address=address)
        if args.ready_file is not None:
            write_atomically(args.ready_file, address + "\n")

        def say(text: str) -> None:
            log.warning("content_replica_exited", detail=text)

        while not stop:
            time.sleep(0.2)  # the handler runs at once; the loop sees it within 0.2 s
            if not stop:
                restart_exited(children, say)
        log.info("stopping", signal=signal.Signals(stop[0]).name)
    except ChildFailed as exc:
        print(f"canistry serve content: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in children:
            child.stop()
    return 0
