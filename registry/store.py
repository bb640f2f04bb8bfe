"""The registry's LMDB map: principal -> shard id, and the shard directory.

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
from registry import assignment
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
            StoreConfig(path=data_dir, databases=("principals", "shards"), durable=durable)
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

    def shards(self) -> list[registry_pb2.ShardInfo]:
        """Every registered shard, oldest first."""
        store = self.store
        with store.read() as txn:
            return _all_shards(store, txn)

    # -- writes --------------------------------------------------------------

    async def assign(self, principal: str, *, soft_limit: int, hard_limit: int) -> AssignResult:
        """Assign ``principal`` a shard unless it has one. Raises ``NoCapacity``."""
        store = self.store

        def fn(txn: lmdb.Transaction) -> AssignResult:
            key = principal.encode()
            raw = txn.get(key, db=store.db("principals"))
            if raw is not None:
                current = bytes(raw)
                shard = get_msg(txn, store.db("shards"), current, registry_pb2.ShardInfo)
                if shard is None:  # an entry without its shard: the store is corrupt
                    raise Unavailable(f"shard {current.decode()!r} is missing")
                return AssignResult(shard=shard, newly_assigned=False)
            chosen = assignment.choose_shard(_all_shards(store, txn), hard_limit)
            admitted = assignment.admit(chosen, soft_limit=soft_limit, hard_limit=hard_limit)
            txn.put(key, chosen.shard_id.encode(), db=store.db("principals"))
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


def _all_shards(store: Store, txn: lmdb.Transaction) -> list[registry_pb2.ShardInfo]:
    out = []
    for _key, raw in txn.cursor(db=store.db("shards")):
        info = registry_pb2.ShardInfo()
        info.ParseFromString(bytes(raw))
        out.append(info)
    out.sort(key=lambda s: (s.registration_seq, s.shard_id))
    return out
