"""Governed rolling upgrades of the `process` shards, on a real cluster.

The template of an upgrade is a Python interpreter whose environment holds
the canistry to run. The test builds this checkout as a bumped version
(0.1.0 -> a wheel of 9.1.0) into a second virtual environment, and a broken
one whose canistry cannot serve. An upgrade to the broken template rolls
back and leaves the shard serving on its old version; an upgrade to the
bumped one, under load, brings every shard to the new version, and every
acknowledged write survives with invariant 2 holding.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from canistry import __version__ as OLD
from canistry.client import ApiError, AsyncClient, Identity
from protos import shard_pb2
from tests.integration.conftest import MakeCluster
from tests.integration.direct import SAMPLE, Direct, poll, right_answers
from tests.integration.hubview import hub_records

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
NEW = "9.1.0"
PACKAGES = ("runtime", "protos", "content_service", "user_shard", "registry", "hub", "gateway",
            "canistry")  # fmt: skip


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def bumped_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with this checkout installed as canistry NEW (dependencies from the system)."""
    where = tmp_path_factory.mktemp("bumped")
    src = where / "src"
    src.mkdir()
    for name in PACKAGES:
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    project = (src / "pyproject.toml").read_text()
    project = project.replace(f'version = "{OLD}"', f'version = "{NEW}"', 1)
    (src / "pyproject.toml").write_text(project)
    env = _clean_env()
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(where / "dist"),
                    str(src)], check=True, env=env)  # fmt: skip
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True, env=env)  # fmt: skip
    wheel = next((where / "dist").glob("canistry-*.whl"))
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)],
                   check=True, env=env)  # fmt: skip
    return python


