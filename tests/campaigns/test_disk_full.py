"""Disk-full campaign: a shard and the gateway on a small filesystem that fills up.

The cluster's ``shards/`` and ``gateway/`` directories are each a tmpfs of
8 MiB mounted before the cluster starts, so the hub creates its shard (LMDB,
certificate and log) on one and the gateway keeps its nonces and idempotent
replies on the other. Their LMDB maps (4 GiB) are far larger than the
filesystem, so the disk fills before the map does: writes then fail with
ENOSPC, not MDB_MAP_FULL. A filler file takes the last free byte.

Then: writes get a 503 problem document with ``Retry-After``, never a 500;
reads still work; once the filler is removed, writes resume (the same keys
too); and nothing acknowledged before or during the episode is lost.
Needs root (``mount -t tmpfs``); skips with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from canistry.client import ApiError
from canistry.up import Cluster
from tests.campaigns.support import LONG, UNITS, Sub, User, pick, seeded_rng
from tests.integration.conftest import test_config
from tests.integration.direct import Direct, right_answers

pytestmark = pytest.mark.slow

TMPFS_SIZE = "8m"


@contextlib.contextmanager
def tmpfs(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        pytest.skip(f"cannot mount a tmpfs at {path} (needs root): {detail}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


def fill(directory: Path) -> Path:
    """Write a filler file in ``directory`` until the filesystem has no byte left."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    fh.write(block[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


@pytest.fixture
def small_disk_cluster(tmp_path: Path) -> Iterator[Cluster]:
    data_dir = tmp_path / "data"
    with tmpfs(data_dir / "shards"), tmpfs(data_dir / "gateway"):
        config = test_config(data_dir, daily_attempt_limit=100_000, daily_token_limit=1_000_000)
        cluster = Cluster(config, out=io.StringIO())
        try:
            cluster.boot()
            yield cluster
        finally:
            cluster.stop()
            cluster.close()
            # Keep the shards' logs: the tmpfs and all on it go with the unmount.
            for log in (data_dir / "shards").glob("*/shard.log"):
                keep = data_dir / "logs" / f"{log.parent.name}.log"
                keep.parent.mkdir(parents=True, exist_ok=True)
                keep.write_bytes(log.read_bytes())


async def attempt(what: str, call: object, refusals: list[str]) -> object | None:
    """Await ``call``; a 503 with Retry-After is a refusal (None); anything else raises."""
    try:
        return await call  # type: ignore[misc]
    except ApiError as exc:
        assert exc.status == 503 and exc.retry_after is not None, f"{what}: {exc} {exc.problem}"
        refusals.append(f"{what}: {exc.code}")
        return None


