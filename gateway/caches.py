"""In-process caches and HTTP validators. Pure (the clock is injected).

A :class:`TtlCache` is a bounded LRU whose entries expire; each worker
process has its own. Routes (principal -> shard) are immutable once assigned,
so a stale one only costs a retry; content changes only by import, so a
stale unit lives at most ``content_cache_ttl_s``.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "MAX_IF_NONE_MATCH",
    "CachedBody",
    "RawHeaders",
    "TtlCache",
    "body_etag",
    "etag_matches",
    "judgeable",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """At most ``max_entries`` entries, each valid for ``ttl_s`` after it was put."""

    def __init__(
        self, ttl_s: float, max_entries: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_s <= 0 or max_entries < 1:
            raise ValueError("ttl_s must be > 0 and max_entries >= 1")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: collections.OrderedDict[K, tuple[float, V]] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock() + self.ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: The longest ``If-None-Match`` a cached read answers (the FastAPI route answers 422 beyond).
MAX_IF_NONE_MATCH = 1024

#: ASGI response headers, encoded once.
RawHeaders = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class CachedBody:
    """A JSON body as sent, with its strong ETag and its response headers, encoded once.

    One is built per unit version (or unit page) and served to every reader
    until it expires, so a cached read does no encoding of its own: the
    headers are those a Starlette ``Response(body, media_type=
    "application/json", headers={"ETag": ..., "Cache-Control": ...})`` sends,
    in its order.
    """

    body: bytes
    etag: str
    max_age_s: int = 0
    """``Cache-Control: public, max-age=`` this."""
    ok_headers: RawHeaders = field(init=False, repr=False, compare=False)
    """The headers of a 200 with :attr:`body`."""
    not_modified_headers: RawHeaders = field(init=False, repr=False, compare=False)
    """The headers of a 304 (no body, so no length or type)."""

    def __post_init__(self) -> None:
        validators = (
            (b"etag", self.etag.encode("latin-1")),
            (b"cache-control", f"public, max-age={self.max_age_s}".encode("latin-1")),
        )
        full = (
            *validators,
            (b"content-length", str(len(self.body)).encode("latin-1")),
            (b"content-type", b"application/json"),
        )
        object.__setattr__(self, "not_modified_headers", validators)
        object.__setattr__(self, "ok_headers", full)

    def reply(self, if_none_match: str | None) -> tuple[int, RawHeaders, bytes]:
        """The status, headers and body to send: a 304 without a body when
        ``If-None-Match`` names this ETag, else the 200 with the body.

        Every fast path answers a cached read through this (the FastAPI route
        builds the same with a ``Response``); call it only when
        :func:`judgeable` holds.
        """
        if etag_matches(if_none_match, self.etag):
            return 304, self.not_modified_headers, b""
        return 200, self.ok_headers, self.body


def judgeable(if_none_match: str | None) -> bool:
    """Whether a fast path may answer this ``If-None-Match`` (else the FastAPI route refuses it)."""
    return if_none_match is None or len(if_none_match) <= MAX_IF_NONE_MATCH


def body_etag(body: bytes) -> str:
    """A strong ETag from the bytes themselves."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    bare = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False
