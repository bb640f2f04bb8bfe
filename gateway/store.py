"""The gateway's LMDB: nonces seen and idempotent replies, shared by all worker processes.

LMDB serialises writers across processes, so a nonce claimed by one worker
is refused by every other, and a reply stored by one is replayed by all,
across restarts. Each worker writes through its own
:class:`~runtime.store.GroupCommitter`.

Bounds: each principal keeps at most ``quota`` replies (a count per principal
in the ``quota`` database, decremented when a reply is released or swept;
:class:`~gateway.errors.IdempotencyQuotaExceeded` beyond). New nonces and
claims are refused with :class:`~runtime.errors.StoreFull` once the live pages
reach the map less a reserve: LMDB copies pages even to delete, so the
sweeper needs free room to make room. Sweeps run in small transactions for
the same reason.

Durability: commits are not fsynced, so they run on the event loop (see
:class:`~runtime.store.GroupCommitter`'s ``inline``). A nonce is written to
the file, so it survives a ``kill -9`` of any worker; only an OS crash could
lose the last few, and those requests' timestamps expire within the skew
window anyway. A stored reply is fsynced, in a worker thread, before it is
answered (invariant 4).
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from gateway import idempotency
from gateway.errors import IdempotencyQuotaExceeded, NonceReused
from runtime import logs
from runtime.errors import StoreFull, Unavailable
from runtime.store import StoreConfig, WrittenStore

__all__ = ["GatewayStore"]

log = logs.get_logger(__name__)

_U64 = struct.Struct(">Q")
_SWEEP_BATCH = 500
_DATABASES = ("nonces", "nonce_expiry", "replies", "reply_expiry", "quota")
#: Pages kept free for deletes: a tenth of the map, and never fewer than this.
_MIN_RESERVE_PAGES = 32


class GatewayStore(WrittenStore):
    """Open with ``async with GatewayStore(path) as store:`` (or ``start()``/``stop()``)."""

    def __init__(self, path: Path, *, map_size: int = 1 << 32, quota: int = 1000) -> None:
        # Commits are not fsynced and every write here is a few puts: they run on the
        # loop, not through a worker thread (two hand-offs per batch saved).
        super().__init__(
            StoreConfig(path=path, databases=_DATABASES, map_size=map_size, durable=False),
            inline_commits=True,
        )
        self.path = path
        self.quota = quota
        self._pages: int | None = None
        """Pages in the map."""

    def _check_room(self, txn: lmdb.Transaction) -> None:
        """Raise :class:`StoreFull` when live pages leave less than the reserve free."""
        s = self.store
        if self._pages is None:  # fixed for the store's life: looked up once
            self._pages = s.config.map_size // s.env.stat()["psize"]
        pages = self._pages
        live = 8  # meta pages, the main database, the freelist's own pages: a little slack
        for name in _DATABASES:
            st = txn.stat(s.db(name))
            live += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
        if live + max(pages // 10, _MIN_RESERVE_PAGES) > pages:
            raise StoreFull(f"store {self.path.name} is full; try again later")

    # -- nonces -----------------------------------------------------------------

    async def remember_nonce(
        self, public_key: bytes, nonce: bytes, expires_ms: int, now_ms: int
    ) -> None:
        """Record that ``public_key`` used ``nonce``; raise :class:`NonceReused` if it did before.

        ``expires_ms`` is when the request's timestamp leaves the skew window:
        after that the nonce cannot be replayed anyway, and is forgotten.
        """
        s = self.store
        nonces, index = s.db("nonces"), s.db("nonce_expiry")
        key = public_key + nonce

        def write(txn: lmdb.Transaction) -> None:
            self._check_room(txn)
            value = _U64.pack(expires_ms)
            if not txn.put(key, value, db=nonces, overwrite=False):
                if not _expired(bytes(txn.get(key, db=nonces) or b""), None, now_ms):
                    raise NonceReused("this nonce was already used with this key; sign anew")
                txn.put(key, value, db=nonces)
            txn.put(value + key, b"", db=index)

        await self.committer.submit(write)

    # -- idempotent replies -----------------------------------------------------

    async def claim(
        self, skey: bytes, fp: bytes, *, now_ms: int, ttl_ms: int, claim_ms: int
    ) -> idempotency.Record | None:
        """Claim ``skey`` for a request, or return the reply stored under it.

        Raises as :func:`gateway.idempotency.decide` does, and
        :class:`IdempotencyQuotaExceeded` when the principal already keeps
        ``quota`` replies, :class:`StoreFull` when the store has no room.
        """
        s = self.store
        replies, index, quota = s.db("replies"), s.db("reply_expiry"), s.db("quota")
        owner = _owner(skey)

        def write(txn: lmdb.Transaction) -> idempotency.Record | None:
            raw = txn.get(skey, db=replies)
            existing = idempotency.decode(bytes(raw)) if raw is not None else None
            stored = idempotency.decide(
                existing, fp, now_ms=now_ms, ttl_ms=ttl_ms, claim_ms=claim_ms
            )
            if stored is not None:
                return stored
            self._check_room(txn)
            if raw is None:  # a new key: it counts against the principal's quota
                count = _count(txn, owner, quota)
                if count >= self.quota:
                    raise IdempotencyQuotaExceeded(
                        f"at most {self.quota} idempotent replies are kept per user; "
                        "reuse keys, or retry once older ones expire (24 h)"
                    )
                txn.put(owner, _U64.pack(count + 1), db=quota)
            txn.put(skey, idempotency.encode(idempotency.Record(False, fp, now_ms)), db=replies)
            txn.put(_U64.pack(now_ms + ttl_ms) + skey, b"", db=index)
            return None

        result: idempotency.Record | None = await self.committer.submit(write)
        return result

    async def complete(
        self, skey: bytes, fp: bytes, *, status: int, body: bytes, now_ms: int, ttl_ms: int
    ) -> None:
        """Store the reply to replay, durably (fsync) before returning."""
        s = self.store
        replies, index = s.db("replies"), s.db("reply_expiry")
        record = idempotency.Record(True, fp, now_ms, status, body)

        def write(txn: lmdb.Transaction) -> None:
            txn.put(skey, idempotency.encode(record), db=replies)
            txn.put(_U64.pack(now_ms + ttl_ms) + skey, b"", db=index)

        await self.committer.submit(write)
        try:
            await asyncio.to_thread(s.env.sync, True)
        except lmdb.Error as exc:  # the cause is logged, never sent
            log.error("gateway_store_sync_failed", error=repr(exc))
            raise Unavailable(f"store {self.path.name} could not sync; try again later") from exc

    async def release(self, skey: bytes, fp: bytes) -> None:
        """Drop this request's claim (it failed), so that a retry may run."""
        replies, quota = self.store.db("replies"), self.store.db("quota")

        def write(txn: lmdb.Transaction) -> None:
            raw = txn.get(skey, db=replies)
            if raw is not None:
                rec = idempotency.decode(bytes(raw))
                if not rec.done and rec.fingerprint == fp:
                    txn.delete(skey, db=replies)
                    _uncount(txn, _owner(skey), quota)

        await self.committer.submit(write)

    # -- expiry -----------------------------------------------------------------

    async def sweep(self, now_ms: int, *, reply_ttl_ms: int) -> int:
        """Forget expired nonces and replies; returns how many index entries went.

        Each transaction deletes at most a few hundred entries, and fewer
        when even that finds no room, down to one at a time: a delete must
        copy pages, and a full store has few to spare. Raises
        :class:`StoreFull` only if a single delete cannot commit.
        """
        s = self.store
        quota = s.db("quota")
        pairs = (
            (s.db("nonce_expiry"), s.db("nonces"), None),
            (s.db("reply_expiry"), s.db("replies"), reply_ttl_ms),
        )

        def batch_of(limit: int) -> Callable[[lmdb.Transaction], int]:
            def write(txn: lmdb.Transaction) -> int:
                gone = 0
                for index, data, ttl_ms in pairs:
                    cur = txn.cursor(db=index)
                    while gone < limit and cur.first():
                        ikey = bytes(cur.key())
                        (expires,) = _U64.unpack_from(ikey)
                        if expires > now_ms:
                            break
                        key = ikey[_U64.size :]
                        raw = txn.get(key, db=data)
                        if raw is not None and _expired(bytes(raw), ttl_ms, now_ms):
                            txn.delete(key, db=data)
                            if ttl_ms is not None:
                                _uncount(txn, _owner(key), quota)
                        cur.delete()
                        gone += 1
                return gone

            return write

        total, limit = 0, _SWEEP_BATCH
        while True:
            try:
                gone: int = await self.committer.submit(batch_of(limit))
            except StoreFull:
                if limit == 1:
                    raise
                limit = max(1, limit // 8)
                continue
            total += gone
            if gone < limit:
                return total


def _owner(skey: bytes) -> bytes:
    """The principal part of a reply's key (see :func:`gateway.idempotency.store_key`)."""
    return skey.split(b"\x00", 1)[0]


def _count(txn: lmdb.Transaction, owner: bytes, quota: Any) -> int:
    raw = txn.get(owner, db=quota)
    return int(_U64.unpack(bytes(raw))[0]) if raw is not None else 0


def _uncount(txn: lmdb.Transaction, owner: bytes, quota: Any) -> None:
    count = _count(txn, owner, quota)
    if count <= 1:  # replies stored before quotas were counted may take it below zero
        txn.delete(owner, db=quota)
    else:
        txn.put(owner, _U64.pack(count - 1), db=quota)


def _expired(raw: bytes, ttl_ms: int | None, now_ms: int) -> bool:
    if ttl_ms is None:  # a nonce: its value is its expiry
        expires: int = _U64.unpack(raw)[0]
        return expires <= now_ms
    return idempotency.decode(raw).at_ms + ttl_ms <= now_ms
