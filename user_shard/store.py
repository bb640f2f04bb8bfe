"""The shard's LMDB: users, idempotent replies, the pending queue and the ledger.

Databases (values are protobuf messages):

- ``users``: principal -> :class:`UserRecord`
- ``idem``: sha256(principal, idempotency key) -> :class:`StoredReply`
- ``idem_exp``: 8-byte big-endian ``at_ms`` + idem key -> empty; the expiry
  index, oldest first, so pruning old replies reads only what it deletes
- ``pending``: 8-byte big-endian queue position -> principal, oldest first;
  a user is queued once, when their pending goes above zero
- ``votes``: 8-byte big-endian proposal id + principal -> :class:`StoredVote`
- ``vote_queue``: the ``votes`` keys not yet reported to the hub -> empty
- ``meta``: ``ledger`` -> :class:`Ledger`, ``disabled`` -> ``b"1"`` while an
  adopted proposal keeps the shard disabled (plus the schema version)

Reads run on the caller's thread in a read transaction. Every write is a
function run by the one :class:`~runtime.store.GroupCommitter`, which reads
the freshest records inside the write transaction, so checks made there hold
against concurrent writers.

No raw LMDB error leaves this module: a write that finds the map full
raises :class:`~runtime.errors.StoreFull` (from the committer), and a read,
the first-start setup or the opening itself that fails raises
:class:`~runtime.errors.StoreFull` or :class:`~runtime.errors.Unavailable`,
the cause logged and chained, never sent.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb

from protos import shard_pb2
from runtime import logs
from runtime.errors import (
    AlreadyVoted,
    NotEnoughStake,
    StoreFull,
    Unavailable,
    UnknownUser,
)
from runtime.store import Store, StoreConfig, WrittenStore, get_msg, put_msg
from user_shard import microbank
from user_shard.limits import DailyLimits, utc_day
from user_shard.submission import Verdict, record_submission, replay

__all__ = ["ShardStore", "SubmitOutcome"]

log = logs.get_logger(__name__)

SCHEMA_VERSION = 2
_LEDGER_KEY = b"ledger"
_DISABLED_KEY = b"disabled"


def vote_key(proposal_id: int, principal: bytes) -> bytes:
    return proposal_id.to_bytes(8, "big") + principal


def idem_key(principal: bytes, key: str) -> bytes:
    """Fixed-size LMDB key for (principal, idempotency key); both may be long."""
    raw = key.encode()
    return hashlib.sha256(len(principal).to_bytes(2, "big") + principal + raw).digest()


def expiry_key(at_ms: int, ikey: bytes) -> bytes:
    """The ``idem_exp`` key of a reply stored at ``at_ms``: sorts oldest first."""
    return at_ms.to_bytes(8, "big") + ikey


def _index_replies(store: Store, txn: lmdb.Transaction) -> None:
    """Schema 1 -> 2: build the expiry index of the replies stored so far."""
    index = store.db("idem_exp")
    for raw_key, raw in txn.cursor(db=store.db("idem")):
        stored = shard_pb2.StoredReply()
        stored.ParseFromString(bytes(raw))
        txn.put(expiry_key(stored.at_ms, bytes(raw_key)), b"", db=index)


@contextlib.contextmanager
def lmdb_errors(path: Path) -> Iterator[None]:
    """Turn an LMDB error into StoreFull or Unavailable; the cause is logged, not sent."""
    try:
        yield
    except lmdb.MapFullError as exc:
        log.warning("store_full", path=str(path), error=str(exc))
        raise StoreFull(f"store {path.name} is full; try again later") from exc
    except lmdb.Error as exc:
        log.exception("store_failed", path=str(path))
        raise Unavailable(f"store {path.name} failed; try again later") from exc


@dataclass(frozen=True)
class SubmitOutcome:
    reply: shard_pb2.SubmitQuizReply
    earned: int
    """Tokens earned by this call (0 for a replay)."""
    ledger: shard_pb2.Ledger
    """The ledger right after this write."""


class ShardStore(WrittenStore):
    """The shard's state. ``start()`` opens it and starts the writer; ``stop()`` closes both."""

    def __init__(
        self,
        data_dir: Path,
        *,
        durable: bool = True,
        group_commit: bool = True,
        map_size: int = 1 << 32,
    ) -> None:
        super().__init__(
            StoreConfig(
                path=data_dir,
                databases=("users", "idem", "pending", "idem_exp", "votes", "vote_queue"),
                schema_version=SCHEMA_VERSION,
                migrations={1: _index_replies},
                map_size=map_size,
                durable=durable,
            ),
            group_commit=group_commit,
        )

    async def start(self) -> None:
        """Open (migrating if needed) and start the writer; StoreFull/Unavailable on failure."""
        with lmdb_errors(self.config.path):
            await super().start()

    def prepare(self, store: Store) -> None:
        with store.write() as txn:
            if get_msg(txn, store.db("meta"), _LEDGER_KEY, shard_pb2.Ledger) is None:
                put_msg(txn, store.db("meta"), _LEDGER_KEY, microbank.new_ledger())

    @contextlib.contextmanager
    def _read(self) -> Iterator[lmdb.Transaction]:
        with lmdb_errors(self.config.path), self.store.read() as txn:
            yield txn

    # -- reads ---------------------------------------------------------------

    def user(self, principal: bytes) -> shard_pb2.UserRecord | None:
        with self._read() as txn:
            return get_msg(txn, self.store.db("users"), principal, shard_pb2.UserRecord)

    def stored_reply(self, principal: bytes, key: str) -> shard_pb2.StoredReply | None:
        with self._read() as txn:
            return get_msg(
                txn, self.store.db("idem"), idem_key(principal, key), shard_pb2.StoredReply
            )

    def ledger(self) -> shard_pb2.Ledger:
        with self._read() as txn:
            return self._ledger(txn)

    def pending_queue(self) -> list[bytes]:
        """Principals waiting for allowance, oldest first."""
        with self._read() as txn:
            return [bytes(v) for _, v in txn.cursor(db=self.store.db("pending"))]

    def existing(self, principals: Iterable[bytes]) -> list[bytes]:
        """Those of ``principals`` that have a profile here, in the order given."""
        with self._read() as txn:
            users = self.store.db("users")
            return [p for p in principals if txn.get(p, db=users) is not None]

    def usage(self) -> tuple[int, int]:
        """``(bytes in use, map size)`` of the LMDB map."""
        with lmdb_errors(self.config.path):
            return self.store.usage()

    def stored_replies(self) -> int:
        """How many idempotent replies are kept (tests and operators)."""
        with self._read() as txn:
            return int(txn.stat(self.store.db("idem"))["entries"])

    def disabled(self) -> bool:
        """Whether an adopted proposal disabled this shard (it then mints nothing)."""
        with self._read() as txn:
            return txn.get(_DISABLED_KEY, db=self.store.db("meta")) == b"1"

    def vote(self, proposal_id: int, principal: bytes) -> shard_pb2.StoredVote | None:
        with self._read() as txn:
            return get_msg(
                txn, self.store.db("votes"), vote_key(proposal_id, principal), shard_pb2.StoredVote
            )

    def unreported_votes(self, limit: int) -> list[tuple[int, bytes, shard_pb2.StoredVote]]:
        """Up to ``limit`` recorded votes the hub has not acknowledged yet."""
        out = []
        with self._read() as txn:
            votes = self.store.db("votes")
            for raw_key in txn.cursor(db=self.store.db("vote_queue")).iternext(values=False):
                key = bytes(raw_key)
                vote = get_msg(txn, votes, key, shard_pb2.StoredVote)
                if vote is not None:
                    out.append((int.from_bytes(key[:8], "big"), key[8:], vote))
                if len(out) >= limit:
                    break
        return out

    # -- writes --------------------------------------------------------------

    async def set_disabled(self, disabled: bool) -> None:
        def write(txn: lmdb.Transaction) -> None:
            txn.put(_DISABLED_KEY, b"1" if disabled else b"0", db=self.store.db("meta"))

        await self.committer.submit(write)

    async def record_vote(
        self, principal: bytes, proposal_id: int, *, yes: bool, now_ms: int
    ) -> shard_pb2.StoredVote:
        """Record a user's vote once, with their staked balance now as its power.

        Raises :class:`UnknownUser`, :class:`NotEnoughStake` (nothing staked) or
        :class:`AlreadyVoted`.
        """

        def write(txn: lmdb.Transaction) -> shard_pb2.StoredVote:
            user = self._user_or_raise(txn, principal)
            key = vote_key(proposal_id, principal)
            before = get_msg(txn, self.store.db("votes"), key, shard_pb2.StoredVote)
            # A vote the hub called unknown (no such proposal yet) did not count.
            if before is not None and before.status != "unknown":
                raise AlreadyVoted(f"{principal.decode()} already voted on proposal {proposal_id}")
            if user.staked == 0:
                raise NotEnoughStake("voting needs a staked balance; earn tokens first")
            vote = shard_pb2.StoredVote(yes=yes, voting_power=user.staked, at_ms=now_ms)
            put_msg(txn, self.store.db("votes"), key, vote)
            txn.put(key, b"", db=self.store.db("vote_queue"))
            return vote

        return await self.committer.submit(write)

    async def mark_reported(self, done: list[tuple[int, bytes, str]]) -> None:
        """Record the hub's answer to each (proposal, principal) vote reported."""

        def write(txn: lmdb.Transaction) -> None:
            db = self.store.db("votes")
            for proposal_id, principal, status in done:
                key = vote_key(proposal_id, principal)
                vote = get_msg(txn, db, key, shard_pb2.StoredVote)
                if vote is not None:
                    vote.reported = True
                    vote.status = status
                    put_msg(txn, db, key, vote)
                txn.delete(key, db=self.store.db("vote_queue"))

        await self.committer.submit(write)

    async def create_user(
        self, principal: bytes, profile: shard_pb2.Profile, now_ms: int
    ) -> tuple[shard_pb2.UserRecord, bool]:
        """Create the user, or return the existing one unchanged. True if created."""

        def write(txn: lmdb.Transaction) -> tuple[shard_pb2.UserRecord, bool]:
            existing = get_msg(txn, self.store.db("users"), principal, shard_pb2.UserRecord)
            if existing is not None:
                return existing, False
            user = shard_pb2.UserRecord(
                principal=principal.decode(),
                profile=profile,
                today=shard_pb2.DailyStats(day=utc_day(now_ms)),
                created_at_ms=now_ms,
            )
            put_msg(txn, self.store.db("users"), principal, user)
            ledger = self._ledger(txn)
            ledger.users += 1
            self._put_ledger(txn, ledger)
            return user, True

        return await self.committer.submit(write)

    async def update_profile(
        self, principal: bytes, profile: shard_pb2.Profile
    ) -> shard_pb2.UserRecord:
        """Replace the user's profile. Raises UnknownUser."""

        def write(txn: lmdb.Transaction) -> shard_pb2.UserRecord:
            user = self._user_or_raise(txn, principal)
            user.profile.CopyFrom(profile)
            put_msg(txn, self.store.db("users"), principal, user)
            return user

        return await self.committer.submit(write)

    async def record_submission(
        self,
        principal: bytes,
        unit_id: str,
        verdict: Verdict,
        limits: DailyLimits,
        now_ms: int,
        idempotency_key: str,
        fingerprint: bytes,
    ) -> SubmitOutcome:
        """Record one verified submission in one transaction (see ``submission``).

        A key already answered (by a racing twin) returns that reply and
        changes nothing. Raises UnknownUser, DailyLimitExceeded or
        IdempotencyKeyReused, with nothing written.
        """

        def write(txn: lmdb.Transaction) -> SubmitOutcome:
            idem_db = self.store.db("idem")
            ikey = idem_key(principal, idempotency_key) if idempotency_key else None
            if ikey is not None:
                stored = get_msg(txn, idem_db, ikey, shard_pb2.StoredReply)
                if stored is not None:
                    return SubmitOutcome(replay(stored, fingerprint), 0, self._ledger(txn))
            user = self._user_or_raise(txn, principal)
            ledger = self._ledger(txn)
            recorded = record_submission(user, ledger, unit_id, verdict, limits, now_ms)
            put_msg(txn, self.store.db("users"), principal, user)
            if recorded.newly_waiting:
                self._enqueue(txn, principal)
            if ikey is not None:
                stored = shard_pb2.StoredReply(
                    fingerprint=fingerprint, reply=recorded.reply, at_ms=now_ms
                )
                put_msg(txn, idem_db, ikey, stored)
                txn.put(expiry_key(now_ms, ikey), b"", db=self.store.db("idem_exp"))
            self._put_ledger(txn, ledger)
            return SubmitOutcome(recorded.reply, recorded.earned, ledger)

        return await self.committer.submit(write)

    async def begin_allowance_request(
        self, policy: microbank.RefillPolicy, mint_rate: float
    ) -> microbank.AllowanceRequest | None:
        """The request in flight, else a new one recorded durably if a refill is due, else None."""

        def write(txn: lmdb.Transaction) -> microbank.AllowanceRequest | None:
            ledger = self._ledger(txn)
            current = microbank.inflight(ledger)
            if current is not None:
                return current
            if not policy.needs_refill(ledger):
                return None
            request = microbank.begin_request(ledger, policy.amount(ledger, mint_rate))
            self._put_ledger(txn, ledger)
            return request

        return await self.committer.submit(write)

    async def apply_grant(self, seq: int, granted: int, hub_calls: int) -> shard_pb2.Ledger:
        """Apply the grant for ``seq`` once, settle waiting users, count ``hub_calls``."""

        def write(txn: lmdb.Transaction) -> shard_pb2.Ledger:
            ledger = self._ledger(txn)
            ledger.hub_calls += hub_calls
            if microbank.apply_grant(ledger, seq, granted):
                self._settle(txn, ledger)
            self._put_ledger(txn, ledger)
            return ledger

        return await self.committer.submit(write)

    async def prune_replies(self, before_ms: int, limit: int) -> int:
        """Delete up to ``limit`` idempotent replies stored before ``before_ms``, oldest first.

        One small transaction that reads only the expiry index entries it
        deletes. Returns how many were deleted; fewer than ``limit`` means
        none older is left.
        """

        def write(txn: lmdb.Transaction) -> int:
            idem_db, index = self.store.db("idem"), self.store.db("idem_exp")
            doomed: list[bytes] = []
            cursor = txn.cursor(db=index)
            if cursor.first():
                for raw_key in cursor.iternext(keys=True, values=False):
                    key = bytes(raw_key)
                    if len(doomed) >= limit or int.from_bytes(key[:8], "big") >= before_ms:
                        break
                    doomed.append(key)
            for key in doomed:
                txn.delete(key[8:], db=idem_db)
                txn.delete(key, db=index)
            return len(doomed)

        return await self.committer.submit(write)

    # -- helpers run inside write transactions -------------------------------

    def _ledger(self, txn: lmdb.Transaction) -> shard_pb2.Ledger:
        ledger = get_msg(txn, self.store.db("meta"), _LEDGER_KEY, shard_pb2.Ledger)
        return ledger if ledger is not None else microbank.new_ledger()

    def _put_ledger(self, txn: lmdb.Transaction, ledger: shard_pb2.Ledger) -> None:
        put_msg(txn, self.store.db("meta"), _LEDGER_KEY, ledger)

    def _user_or_raise(self, txn: lmdb.Transaction, principal: bytes) -> shard_pb2.UserRecord:
        user = get_msg(txn, self.store.db("users"), principal, shard_pb2.UserRecord)
        if user is None:
            raise UnknownUser(f"no user {principal.decode()!r} on this shard")
        return user

    def _enqueue(self, txn: lmdb.Transaction, principal: bytes) -> None:
        cursor = txn.cursor(db=self.store.db("pending"))
        position = int.from_bytes(cursor.key(), "big") + 1 if cursor.last() else 0
        txn.put(position.to_bytes(8, "big"), principal, db=self.store.db("pending"))

    def _settle(self, txn: lmdb.Transaction, ledger: shard_pb2.Ledger) -> None:
        users_db, pending_db = self.store.db("users"), self.store.db("pending")

        def waiting() -> Iterator[tuple[tuple[bytes, bytes], shard_pb2.UserRecord]]:
            for raw_position, raw_principal in txn.cursor(db=pending_db):
                position, principal = bytes(raw_position), bytes(raw_principal)
                user = get_msg(txn, users_db, principal, shard_pb2.UserRecord)
                if user is not None:
                    yield (position, principal), user

        for (position, principal), user in microbank.settle(ledger, waiting()):
            put_msg(txn, users_db, principal, user)
            txn.delete(position, db=pending_db)
