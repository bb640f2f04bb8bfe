"""The registry's LMDB map: principal -> shard id, and the shard directory.

Databases: ``principals`` (principal -> shard id), ``shards`` (shard id ->
:class:`ShardInfo`) and ``pending`` (principal -> :class:`PendingAssignment`,
an assignment whose profile the shard has not confirmed yet; a store from
before it simply has none pending).

Every change goes through one :class:`~runtime.store.GroupCommitter`, and an
assignment reads the directory and writes both the principal and the shard's
count in the same nested transaction, so concurrent assigns are serialised
and a shard can never pass its hard limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lmdb

from protos import registry_pb2
from registry import assignment, reconcile
from runtime.errors import Unavailable
from runtime.store import Store, StoreConfig, WrittenStore, get_msg, put_msg

__all__ = ["AssignResult", "RegistryStore"]

_NEXT_SEQ = b"next_registration_seq"


@dataclass(frozen=True)
class AssignResult:
    shard: registry_pb2.ShardInfo
    newly_assigned: bool
    reached_soft: bool = False
    became_full: bool = False


class RegistryStore(WrittenStore):
    """The registry's LMDB: principals and the shard directory."""

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        super().__init__(
            StoreConfig(
                path=data_dir, databases=("principals", "shards", "pending"), durable=durable
            )
        )

    # -- reads ---------------------------------------------------------------

    def lookup(self, principal: str) -> registry_pb2.ShardInfo | None:
        """The shard ``principal`` lives on, or None if it has none."""
        store = self.store
        with store.read() as txn:
            shard_id = txn.get(principal.encode(), db=store.db("principals"))
            if shard_id is None:
                return None
            return get_msg(txn, store.db("shards"), bytes(shard_id), registry_pb2.ShardInfo)

    def is_pending(self, principal: str) -> bool:
        """Whether ``principal``'s assignment waits for its shard to confirm the profile."""
        with self.store.read() as txn:
            return txn.get(principal.encode(), db=self.store.db("pending")) is not None

    def pending_on(
        self, shard_id: str, limit: int
    ) -> list[tuple[str, registry_pb2.PendingAssignment]]:
        """Up to ``limit`` pending assignments to ``shard_id``."""
        out: list[tuple[str, registry_pb2.PendingAssignment]] = []
        with self.store.read() as txn:
            for raw_key, raw in txn.cursor(db=self.store.db("pending")):
                record = registry_pb2.PendingAssignment()
                record.ParseFromString(bytes(raw))
                if record.shard_id == shard_id:
                    out.append((bytes(raw_key).decode(), record))
                    if len(out) >= limit:
                        break
        return out

    def shards(self) -> list[registry_pb2.ShardInfo]:
        """Every registered shard, oldest first."""
        store = self.store
        with store.read() as txn:
            return _all_shards(store, txn)

    # -- writes --------------------------------------------------------------

    async def assign(
        self, principal: str, *, soft_limit: int, hard_limit: int, now_ms: int
    ) -> AssignResult:
        """Assign ``principal`` a shard unless it has one. Raises ``NoCapacity``.

        A new assignment is pending from ``now_ms``; assigning a principal
        whose assignment is still pending renews its lease to ``now_ms``.
        """
        store = self.store

        def fn(txn: lmdb.Transaction) -> AssignResult:
            key = principal.encode()
            raw = txn.get(key, db=store.db("principals"))
            if raw is not None:
                current = bytes(raw)
                shard = get_msg(txn, store.db("shards"), current, registry_pb2.ShardInfo)
                if shard is None:  # an entry without its shard: the store is corrupt
                    raise Unavailable(f"shard {current.decode()!r} is missing")
                if txn.get(key, db=store.db("pending")) is not None:
                    lease = registry_pb2.PendingAssignment(
                        shard_id=shard.shard_id, assigned_at_ms=now_ms
                    )
                    put_msg(txn, store.db("pending"), key, lease)
                return AssignResult(shard=shard, newly_assigned=False)
            chosen = assignment.choose_shard(_all_shards(store, txn), hard_limit)
            admitted = assignment.admit(chosen, soft_limit=soft_limit, hard_limit=hard_limit)
            txn.put(key, chosen.shard_id.encode(), db=store.db("principals"))
            lease = registry_pb2.PendingAssignment(shard_id=chosen.shard_id, assigned_at_ms=now_ms)
            put_msg(txn, store.db("pending"), key, lease)
            put_msg(txn, store.db("shards"), chosen.shard_id.encode(), admitted.shard)
            return AssignResult(
                shard=admitted.shard,
                newly_assigned=True,
                reached_soft=admitted.reached_soft,
                became_full=admitted.became_full,
            )

        return await self.committer.submit(fn)

    async def register(self, shard_id: str, address: str, *, now_ms: int) -> registry_pb2.ShardInfo:
        """Add a shard, or update the address of a known one."""
        store = self.store

        def fn(txn: lmdb.Transaction) -> registry_pb2.ShardInfo:
            key = shard_id.encode()
            existing = get_msg(txn, store.db("shards"), key, registry_pb2.ShardInfo)
            raw = txn.get(_NEXT_SEQ, db=store.db("meta"))
            next_seq = int(raw) if raw is not None else 1
            info = assignment.register(
                existing,
                shard_id=shard_id,
                address=address,
                now_ms=now_ms,
                registration_seq=next_seq,
            )
            if existing is None:
                txn.put(_NEXT_SEQ, str(next_seq + 1).encode(), db=store.db("meta"))
            put_msg(txn, store.db("shards"), key, info)
            return info

        return await self.committer.submit(fn)

    async def settle(
        self,
        shard_id: str,
        *,
        confirmed: list[str],
        expired: list[tuple[str, int]],
        hard_limit: int,
    ) -> tuple[registry_pb2.ShardInfo, list[str]] | None:
        """Confirm and release pending assignments of ``shard_id`` after a census.

        ``confirmed`` principals stop being pending. An ``expired`` principal
        is released (unassigned) only if it is still pending on this shard
        with the lease the census was judged on; a lease renewed since keeps
        it. Returns the shard after and the principals released; None if the
        shard is unknown.
        """
        store = self.store

        def fn(txn: lmdb.Transaction) -> tuple[registry_pb2.ShardInfo, list[str]] | None:
            shard = get_msg(txn, store.db("shards"), shard_id.encode(), registry_pb2.ShardInfo)
            if shard is None:
                return None
            pending_db = store.db("pending")
            stood = 0
            for principal in confirmed:
                lease = get_msg(txn, pending_db, principal.encode(), registry_pb2.PendingAssignment)
                if lease is not None and lease.shard_id == shard_id:
                    txn.delete(principal.encode(), db=pending_db)
                    stood += 1
            released = []
            for principal, judged_at_ms in expired:
                key = principal.encode()
                lease = get_msg(txn, pending_db, key, registry_pb2.PendingAssignment)
                if lease is None or lease.shard_id != shard_id:
                    continue
                if lease.assigned_at_ms != judged_at_ms:
                    continue
                txn.delete(key, db=pending_db)
                txn.delete(key, db=store.db("principals"))
                released.append(principal)
            if not stood and not released:
                return shard, []
            updated = reconcile.settle(
                shard, confirmed=stood, released=len(released), hard_limit=hard_limit
            )
            put_msg(txn, store.db("shards"), shard_id.encode(), updated)
            return updated, released

        return await self.committer.submit(fn)

    async def set_disabled(
        self, shard_id: str, *, disabled: bool, hard_limit: int
    ) -> registry_pb2.ShardInfo | None:
        """Disable ``shard_id`` (no new users) or enable it; None if unknown."""
        store = self.store

        def fn(txn: lmdb.Transaction) -> registry_pb2.ShardInfo | None:
            key = shard_id.encode()
            shard = get_msg(txn, store.db("shards"), key, registry_pb2.ShardInfo)
            if shard is None:
                return None
            updated = reconcile.set_disabled(shard, disabled=disabled, hard_limit=hard_limit)
            put_msg(txn, store.db("shards"), key, updated)
            return updated

        return await self.committer.submit(fn)

    async def observe_store(
        self, shard_id: str, *, used: int, size: int, full_fraction: float, hard_limit: int
    ) -> tuple[registry_pb2.ShardInfo, bool] | None:
        """Record how full ``shard_id``'s store is; True if that made it FULL. None if unknown."""
        store = self.store

        def fn(txn: lmdb.Transaction) -> tuple[registry_pb2.ShardInfo, bool] | None:
            key = shard_id.encode()
            shard = get_msg(txn, store.db("shards"), key, registry_pb2.ShardInfo)
            if shard is None:
                return None
            updated, became_full = reconcile.observe_store(
                shard, used=used, size=size, full_fraction=full_fraction, hard_limit=hard_limit
            )
            if updated != shard:
                put_msg(txn, store.db("shards"), key, updated)
            return updated, became_full

        return await self.committer.submit(fn)


def _all_shards(store: Store, txn: lmdb.Transaction) -> list[registry_pb2.ShardInfo]:
    out = []
    for _key, raw in txn.cursor(db=store.db("shards")):
        info = registry_pb2.ShardInfo()
        info.ParseFromString(bytes(raw))
        out.append(info)
    out.sort(key=lambda s: (s.registration_seq, s.shard_id))
    return out
