"""The hub's LMDB: grants, shard records, treasury totals, and the init config.

Databases (values are protobuf):

    grants    <shard_id> NUL <seq, 8 bytes big-endian>  -> GrantRecord
    shards    <shard_id>                                -> ShardRecord
    treasury  "totals"                                  -> Treasury (figures only)
              "shard" NUL <shard_id>                    -> ShardGrant
    meta      "hub_config" -> HubConfig, "next_shard_number" -> decimal,
              "next_proposal" -> decimal, "adopted_template" -> AdoptedTemplate
    proposals <id, 8 bytes big-endian>                  -> Proposal
    votes     <id, 8 bytes big-endian> <principal>      -> Vote
              (both written by :mod:`hub.proposal_store`)
    join_tokens <shard_id>                              -> JoinToken (enrollment.proto;
              only the token's hash, written by :mod:`hub.enrollment`)

Every write goes through one :class:`~runtime.store.GroupCommitter`, so a
grant's check against the cap and its update of the totals happen in one
serialised transaction. :func:`stored_config` reads the init config of a hub
that is not running (``canistry up``, before it starts one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from hub import config as hub_config
from hub import treasury
from protos import hub_pb2
from runtime.store import StoreConfig, WrittenStore, get_msg, put_msg

__all__ = ["HubStore", "shard_id_for", "stored_config"]

DATABASES = ("grants", "shards", "treasury", "proposals", "votes", "join_tokens")
_TOTALS = b"totals"
_CONFIG = b"hub_config"
_NEXT_SHARD = b"next_shard_number"
_ADOPTED_TEMPLATE = b"adopted_template"


def _grant_key(shard_id: str, seq: int) -> bytes:
    return shard_id.encode() + b"\x00" + seq.to_bytes(8, "big")


def _account_key(shard_id: str) -> bytes:
    return b"shard\x00" + shard_id.encode()


def shard_id_for(number: int) -> str:
    return f"shard-{number:04d}"


class HubStore(WrittenStore):
    """The hub's LMDB: grants, shard records, treasury totals and the init config."""

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        super().__init__(StoreConfig(path=data_dir, databases=DATABASES, durable=durable))

    # -- init config ---------------------------------------------------------

    async def init_config(self, wanted: hub_pb2.HubConfig) -> tuple[hub_pb2.HubConfig, list[str]]:
        """Store ``wanted`` if no config is stored yet; return the stored one.

        The second value names the policy fields where ``wanted`` differs
        from what is stored (empty at first start).
        """
        store = self.store

        def fn(txn: lmdb.Transaction) -> tuple[hub_pb2.HubConfig, list[str]]:
            stored = get_msg(txn, store.db("meta"), _CONFIG, hub_pb2.HubConfig)
            if stored is None:
                put_msg(txn, store.db("meta"), _CONFIG, wanted)
                return wanted, []
            # Fields stored as 0 predate their field: what this start asks is fixed now.
            late = ("max_shards", "voting_period_s", "proposal_min_stake", "rollout_concurrency")
            missing = [f for f in late if not getattr(stored, f)]
            for name in missing:
                setattr(stored, name, getattr(wanted, name))
            if missing:
                put_msg(txn, store.db("meta"), _CONFIG, stored)
            return stored, hub_config.differences(stored, wanted)

        return await self.committer.submit(fn)

    def adopted_template(self) -> hub_pb2.AdoptedTemplate | None:
        """The shard template an adopted upgrade put in force; None: the init config's."""
        store = self.store
        with store.read() as txn:
            return get_msg(txn, store.db("meta"), _ADOPTED_TEMPLATE, hub_pb2.AdoptedTemplate)

    async def adopt_template(self, template: hub_pb2.AdoptedTemplate) -> None:
        """Put ``template`` in force for new shards (only an executed upgrade calls this)."""
        store = self.store

        def fn(txn: lmdb.Transaction) -> None:
            put_msg(txn, store.db("meta"), _ADOPTED_TEMPLATE, template)

        await self.committer.submit(fn)

    # -- treasury ------------------------------------------------------------

    async def request_allowance(
        self, ask: treasury.Ask, *, cap: int, max_grant: int, now_ms: int
    ) -> treasury.GrantOutcome:
        """Decide and record one allowance request (see :func:`treasury.grant`)."""
        store = self.store

        def fn(txn: lmdb.Transaction) -> treasury.GrantOutcome:
            record = get_msg(txn, store.db("shards"), ask.shard_id.encode(), hub_pb2.ShardRecord)
            known = record is not None and record.step != hub_pb2.SPAWN_STEP_ABANDONED
            totals = get_msg(txn, store.db("treasury"), _TOTALS, hub_pb2.Treasury)
            outcome = treasury.grant(
                ask,
                cap=cap,
                max_grant=max_grant,
                known_shard=known,
                totals=totals or hub_pb2.Treasury(),
                shard=get_msg(
                    txn, store.db("treasury"), _account_key(ask.shard_id), hub_pb2.ShardGrant
                ),
                stored=get_msg(
                    txn, store.db("grants"), _grant_key(ask.shard_id, ask.seq), hub_pb2.GrantRecord
                ),
                now_ms=now_ms,
            )
            put_msg(txn, store.db("treasury"), _TOTALS, outcome.totals)
            if outcome.new:
                put_msg(txn, store.db("grants"), _grant_key(ask.shard_id, ask.seq), outcome.grant)
                put_msg(txn, store.db("treasury"), _account_key(ask.shard_id), outcome.shard)
            return outcome

        return await self.committer.submit(fn)

    def grant(self, shard_id: str, seq: int) -> hub_pb2.GrantRecord | None:
        """The grant recorded for ``(shard_id, seq)``, if any."""
        store = self.store
        with store.read() as txn:
            return get_msg(txn, store.db("grants"), _grant_key(shard_id, seq), hub_pb2.GrantRecord)

    def treasury(self, cap: int) -> hub_pb2.Treasury:
        """The running figures and every shard's account."""
        store = self.store
        with store.read() as txn:
            totals = get_msg(txn, store.db("treasury"), _TOTALS, hub_pb2.Treasury)
            out = hub_pb2.Treasury()
            if totals is not None:
                out.CopyFrom(totals)
            out.cap = cap
            cursor = txn.cursor(db=store.db("treasury"))
            if cursor.set_range(b"shard\x00"):
                for key, raw in cursor:
                    if not bytes(key).startswith(b"shard\x00"):
                        break
                    account = out.shards.add()
                    account.ParseFromString(bytes(raw))
        return out

    # -- shard records -------------------------------------------------------

    def shards(self) -> list[hub_pb2.ShardRecord]:
        """Every shard this hub created (abandoned ones too), by id."""
        store = self.store
        with store.read() as txn:
            return _records(txn, store.db("shards"))

    def shard(self, shard_id: str) -> hub_pb2.ShardRecord | None:
        store = self.store
        with store.read() as txn:
            return get_msg(txn, store.db("shards"), shard_id.encode(), hub_pb2.ShardRecord)

    async def put_shard(self, record: hub_pb2.ShardRecord) -> None:
        store = self.store

        def fn(txn: lmdb.Transaction) -> None:
            put_msg(txn, store.db("shards"), record.shard_id.encode(), record)

        await self.committer.submit(fn)

    async def update_shard(
        self, shard_id: str, change: Callable[[hub_pb2.ShardRecord], None]
    ) -> hub_pb2.ShardRecord:
        """Apply ``change`` to the stored record of ``shard_id`` in one transaction.

        Two writers that each change their own fields (the supervisor a pid,
        a promotion the step) never undo each other. Raises ``KeyError`` if
        there is no such record.
        """
        store = self.store

        def fn(txn: lmdb.Transaction) -> hub_pb2.ShardRecord:
            key = shard_id.encode()
            record = get_msg(txn, store.db("shards"), key, hub_pb2.ShardRecord)
            if record is None:
                raise KeyError(shard_id)
            change(record)
            put_msg(txn, store.db("shards"), key, record)
            return record

        return await self.committer.submit(fn)

    async def rebase_shard_dirs(self, shards_dir: Path) -> list[str]:
        """Point every record at ``shards_dir/<shard-id>``; return the ids that moved.

        A record keeps its shard's data directory as an absolute path, so a
        cluster restored from a backup (or a data directory moved) would
        otherwise start its shards on the old directories.
        """
        store = self.store

        def fn(txn: lmdb.Transaction) -> list[str]:
            moved = []
            for record in _records(txn, store.db("shards")):
                where = str(shards_dir / record.shard_id)
                if record.data_dir != where:
                    record.data_dir = where
                    put_msg(txn, store.db("shards"), record.shard_id.encode(), record)
                    moved.append(record.shard_id)
            return moved

        return await self.committer.submit(fn)

    async def allocate_shard(
        self, build: Callable[[str], hub_pb2.ShardRecord]
    ) -> hub_pb2.ShardRecord:
        """Take the next shard id, and store ``build(shard_id)`` under it."""
        store = self.store

        def fn(txn: lmdb.Transaction) -> hub_pb2.ShardRecord:
            raw = txn.get(_NEXT_SHARD, db=store.db("meta"))
            number = int(raw) if raw is not None else 1
            record = build(shard_id_for(number))
            txn.put(_NEXT_SHARD, str(number + 1).encode(), db=store.db("meta"))
            put_msg(txn, store.db("shards"), record.shard_id.encode(), record)
            return record

        return await self.committer.submit(fn)


def _records(txn: lmdb.Transaction, db: Any) -> list[hub_pb2.ShardRecord]:
    out = []
    for _key, raw in txn.cursor(db=db):
        record = hub_pb2.ShardRecord()
        record.ParseFromString(bytes(raw))
        out.append(record)
    return out


def stored_config(data_dir: Path) -> hub_pb2.HubConfig | None:
    """The init config stored in the hub's LMDB at ``data_dir``; None before the first start.

    Opens the environment read-only and closes it again, so it is safe
    beside a running hub, but meant for the moment before one starts.
    """
    if not (data_dir / "data.mdb").is_file():
        return None
    env = lmdb.open(str(data_dir), readonly=True, max_dbs=len(DATABASES) + 1)
    try:
        with env.begin() as txn:
            try:
                meta = env.open_db(b"meta", txn=txn, create=False)
            except lmdb.NotFoundError:
                return None
            return get_msg(txn, meta, _CONFIG, hub_pb2.HubConfig)
    finally:
        env.close()
