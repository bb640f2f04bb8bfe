"""LMDB storage shared by every service, and group commit for writers.

A :class:`Store` is one LMDB environment with named databases and a schema
version in the ``meta`` database; migrations run at open. Values are protobuf
messages so records evolve across upgrades.

A :class:`GroupCommitter` is the single writer of a store. Callers submit
write functions; the committer runs every function waiting at that moment in
one durable transaction (each in a nested transaction, so one that raises
undoes only its own changes) and answers each caller only after the batch is
on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lmdb
from google.protobuf.message import Message

from runtime import logs
from runtime.errors import CanistryError, StoreFull, Unavailable
from runtime.lifecycle import Lifecycle
from runtime.metrics import COMMIT_BATCH

__all__ = [
    "GroupCommitter",
    "Migration",
    "Store",
    "StoreConfig",
    "WrittenStore",
    "get_msg",
    "put_msg",
]

log = logs.get_logger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=Message)

#: A migration from version ``n`` to ``n + 1``; it runs inside one write transaction.
Migration = Callable[["Store", lmdb.Transaction], None]

_SCHEMA_KEY = b"schema_version"


class SchemaTooNew(CanistryError):
    code = "schema-too-new"


@dataclass(frozen=True)
class StoreConfig:
    """Where a store lives and what it holds."""

    path: Path
    """Directory of the LMDB environment; created if missing."""
    databases: Sequence[str]
    """Named databases besides ``meta``."""
    schema_version: int = 1
    """The version this code writes; older stores are migrated up to it."""
    migrations: Mapping[int, Migration] = field(default_factory=dict)
    """``migrations[n]`` takes a store from version ``n`` to ``n + 1``."""
    map_size: int = 1 << 32
    """Largest the file may grow (sparse: costs nothing until used)."""
    durable: bool = True
    """fsync every commit. Only benchmarks and throwaway tests turn this off."""

    def __post_init__(self) -> None:
        if "meta" in self.databases:
            raise ValueError("'meta' is reserved")
        if self.schema_version < 1:
            raise ValueError("schema_version must be >= 1")


class Store:
    """One LMDB environment. ``close()`` is idempotent."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        config.path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(config.path),
            map_size=config.map_size,
            max_dbs=len(config.databases) + 1,
            sync=config.durable,
            metasync=config.durable,
        )
        self._closed = False
        self._dbs = {name: self.env.open_db(name.encode()) for name in ("meta", *config.databases)}
        self._migrate()

    def db(self, name: str) -> Any:
        return self._dbs[name]

    @contextlib.contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        with self.env.begin(write=False, buffers=False) as txn:
            yield txn

    @contextlib.contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """A write transaction, committed (durably) when the block exits cleanly."""
        with self.env.begin(write=True) as txn:
            yield txn

    @property
    def schema_version(self) -> int:
        with self.read() as txn:
            raw = txn.get(_SCHEMA_KEY, db=self._dbs["meta"])
        return int(raw) if raw is not None else 0

    def _migrate(self) -> None:
        target = self.config.schema_version
        with self.write() as txn:
            raw = txn.get(_SCHEMA_KEY, db=self._dbs["meta"])
            version = int(raw) if raw is not None else target
            if version > target:
                raise SchemaTooNew(
                    f"{self.config.path} has schema {version}, this code knows {target}"
                )
            while version < target:
                log.info("store_migrate", path=str(self.config.path), frm=version, to=version + 1)
                self.config.migrations[version](self, txn)
                version += 1
            txn.put(_SCHEMA_KEY, str(version).encode(), db=self._dbs["meta"])

    def usage(self) -> tuple[int, int]:
        """``(bytes in use, map size)``: how close the file is to :class:`StoreFull`."""
        info, stat = self.env.info(), self.env.stat()
        return (info["last_pgno"] + 1) * stat["psize"], info["map_size"]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.env.close()


def get_msg(txn: lmdb.Transaction, db: Any, key: bytes, cls: type[M]) -> M | None:
    raw = txn.get(key, db=db)
    if raw is None:
        return None
    msg = cls()
    msg.ParseFromString(bytes(raw))
    return msg


def put_msg(txn: lmdb.Transaction, db: Any, key: bytes, msg: Message) -> None:
    txn.put(key, msg.SerializeToString(), db=db)


@dataclass
class _Job:
    fn: Callable[[lmdb.Transaction], Any]
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] = (False, None)


