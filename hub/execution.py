"""Carrying out adopted proposals: the only code that changes what the hub runs.

:class:`Executor` is the :data:`hub.proposals.Execute` of a running hub.
``disable_shard`` tells the registry (no new users) and then the shard (no
minting); ``enable_shard`` undoes both, shard first. Each call is idempotent,
so a hub that dies mid-way simply carries the proposal out again. Upgrades
are :mod:`hub.rollout`'s.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

from hub import docker_spawner, governance, swarm_spawner
from hub.config import DEFAULT_PROPOSAL_MIN_STAKE, DEFAULT_VOTING_PERIOD_S
from hub.proposals import Governance, GovernancePolicy, ResolveTemplate
from hub.registry_client import RegistryClient
from hub.store import HubStore
from protos import hub_pb2, shard_pb2, shard_pb2_grpc
from runtime import logs
from runtime.errors import CanistryError, InvalidArgument
from runtime.rpc import make_channel, rpc_errors
from runtime.tls import Role, TLSConfig

__all__ = [
    "Executor",
    "make_governance",
    "resolve_process_template",
    "set_shard_disabled",
    "template_resolver",
]

log = logs.get_logger(__name__)

#: How long a disable or enable keeps trying a shard or the registry that does not answer.
SWITCH_TIMEOUT_S = 30.0
_PYTHON = re.compile(r"^python(3(\.\d+)?)?$")
_VERSION_PROBE = "from importlib.metadata import version; print(version('canistry'))"

#: Runs an upgrade to the adopted template; same result shape as the executor.
Upgrade = Callable[[hub_pb2.Proposal], Awaitable[tuple[bool, list[hub_pb2.ShardResult], str]]]


def template_env() -> dict[str, str]:
    """The environment a template interpreter runs in: without this hub's PYTHONPATH,
    so it imports the canistry installed in its own environment."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


