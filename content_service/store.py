"""The content service's LMDB: units, a by-subject index, and a read cache.

Databases (values are protobuf messages, docs/design.md §10):

- ``units``: unit id -> :class:`StoredUnit` (the unit with its answer key);
- ``by_subject``: ``subject + "\\0" + unit id`` -> :class:`UnitSummary`, so
  that listings walk one small index in order and never parse lesson bodies;
- ``meta``: the schema version, and ``generation``, bumped by every import
  that changes something.

Reads are served from an in-memory cache of parsed units (and of their
decoded answer keys, for grading). Each read opens a read transaction and
compares ``generation`` with the one the cache was filled under; a mismatch
empties the cache. That keeps the cache right even
when another process (an offline ``canistry content import`` or a replica
sharing the file) writes the store.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from content_service.pack import is_slug
from content_service.quiz import AnswerKey
from protos import content_pb2
from runtime.errors import InvalidArgument, UnknownUnit
from runtime.store import Store, StoreConfig, WrittenStore, get_msg, put_msg

__all__ = [
    "DATABASES",
    "SCHEMA_VERSION",
    "ContentStore",
    "ImportSummary",
    "Page",
    "apply_pack",
    "store_config",
]

DATABASES = ("units", "by_subject")
SCHEMA_VERSION = 1
_GENERATION = b"generation"
_SEP = b"\0"
_MAX_CURSOR_CHARS = 256


def store_config(path: Path, *, durable: bool = True) -> StoreConfig:
    """The LMDB layout of a content store at ``path``."""
    return StoreConfig(
        path=path, databases=DATABASES, schema_version=SCHEMA_VERSION, durable=durable
    )


@dataclass(frozen=True)
class ImportSummary:
    """What an import did."""

    added: int
    """Units new to the store (version 1)."""
    changed: int
    """Units whose digest changed (version + 1)."""
    unchanged: int
    """Units identical to the stored ones."""
    total_units: int
    """Units in the store after the import."""


@dataclass(frozen=True)
class Page:
    units: list[content_pb2.UnitSummary]
    next_cursor: str
    """Opaque; empty when there is nothing more."""


class ContentStore(WrittenStore):
    """Units in LMDB plus a read cache. ``async with ContentStore(path) as store:``.

    Writes go through :meth:`import_units` (the store's one writer). Messages
    returned by the read methods may be shared with the cache: callers must
    not modify them.
    """

    def __init__(self, path: Path, *, durable: bool = True, cache_size: int = 10_000) -> None:
        super().__init__(store_config(path, durable=durable))
        self._cache_size = cache_size
        self._cache: dict[str, content_pb2.StoredUnit] = {}
        self._keys: dict[str, AnswerKey] = {}
        """Answer keys decoded from cached units; emptied with :attr:`_cache`."""
        self._cache_generation: bytes | None = None

    async def stop(self) -> None:
        self._cache.clear()
        self._keys.clear()
        await super().stop()

    # -- writes --------------------------------------------------------------

    async def import_units(self, units: Sequence[content_pb2.StoredUnit]) -> ImportSummary:
        """Apply ``units`` in one durable transaction (see :func:`apply_pack`)."""
        store = self.store
        summary: ImportSummary = await self.committer.submit(
            lambda txn: apply_pack(store, txn, units)
        )
        return summary

    # -- reads ---------------------------------------------------------------

    def get_unit(self, unit_id: str) -> content_pb2.StoredUnit:
        """The stored unit, answers included. Raises :class:`UnknownUnit`."""
        with self.store.read() as txn:
            self._check_generation(txn)
            return self._unit(txn, unit_id)

    def answer_keys(self, unit_ids: Iterable[str]) -> dict[str, AnswerKey | UnknownUnit]:
        """Each unit's decoded answer key, or :class:`UnknownUnit`, read in one transaction.

        A key is decoded once per unit version and kept with the cached unit.
        """
        out: dict[str, AnswerKey | UnknownUnit] = {}
        with self.store.read() as txn:
            self._check_generation(txn)
            keys = self._keys
            for unit_id in unit_ids:
                if unit_id in out:
                    continue
                key = keys.get(unit_id)
                if key is None:
                    try:
                        key = AnswerKey.of(self._unit(txn, unit_id))
                    except UnknownUnit as exc:
                        out[unit_id] = exc
                        continue
                    if unit_id in self._cache:  # the key lives as long as its unit's entry
                        keys[unit_id] = key
                out[unit_id] = key
        return out

    def _unit(self, txn: Any, unit_id: str) -> content_pb2.StoredUnit:
        cached = self._cache.get(unit_id)
        if cached is not None:
            return cached
        stored = get_msg(txn, self.store.db("units"), unit_id.encode(), content_pb2.StoredUnit)
        if stored is None:
            raise UnknownUnit(f"no unit {unit_id!r}")
        if self._cache_size > 0:
            if len(self._cache) >= self._cache_size:
                oldest = next(iter(self._cache))
                del self._cache[oldest]
                self._keys.pop(oldest, None)
            self._cache[unit_id] = stored
        return stored

    def list_units(self, subject: str, cursor: str, limit: int) -> Page:
        """Up to ``limit`` summaries in (subject, id) order, after ``cursor``.

        ``subject`` empty lists every subject. Raises :class:`InvalidArgument`
        for a cursor this store did not make or that belongs to another
        subject's listing.
        """
        if limit < 1:
            raise ValueError("limit must be >= 1")
        prefix = subject.encode() + _SEP if subject else b""
        after = _decode_cursor(cursor) if cursor else None
        if after is not None and not after.startswith(prefix):
            raise InvalidArgument("cursor belongs to another subject's listing")
        units: list[content_pb2.UnitSummary] = []
        last_key = b""
        more = False
        with self.store.read() as txn:
            cur = txn.cursor(db=self.store.db("by_subject"))
            if after is not None:
                found = cur.set_range(after)
                if found and cur.key() == after:
                    found = cur.next()
            else:
                found = cur.set_range(prefix) if prefix else cur.first()
            while found:
                key = bytes(cur.key())  # read txns use buffers=False: no copy
                if not key.startswith(prefix):
                    break
                if len(units) == limit:
                    more = True
                    break
                summary = content_pb2.UnitSummary()
                summary.ParseFromString(bytes(cur.value()))
                units.append(summary)
                last_key = key
                found = cur.next()
        return Page(units=units, next_cursor=_encode_cursor(last_key) if more else "")

    def stats(self) -> tuple[int, list[str]]:
        """How many units there are, and the subjects in order."""
        subjects: list[str] = []
        store = self.store
        with store.read() as txn:
            count = int(txn.stat(store.db("units"))["entries"])
            cur = txn.cursor(db=store.db("by_subject"))
            found = cur.first()
            while found:
                subject = bytes(cur.key()).split(_SEP, 1)[0]
                subjects.append(subject.decode())
                # Skip the rest of this subject: "\1" sorts right after "\0".
                found = cur.set_range(subject + b"\x01")
        return count, subjects

    def _check_generation(self, txn: Any) -> None:
        generation = txn.get(_GENERATION, db=self.store.db("meta"))
        if generation != self._cache_generation:
            self._cache.clear()
            self._keys.clear()
            self._cache_generation = generation


def apply_pack(
    store: Store, txn: lmdb.Transaction, units: Sequence[content_pb2.StoredUnit]
) -> ImportSummary:
    """Add or update ``units`` (from :func:`~content_service.pack.parse_pack`) in ``txn``.

    Same digest: unchanged. New id: version 1. Changed digest: the stored
    version + 1. Units absent from ``units`` stay as they are. Run it inside
    one write transaction so a pack lands whole or not at all.
    """
    by_id, by_subject, meta = store.db("units"), store.db("by_subject"), store.db("meta")
    added = changed = unchanged = 0
    for parsed in units:
        key = parsed.unit.id.encode()
        old = get_msg(txn, by_id, key, content_pb2.StoredUnit)
        if old is not None and old.unit.digest == parsed.unit.digest:
            unchanged += 1
            continue
        new = content_pb2.StoredUnit()
        new.CopyFrom(parsed)
        if old is None:
            new.unit.version = 1
            added += 1
        else:
            new.unit.version = old.unit.version + 1
            changed += 1
            txn.delete(_index_key(old.unit.subject, old.unit.id), db=by_subject)
        put_msg(txn, by_id, key, new)
        put_msg(txn, by_subject, _index_key(new.unit.subject, new.unit.id), _summary(new))
    if added or changed:
        raw = txn.get(_GENERATION, db=meta)
        txn.put(_GENERATION, str(int(raw or 0) + 1).encode(), db=meta)
    total = int(txn.stat(by_id)["entries"])
    return ImportSummary(added=added, changed=changed, unchanged=unchanged, total_units=total)


def _index_key(subject: str, unit_id: str) -> bytes:
    return subject.encode() + _SEP + unit_id.encode()


def _summary(stored: content_pb2.StoredUnit) -> content_pb2.UnitSummary:
    unit = stored.unit
    return content_pb2.UnitSummary(
        id=unit.id,
        subject=unit.subject,
        title=unit.title,
        reward=unit.reward,
        version=unit.version,
        question_count=len(unit.quiz.questions),
        digest=unit.digest,
    )


def _encode_cursor(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str) -> bytes:
    """The index key a cursor stands for; :class:`InvalidArgument` if it is not one."""
    bad = InvalidArgument("bad cursor: pass back a next_cursor unchanged")
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = cursor.rstrip("=").encode("ascii")
        key = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
        subject, unit_id = key.decode("ascii").split("\0")
    except (UnicodeError, binascii.Error, ValueError):
        raise bad from None
    if not (is_slug(subject) and is_slug(unit_id)):
        raise bad
    return key
