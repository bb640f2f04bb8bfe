"""`canistry up`'s own rules, with a fake clock: core-service restarts and progress deadlines."""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from canistry.children import Child, ChildFailed, core_backoff
from canistry.progress import Progress
from canistry.up import Cluster, UpConfig


@dataclass
class FakeChild(Child):
    """A child whose process is a flag: ``code`` None while it runs."""

    code: int | None = None
    starts: list[float] = field(default_factory=list)
    clock: list[float] = field(default_factory=lambda: [0.0])

    def start(self) -> None:
        self.code = None
        self.starts.append(self.clock[0])

    def exited(self) -> int | None:
        return self.code


def test_a_hub_killed_again_and_again_is_back_within_seconds_each_time(tmp_path: Path) -> None:
    clock = [0.0]
    hub = FakeChild("hub", [], tmp_path / "r", tmp_path / "l", clock=clock)
    cluster = Cluster(UpConfig(data_dir=tmp_path), out=io.StringIO())
    cluster.children["hub"] = hub

    def down_for(killed_at: float) -> float:
        """Kill it at ``killed_at``; how long until `up` starts it again (0.05 s ticks)."""
        cluster.supervise_once(killed_at)  # seen running up to then
        clock[0] = killed_at
        hub.code = -9
        before = len(hub.starts)
        while len(hub.starts) == before:
            cluster.supervise_once(clock[0])
            clock[0] = round(clock[0] + 0.05, 2)
            assert clock[0] < killed_at + 60, "never restarted"
        return hub.starts[-1] - killed_at

    cluster.supervise_once(0.0)  # seen running
    # Killed four times in a row, each time right after it came back.
    quick = [down_for(t) for t in (1.0, 5.0, 10.0, 15.0)]
    assert quick == [0.25, 0.5, 1.0, 2.0]
    assert all(d <= 2.0 for d in quick)
    # Crashing often, but each time after 20 s up: the delay does not climb to the cap.
    spaced = [down_for(20.0 * k) for k in range(2, 12)]
    assert max(spaced) <= 1.0, spaced
    assert hub.restarts == 14
    assert "restarting in" in cluster.out.getvalue()  # type: ignore[attr-defined]


def test_core_services_use_the_hubs_backoff() -> None:
    b = core_backoff()
    assert (b.initial_s, b.max_s) == (0.25, 10.0) and b.credit_s > 0


def test_progress_extends_the_deadline_while_something_changes() -> None:
    now = [0.0]
    p = Progress(10.0, clock=lambda: now[0])
    for step in range(1, 30):  # one more shard serving every 5 s: 145 s, never a stall
        now[0] = step * 5.0
        p.note(step)
        assert not p.stalled()
    now[0] += 9.9
    p.note(29)
    assert not p.stalled()
    now[0] += 0.1
    assert p.stalled() and p.waited_s() == 155.0


def _child(tmp_path: Path, script: str) -> Child:
    ready, log = tmp_path / "ready", tmp_path / "child.log"
    script = script.replace("READY", repr(str(ready))).replace("LOG", repr(str(log)))
    return Child("svc", [sys.executable, "-c", script], ready, log)


def test_a_child_that_keeps_making_progress_is_waited_for_past_the_stall_time(
    tmp_path: Path,
) -> None:
    child = _child(
        tmp_path,
        "import pathlib, sys, time\n"
        "for i in range(12):\n"
        "    print('starting shard', i, flush=True); time.sleep(0.1)\n"
        "pathlib.Path(READY).write_text('127.0.0.1:1')\n"
        "time.sleep(30)\n",
    )
    child.start()
    try:
        began = time.monotonic()
        assert child.wait_ready(stall_s=0.6) == "127.0.0.1:1"
        assert time.monotonic() - began > 0.6, "longer than the stall time, yet not given up"
    finally:
        child.kill()


def test_a_stalled_child_fails_saying_what_was_waited_for(tmp_path: Path) -> None:
    child = _child(tmp_path, "import time; print('hello', flush=True); time.sleep(30)")
    child.start()
    try:
        with pytest.raises(ChildFailed, match="no progress for 1s") as failed:
            child.wait_ready(stall_s=1.0)
        assert "write its address to" in str(failed.value) and str(child.log_file) in str(
            failed.value
        )
    finally:
        child.kill()