async def resolve_process_template(template: str, root: str) -> str:
    """The canistry version the interpreter ``template`` runs (``canistry==X``).

    A user's proposal names the path, so only a Python interpreter under
    ``root`` (the hub's ``template_root``, where only the operator installs
    environments) is ever run. Raises :class:`InvalidArgument` when it is not
    one, is not an executable file, or cannot import canistry.
    """
    if not root:
        raise InvalidArgument(
            "this hub accepts no process template: it was first started without --template-root"
        )
    path = Path(template)
    if not path.is_absolute() or not _PYTHON.match(path.name):
        raise InvalidArgument(f"template {template!r} is not an absolute path to a python")

    def probe() -> subprocess.CompletedProcess[str]:
        # Normalized, not resolved: a venv's python is a link to its base interpreter.
        if not Path(os.path.normpath(path)).is_relative_to(root):
            raise InvalidArgument(f"template {template!r} is not under the template root {root}")
        if not path.is_file() or not os.access(path, os.X_OK):
            raise InvalidArgument(f"template {template!r} is not an executable file")
        return subprocess.run(
            # Isolated (-I) and from "/": the cwd (a checkout, say) must not answer for
            # the interpreter's own canistry.
            [str(path), "-I", "-c", _VERSION_PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            env=template_env(),
            cwd="/",
            check=False,
        )

    try:
        done = await asyncio.to_thread(probe)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InvalidArgument(f"template {template!r} does not run: {exc}") from None
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        raise InvalidArgument(f"template {template!r} has no canistry installed")
    return f"canistry=={version}"


async def set_shard_disabled(
    address: str, shard_id: str, *, disabled: bool, tls: TLSConfig | None
) -> shard_pb2.ShardStatus:
    """Tell one shard to stop (or resume) minting. Raises Unavailable and the like."""
    async with make_channel(address, tls, server_role=Role.SHARD, shard_id=shard_id) as channel:
        stub = shard_pb2_grpc.UserShardStub(channel)
        async with rpc_errors(shard_id):
            status: shard_pb2.ShardStatus = await stub.SetDisabled(
                shard_pb2.SetDisabledRequest(shard_id=shard_id, disabled=disabled), timeout=5.0
            )
    return status


class Executor:
    """Carries out one adopted proposal; never raises for a peer that fails (it reports it)."""

    def __init__(
        self,
        store: HubStore,
        registry: RegistryClient,
        *,
        tls: TLSConfig | None,
        upgrade: Upgrade | None = None,
        switch_timeout_s: float = SWITCH_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.registry = registry
        self.tls = tls
        self.upgrade = upgrade
        self.switch_timeout_s = switch_timeout_s

    async def __call__(
        self, proposal: hub_pb2.Proposal
    ) -> tuple[bool, list[hub_pb2.ShardResult], str]:
        kind = proposal.action.kind
        if kind in (governance.DISABLE, governance.ENABLE):
            return await self._switch(proposal.action.shard_id, kind == governance.DISABLE)
        if kind == governance.UPGRADE and self.upgrade is not None:
            return await self.upgrade(proposal)
        return False, [], f"this hub cannot carry out {kind}"

    async def _switch(
        self, shard_id: str, disabled: bool
    ) -> tuple[bool, list[hub_pb2.ShardResult], str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.switch_timeout_s
        delay = 0.1
        while True:
            try:
                await self._switch_once(shard_id, disabled)
                what = "disabled" if disabled else "enabled"
                return True, [hub_pb2.ShardResult(shard_id=shard_id, ok=True, detail=what)], what
            except CanistryError as exc:
                if loop.time() + delay >= deadline:
                    detail = f"{shard_id}: {exc.message}"
                    return False, [hub_pb2.ShardResult(shard_id=shard_id, detail=detail)], detail
                log.info("shard_switch_retry", shard_id=shard_id, error=exc.message)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    async def _switch_once(self, shard_id: str, disabled: bool) -> None:
        record = self.store.shard(shard_id)
        if disabled:
            await self.registry.set_shard_state(shard_id, disabled=True)
        if record is not None and record.address:
            await set_shard_disabled(record.address, shard_id, disabled=disabled, tls=self.tls)
        if not disabled:
            await self.registry.set_shard_state(shard_id, disabled=False)


def make_governance(
    store: HubStore,
    policy: hub_pb2.HubConfig,
    registry: RegistryClient,
    *,
    tls: TLSConfig | None,
    upgrade: Upgrade | None = None,
    clock: Callable[[], int] | None = None,
) -> Governance:
    """The governance of a running hub over its store, registry and stored policy."""

    def known_shard(shard_id: str) -> bool:
        record = store.shard(shard_id)
        return record is not None and record.step == hub_pb2.SPAWN_STEP_REGISTERED

    return Governance(
        store,
        policy.cap,
        GovernancePolicy(
            voting_period_s=policy.voting_period_s or DEFAULT_VOTING_PERIOD_S,
            proposal_min_stake=policy.proposal_min_stake or DEFAULT_PROPOSAL_MIN_STAKE,
        ),
        known_shard=known_shard,
        resolve_template=template_resolver(policy),
        execute=Executor(store, registry, tls=tls, upgrade=upgrade),
        **({} if clock is None else {"clock": clock}),
    )


def template_resolver(policy: hub_pb2.HubConfig) -> ResolveTemplate:
    """How an ``upgrade_shards`` template is checked and pinned for the hub's spawner:
    a Python interpreter (``process``), an image on the hub's engine (``docker``), an
    image in a registry, by digest (``swarm``)."""
    if policy.spawner == "process":
        return functools.partial(resolve_process_template, root=policy.template_root)
    if policy.spawner == "docker":
        return docker_spawner.resolve_template
    if policy.spawner == "swarm":
        return swarm_spawner.resolve_template
    return _no_upgrades(policy)


def _no_upgrades(policy: hub_pb2.HubConfig) -> ResolveTemplate:
    async def refuse(template: str) -> str:
        raise InvalidArgument(f"upgrades of {policy.spawner!r} shards are not built yet")

    return refuse
