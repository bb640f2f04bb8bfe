"""The gateway's LMDB: nonces seen and idempotent replies, shared by all worker processes.

LMDB serialises writers across processes, so a nonce claimed by one worker
is refused by every other, and a reply stored by one is replayed by all,
across restarts. Each worker writes through its own
:class:`~runtime.store.GroupCommitter`.

Durability: nonce commits are not fsynced (they are written to the file, so
they survive a ``kill -9`` of any worker; only an OS crash could lose the
last few, and those requests' timestamps expire within the skew window
anyway). A stored reply is fsynced before it is answered (invariant 4).
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import lmdb

from gateway import idempotency
from gateway.errors import NonceReused
from runtime.store import StoreConfig, WrittenStore

__all__ = ["GatewayStore"]

_U64 = struct.Struct(">Q")
_SWEEP_BATCH = 5_000


class GatewayStore(WrittenStore):
    """Open with ``async with GatewayStore(path) as store:`` (or ``start()``/``stop()``)."""

    def __init__(self, path: Path, *, map_size: int = 1 << 32) -> None:
        super().__init__(
            StoreConfig(
                path=path,
                databases=("nonces", "nonce_expiry", "replies", "reply_expiry"),
                map_size=map_size,
                durable=False,
            )
        )
        self.path = path

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

        Raises as :func:`gateway.idempotency.decide` does.
        """
        s = self.store
        replies, index = s.db("replies"), s.db("reply_expiry")

        def write(txn: lmdb.Transaction) -> idempotency.Record | None:
            raw = txn.get(skey, db=replies)
            existing = idempotency.decode(bytes(raw)) if raw is not None else None
            stored = idempotency.decide(
                existing, fp, now_ms=now_ms, ttl_ms=ttl_ms, claim_ms=claim_ms
            )
            if stored is not None:
                return stored
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
        await asyncio.to_thread(s.env.sync, True)

    async def release(self, skey: bytes, fp: bytes) -> None:
        """Drop this request's claim (it failed), so that a retry may run."""
        replies = self.store.db("replies")

        def write(txn: lmdb.Transaction) -> None:
            raw = txn.get(skey, db=replies)
            if raw is not None:
                rec = idempotency.decode(bytes(raw))
                if not rec.done and rec.fingerprint == fp:
                    txn.delete(skey, db=replies)

        await self.committer.submit(write)

    # -- expiry -----------------------------------------------------------------

    async def sweep(self, now_ms: int, *, reply_ttl_ms: int) -> int:
        """Forget expired nonces and replies, a batch at a time; returns how many went."""
        s = self.store
        pairs = (
            (s.db("nonce_expiry"), s.db("nonces"), None),
            (s.db("reply_expiry"), s.db("replies"), reply_ttl_ms),
        )

        def write(txn: lmdb.Transaction) -> int:
            gone = 0
            for index, data, ttl_ms in pairs:
                cur = txn.cursor(db=index)
                while gone < _SWEEP_BATCH and cur.first():
                    ikey = bytes(cur.key())
                    (expires,) = _U64.unpack_from(ikey)
                    if expires > now_ms:
                        break
                    key = ikey[_U64.size :]
                    raw = txn.get(key, db=data)
                    if raw is not None and _expired(bytes(raw), ttl_ms, now_ms):
                        txn.delete(key, db=data)
                    cur.delete()
                    gone += 1
            return gone

        total = 0
        while True:
            gone: int = await self.committer.submit(write)
            total += gone
            if gone < _SWEEP_BATCH:
                return total


def _expired(raw: bytes, ttl_ms: int | None, now_ms: int) -> bool:
    if ttl_ms is None:  # a nonce: its value is its expiry
        expires: int = _U64.unpack(raw)[0]
        return expires <= now_ms
    return idempotency.decode(raw).at_ms + ttl_ms <= now_ms