@pytest.fixture(scope="module")
def broken_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv whose canistry has a version but cannot serve (no ``canistry.__main__``)."""
    venv = tmp_path_factory.mktemp("broken") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                   check=True, env=_clean_env())  # fmt: skip
    site = next((venv / "lib").glob("python3*")) / "site-packages"
    (site / "canistry").mkdir()
    (site / "canistry" / "__init__.py").write_text("")
    meta = site / "canistry-9.9.9.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: canistry\nVersion: 9.9.9\n")
    return venv / "bin" / "python"


async def _upgrade(staker: AsyncClient, python: Path, title: str) -> int:
    proposal = await staker.propose("upgrade_shards", title, template=str(python))
    assert proposal.action["template_version"].startswith("canistry==")
    assert (await staker.vote(proposal.id, True)).state == "adopted"  # the only staker
    return proposal.id


async def _finished(client: AsyncClient, pid: int) -> object:
    async def done() -> object:
        p = await client.proposal(pid)
        return p if p.state in ("executed", "failed") else None

    return await poll(done, timeout_s=120, what=f"proposal {pid} carried out")


async def test_upgrades_roll_back_on_failure_and_roll_through_under_load(
    make_cluster: MakeCluster,
    bumped_python: Path,
    broken_python: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The operator's template root holds both environments (each in its own temp dir).
    root = tmp_path_factory.getbasetemp()
    cluster = make_cluster(min_shards=2, max_shards=3, soft_limit=3, hard_limit=3,
                           voting_period_s=60.0, proposal_min_stake=10,
                           template_root=root)  # fmt: skip
    direct = Direct(cluster)
    url = cluster.gateway_url
    units = {u["id"]: u for u in SAMPLE}
    staker = AsyncClient(url, Identity.generate(), timeout_s=30)
    workers = [AsyncClient(url, Identity.generate(), timeout_s=30, retry_unavailable_s=60)
               for _ in range(4)]  # fmt: skip
    try:
        await staker.register("Staker", "staker@example.org")
        assert (await staker.submit("math-001", right_answers(units["math-001"]))).passed
        for i, w in enumerate(workers):
            await w.register(f"Worker{i}", f"w{i}@example.org")
        shards = {(await w.me()).shard for w in [staker, *workers]}
        assert len(shards) == 2, "users on both shards"

        async def staked() -> bool:
            return (await direct.treasury()).total_staked == 40

        await poll(staked, timeout_s=30, what="the hub to count the stake")

        # A template that does not resolve, or lies outside the root, is refused when proposed.
        for template in (f"{root}/no/such/python", sys.executable):
            with pytest.raises(ApiError) as bad:
                await staker.propose("upgrade_shards", "nowhere", template=template)
            assert bad.value.status == 400, template

        # 1. A template that cannot start: the first shard rolls back, the rollout stops.
        failed = await _finished(staker, await _upgrade(staker, broken_python, "broken"))
        assert failed.state == "failed", failed  # type: ignore[attr-defined]
        results = failed.results  # type: ignore[attr-defined]
        assert [(r.shard, r.ok) for r in results] == [("shard-0001", False)], results
        assert "rolled back" in results[0].detail
        statuses = await direct.shard_statuses()
        assert {s.version for s in statuses.values()} == {OLD}
        assert (await staker.submit("math-002", right_answers(units["math-002"]))).passed

        # 2. The bumped template, under load (quiz submissions and profile changes, until
        # the rollout is over): every shard ends on it, nothing acknowledged is lost.
        acked: dict[int, dict[str, int]] = {i: {} for i in range(len(workers))}
        names: dict[int, str] = {}
        writes = [0]
        stop = asyncio.Event()

        async def load(i: int, client: AsyncClient) -> None:
            todo = list(units)[:12]
            for n in range(2000):
                if stop.is_set():
                    return
                if todo and n % 3 == 0:
                    unit_id = todo.pop(0)
                    result = await client.submit(unit_id, right_answers(units[unit_id]))
                    acked[i][unit_id] = result.reward
                else:
                    name = f"Worker{i} v{n}"
                    await client.update_profile(name=name)
                    names[i] = name
                writes[0] += 1

        async with asyncio.TaskGroup() as tg:
            for i, w in enumerate(workers):
                tg.create_task(load(i, w))
            pid = await _upgrade(staker, bumped_python, "ship 9.1")
            at_adoption = writes[0]
            done = await _finished(staker, pid)
            during = writes[0] - at_adoption
            stop.set()
        print(f"\n  writes acknowledged: {writes[0]}, {during} of them during the rollout")
        print(f"  rollout: {[(r.shard, r.detail) for r in done.results]}")  # type: ignore[attr-defined]
        assert during > 0, "the load ran through the rollout"
        assert done.state == "executed", done  # type: ignore[attr-defined]
        assert {(r.shard, r.ok) for r in done.results} == {  # type: ignore[attr-defined]
            ("shard-0001", True),
            ("shard-0002", True),
        }
        statuses = await direct.shard_statuses()
        assert {s.version for s in statuses.values()} == {NEW}, statuses
        records = list((await hub_records(direct)).values())
        assert {r.template_version for r in records} == {f"canistry=={NEW}"}
        assert {r.python for r in records} == {str(bumped_python)}
        info = await staker.cluster()
        assert {s.template_version for s in info.shards} == {f"canistry=={NEW}"}
        for i, w in enumerate(workers):
            me = await w.me()
            assert set(acked[i]) <= set(me.completed_units), (i, acked[i], me.completed_units)
            assert me.balance.staked + me.balance.pending == sum(acked[i].values())
            assert me.profile.name == names[i]
        # A shard spawned from now on runs the adopted template.
        newcomer = AsyncClient(url, Identity.generate(), timeout_s=30, retry_unavailable_s=60)
        workers.append(newcomer)
        await newcomer.register("Newcomer", "new@example.org")  # fills the last room: a spawn

        async def third() -> shard_pb2.ShardStatus | None:
            return (await direct.shard_statuses()).get("shard-0003")

        spawned = await poll(third, timeout_s=60, what="shard-0003 spawned", ignore=(Exception,))
        assert spawned.version == NEW
        record = (await hub_records(direct))["shard-0003"]
        assert (record.python, record.template_version) == (str(bumped_python), f"canistry=={NEW}")
        await direct.assert_accounts_balance()
    finally:
        for c in [staker, *workers]:
            with contextlib.suppress(Exception):
                await c.aclose()