class GroupCommitter:
    """The single writer of a :class:`Store`.

    ``submit(fn)`` runs ``fn(txn)`` in the next batch and returns what it
    returned, after the batch commit is durable. If ``fn`` raises, its own
    writes are undone and the exception reaches its caller; the rest of the
    batch still commits. With ``group=False`` every batch holds one job
    (per-request fsync; for comparison in benchmarks).

    Commits run in a worker thread, so that an fsync never stalls the event
    loop. ``inline=True`` runs them on the loop instead, saving two thread
    hand-offs per batch; only a store that is not durable may ask (its
    commits only copy pages into the file), and only one whose write
    transactions, in every process sharing the file, are brief.
    """

    def __init__(
        self, store: Store, *, group: bool = True, max_batch: int = 512, inline: bool = False
    ) -> None:
        if inline and store.config.durable:
            raise ValueError("a durable store commits in a worker thread, never inline")
        self.store = store
        self.group = group
        self.inline = inline
        self.max_batch = max_batch if group else 1
        self.batches = 0
        self.jobs = 0
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Refuse new jobs, finish the queued ones, then end the writer."""
        if self._closing:
            if self._task is not None:
                await self._task
            return
        self._closing = True
        if self._task is not None:
            await self._queue.put(None)
            await self._task

    def pending(self) -> int:
        """Jobs queued and not yet taken into a batch."""
        return self._queue.qsize()

    async def submit(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        if self._closing or self._task is None:
            raise Unavailable("store is not accepting writes")
        job = _Job(fn, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        result: T = await job.future
        return result

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                nxt = self._queue.get_nowait()
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            try:
                if self.inline:
                    self._commit(batch)
                else:
                    await asyncio.to_thread(self._commit, batch)
            except BaseException as exc:  # the commit itself failed: nobody's write is on disk
                failure = _write_failure(exc, self.store.config.path)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(failure)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                # Answer first, then log: and whatever logging does (a full disk holds the
                # log too), the writer goes on, so writes resume once room is made.
                with contextlib.suppress(Exception):
                    log.exception("group_commit_failed", jobs=len(batch))
                continue
            self.batches += 1
            self.jobs += len(batch)
            COMMIT_BATCH.labels(self.store.config.path.name).observe(len(batch))
            for job in batch:
                if job.future.done():  # caller gave up; its write is durable anyway
                    continue
                ok, value = job.outcome
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)

    def _commit(self, batch: list[_Job]) -> None:
        env = self.store.env
        with env.begin(write=True) as txn:
            for job in batch:
                child = env.begin(write=True, parent=txn)
                try:
                    value = job.fn(child)
                except (lmdb.MapFullError, lmdb.DiskError) as exc:
                    child.abort()
                    job.outcome = (False, _write_failure(exc, self.store.config.path))
                except BaseException as exc:
                    child.abort()
                    job.outcome = (False, exc)
                else:
                    child.commit()
                    job.outcome = (True, value)


def _write_failure(exc: BaseException, path: Path) -> CanistryError:
    """What a caller whose write failed is told: the cause is logged, never sent.

    A full map and a full disk (ENOSPC, which LMDB reports as ``DiskError``
    when the file cannot grow) are both :class:`StoreFull`: reads go on, and
    writes resume once room is made.
    """
    if isinstance(exc, lmdb.MapFullError | lmdb.DiskError) or _is_enospc(exc):
        return StoreFull(f"store {path.name} is full; try again later")
    return Unavailable(f"store {path.name} could not write; try again later")


def _is_enospc(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


class WrittenStore(Lifecycle):
    """A :class:`Store` and its one :class:`GroupCommitter`, opened and closed together.

    Service stores subclass this and add their reads and write functions.
    ``start()`` opens the store, runs :meth:`prepare` while nothing else can
    write, then starts the writer; ``stop()`` finishes queued writes, then
    closes (idempotent).
    """

    def __init__(
        self, config: StoreConfig, *, group_commit: bool = True, inline_commits: bool = False
    ) -> None:
        """``inline_commits``: see :class:`GroupCommitter`'s ``inline``."""
        self.config = config
        self.group_commit = group_commit
        self.inline_commits = inline_commits
        self._store: Store | None = None
        self._committer: GroupCommitter | None = None

    def prepare(self, store: Store) -> None:
        """First-start setup in the store, before the writer runs. Nothing by default."""

    async def start(self) -> None:
        store = Store(self.config)
        try:
            self.prepare(store)
        except BaseException:
            store.close()
            raise
        self._store = store
        self._committer = GroupCommitter(store, group=self.group_commit, inline=self.inline_commits)
        await self._committer.start()

    async def stop(self) -> None:
        if self._committer is not None:
            await self._committer.stop()
            self._committer = None
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise Unavailable(f"store {self.config.path} is closed")
        return self._store

    @property
    def committer(self) -> GroupCommitter:
        if self._committer is None:
            raise Unavailable(f"store {self.config.path} is closed")
        return self._committer
