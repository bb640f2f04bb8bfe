"""A real hub process whose spawns hold for good after one step (tests only).

    python tests/integration/held_hub.py STEP serve hub --data-dir ... (the usual argv)

Runs ``canistry serve hub`` unchanged, except that the hub is built with an
``after_step`` hook (:data:`hub.spawn_steps.AfterStep`) that logs ``spawn_paused``
and then waits forever once a spawn has committed ``STEP`` (``ALLOCATED``,
``STARTED``, ``HEALTHY``...). A test SIGKILLs the hub right there and checks
that the next one finishes the spawn. Production code knows nothing of this:
the hook is injected the way a test injects any hub dependency.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from protos import hub_pb2
from runtime import logs

log = logs.get_logger("tests.held_hub")


def spawn_step(name: str) -> hub_pb2.SpawnStep.ValueType:
    """The spawn step named ``name`` (``STARTED`` or ``SPAWN_STEP_STARTED``)."""
    full = name.upper() if name.upper().startswith("SPAWN_STEP_") else f"SPAWN_STEP_{name.upper()}"
    step = hub_pb2.SpawnStep.Value(full)  # ValueError for a name that is no step
    if step == hub_pb2.SPAWN_STEP_UNSPECIFIED:
        raise ValueError("no spawn step UNSPECIFIED")
    return step


def hold_after(step: hub_pb2.SpawnStep.ValueType) -> Any:
    """An ``after_step`` hook that holds every spawn for good once it committed ``step``."""

    async def hook(record: hub_pb2.ShardRecord) -> None:
        if record.step != step:
            return
        log.warning(
            "spawn_paused",
            shard_id=record.shard_id,
            step=hub_pb2.SpawnStep.Name(record.step),
            detail="held by a test hook: this spawn waits until the hub stops",
        )
        await asyncio.Event().wait()

    return hook


def main(argv: list[str]) -> int:
    step = spawn_step(argv[0])
    import hub.service
    from canistry.cli import main as canistry_main

    build = hub.service.HubService

    class HeldHub(build):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, after_step=hold_after(step), **kwargs)

    hub.service.HubService = HeldHub  # type: ignore[misc]  # what `serve hub` builds
    return canistry_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