@pytest.mark.timeout(pick(240, 900))
async def test_a_full_disk_refuses_writes_with_503_keeps_reads_and_loses_nothing(
    small_disk_cluster: Cluster,
) -> None:
    rng = seeded_rng("disk-full campaign")
    cluster = small_disk_cluster
    url = cluster.gateway_url
    shards_dir = cluster.layout.shards_dir
    direct = Direct(cluster)
    users = [User(url, rng, timeout_s=15) for _ in range(3)]
    refusals: list[str] = []
    newcomers: list[User] = []
    writes = pick(150, 1500)
    try:
        for user in users:
            await user.register()
            unit = UNITS[user.open_units()[0]]
            await user.submit(uuid.uuid4().hex, Sub(unit["id"], right_answers(unit)))

        for cycle in range(pick(1, 5)):  # the long form fills and frees the disk again and again
            # 1. The shard's disk is full: its writes are refused, reads and the gateway go on.
            refused = len(refusals)
            filler = fill(shards_dir)
            for n in range(writes):
                user = users[n % len(users)]
                if user.open_units():
                    unit = UNITS[rng.choice(user.open_units())]
                    key, sub = uuid.uuid4().hex, Sub(unit["id"], right_answers(unit))
                    await attempt("submit", user.submit(key, sub), refusals)
                newcomer = User(url, rng, timeout_s=15)
                newcomers.append(newcomer)
                await attempt("register", newcomer.register(), refusals)
                if len(refusals) - refused >= 10:
                    break
            print(f"disk-full campaign: cycle {cycle + 1}: shard disk full: {n + 1} rounds, "
                  f"refusals {refusals[refused:refused + 3]}...")  # fmt: skip
            assert len(refusals) > refused, f"{writes} rounds of writes all fit on a full disk?"
            for user in users:
                me = await user.api.me()  # reads work on a full disk
                assert me.principal == user.principal
            async with httpx.AsyncClient(base_url=url) as anonymous:
                assert (await anonymous.get("/v1/units/math-001")).status_code == 200

            # 2. Room again: writes resume, the refused ones too (same keys), nothing is lost.
            filler.unlink()
            for user in [*users, *newcomers]:
                await user.resolve(budget_s=30)
            for user in [*users, *newcomers]:
                await user.check()
            await direct.assert_accounts_balance()

        # 3. The gateway's disk is full: what it cannot store it refuses with 503, not 500.
        gw_refusals: list[str] = []
        gw_filler = fill(cluster.layout.service_dir("gateway"))
        for n in range(writes):
            newcomer = User(url, rng, timeout_s=15)
            newcomers.append(newcomer)
            await attempt("register via a full gateway", newcomer.register(), gw_refusals)
            # A signed read needs its nonce stored: with the gateway's disk full it is refused
            # with a 503 too (reported: DESIGN wants reads to work; the gateway's slice).
            user = users[n % len(users)]
            await attempt("signed read via a full gateway", user.api.me(), gw_refusals)
            if len(gw_refusals) >= 10:
                break
        assert gw_refusals, f"{writes} registrations all fit on the gateway's full disk?"
        async with httpx.AsyncClient(base_url=url) as anonymous:
            public = await anonymous.get("/v1/units/math-002")
        assert public.status_code == 200, "public reads need no write"
        print(f"disk-full campaign: gateway disk full: refusals {gw_refusals[:3]}...")
        gw_filler.unlink()
        for user in [*users, *newcomers]:
            await user.resolve(budget_s=30)
            await user.check()
        await direct.assert_accounts_balance()
        assert cluster.children["gateway"].exited() is None
        print(
            f"disk-full campaign{' (long)' if LONG else ''}: {len(refusals)} shard-disk and "
            f"{len(gw_refusals)} gateway-disk refusals, all 503; "
            f"{len(users) + len(newcomers)} users' books exact afterwards"
        )
    finally:
        for user in [*users, *newcomers]:
            await user.aclose()


# -- the store on a full disk, in process: fast, and what the campaign above found -----------


class FailingLog:
    """A logger whose sink is on the full disk too: every call raises ENOSPC."""

    def __getattr__(self, name: str) -> object:
        def fail(*args: object, **kw: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        return fail


async def test_enospc_fails_writes_as_store_full_and_the_writer_survives_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix, ENOSPC was a plain ``Unavailable`` and logging it on the same full disk
    raised inside the writer task, which died: every later write hung for good."""
    from runtime import store as store_module
    from runtime.errors import StoreFull
    from runtime.store import GroupCommitter, Store, StoreConfig

    monkeypatch.setattr(store_module, "log", FailingLog())
    with tmpfs(tmp_path / "disk") as disk:
        store = Store(StoreConfig(path=disk / "db", databases=("t",), durable=False))
        committer = GroupCommitter(store)
        await committer.start()
        try:

            def put(key: bytes, size: int) -> Callable[[Any], None]:
                return lambda txn: txn.put(key, b"x" * size, db=store.db("t"))

            await committer.submit(put(b"before", 100))
            filler = fill(disk)
            for i in range(50):  # until a write needs the file to grow
                try:
                    await asyncio.wait_for(committer.submit(put(b"k%d" % i, 100_000)), 10)
                except StoreFull:
                    break
            else:
                pytest.fail("50 writes of 100 kB fit on a full disk")
            filler.unlink()
            await asyncio.wait_for(committer.submit(put(b"after", 100_000)), 10)
            with store.read() as txn:
                assert txn.get(b"before", db=store.db("t")) == b"x" * 100
                assert txn.get(b"after", db=store.db("t")) == b"x" * 100_000
        finally:
            await committer.stop()
            store.close()


def test_a_log_line_that_cannot_be_written_is_dropped_not_raised() -> None:
    from runtime.logs import LossyStream

    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    stream = LossyStream(FullDisk())
    print("a line", file=stream, flush=True)  # type: ignore[call-overload]
    assert stream.dropped >= 2
