"""`canistry backup` on a real cluster under load, and clusters started on the copies.

One backup runs while clients register and submit; a second runs once they
stop. The original cluster is then stopped and its data directory deleted,
as after losing the machine. A cluster started on the quiet copy has exactly
the users, balances and treasury the original ended with; one started on the
copy taken under load has every user and reward acknowledged before the
backup began, and its accounts balance (invariant 2).
"""

from __future__ import annotations

import asyncio
import io
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from canistry.backup import BackupError, backup_cluster
from canistry.up import Cluster
from runtime.errors import NoCapacity, Unavailable
from tests.integration.conftest import MakeCluster, test_config
from tests.integration.direct import SAMPLE, Direct, new_principal, poll, right_answers

pytestmark = pytest.mark.timeout(420)


async def _user_state(direct: Direct, principals: list[str]) -> dict[str, tuple[int, list[str]]]:
    out = {}
    for p in principals:
        user = (await direct.user(p)).user
        out[p] = (user.staked + user.pending, sorted(user.completed_units))
    return out


async def _register_and_earn(direct: Direct, rng: random.Random) -> str:
    principal = new_principal()
    for _ in range(300):
        try:
            await direct.register(principal)
            break
        except NoCapacity:  # the hub is spawning the next shard: back off, as a client does
            await asyncio.sleep(0.1)
    unit = rng.choice(SAMPLE)
    await direct.submit(principal, unit["id"], right_answers(unit), key=f"k-{principal}")
    return principal


def _start_on(data_dir: Path) -> Cluster:
    cluster = Cluster(test_config(data_dir, soft_limit=3, hard_limit=4), out=io.StringIO())
    cluster.boot()
    return cluster


async def test_backup_under_load_restores_users_balances_and_treasury(
    make_cluster: MakeCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(soft_limit=3, hard_limit=4)
    direct = Direct(cluster)
    rng = random.Random(7)
    acknowledged = [await _register_and_earn(direct, rng) for _ in range(6)]

    # Load: new users and rewards, bounded in count, until the backup is done.
    done = asyncio.Event()
    during: list[str] = []

    async def load() -> None:
        for _ in range(200):
            if done.is_set():
                return
            during.append(await _register_and_earn(direct, rng))

    loader = asyncio.create_task(load())
    await asyncio.sleep(0)  # let the load start before the snapshot of what is acknowledged
    before = await _user_state(direct, acknowledged + list(during))
    treasury_before = await direct.treasury()
    under_load = tmp_path / "under-load"
    made = await asyncio.to_thread(backup_cluster, cluster.config.data_dir, under_load)
    done.set()
    await loader
    assert {p.parts[0] for p, _ in made.environments} >= {"shards", "registry", "hub", "content"}
    assert (under_load / "cluster.json").is_file() and not (under_load / "logs").exists()

    # A quiet backup, through the command line as an operator runs it.
    quiet = tmp_path / "quiet"
    everyone = acknowledged + during
    final = await _user_state(direct, everyone)
    treasury_final = await direct.treasury()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "canistry", "backup",
         "--data-dir", str(cluster.config.data_dir), "--to", str(quiet)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "backed up" in result.stdout
    # No user acts now, but the hub may still be starting a shard for the last sign-ups,
    # and a new shard's allowance grant lands before or after the copy.
    treasury_after = await direct.treasury()

    cluster.stop()
    shutil.rmtree(cluster.config.data_dir)  # the machine is gone; only the copies remain

    restored = await asyncio.to_thread(_start_on, quiet)
    try:
        copy = Direct(restored)
        # The hub starts the restored shards after boot; wait until each answers.
        await poll(lambda: _user_state(copy, everyone), timeout_s=60, ignore=(Unavailable,))
        assert await _user_state(copy, everyone) == final
        t = await copy.treasury()
        assert t.cap == treasury_final.cap
        assert treasury_final.total_granted <= t.total_granted <= treasury_after.total_granted
        await copy.assert_accounts_balance()
    finally:
        restored.stop()
        restored.close()

    restored = await asyncio.to_thread(_start_on, under_load)
    try:
        copy = Direct(restored)
        await poll(lambda: _user_state(copy, list(before)), timeout_s=60, ignore=(Unavailable,))
        for principal, (staked, units) in before.items():
            got_staked, got_units = (await _user_state(copy, [principal]))[principal]
            assert got_staked >= staked and set(units) <= set(got_units), principal
        assert (await copy.treasury()).total_granted >= treasury_before.total_granted
        await copy.assert_accounts_balance()
    finally:
        restored.stop()
        restored.close()


def test_backup_refuses_no_cluster_and_a_taken_destination(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no cluster"):
        backup_cluster(tmp_path / "nothing", tmp_path / "dest")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cluster.json").write_text("{}")
    (tmp_path / "dest").mkdir()
    with pytest.raises(BackupError, match="exists"):
        backup_cluster(tmp_path / "data", tmp_path / "dest")
