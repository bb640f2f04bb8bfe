"""JSON decoding that remembers where each object and key sits in the text.

The standard decoder forgets positions once it has built a value, but a pack
error must name the line it is on. :func:`loads` returns ordinary dicts and
lists, except that every object is a :class:`PosDict` that knows the offset of
its opening brace and of each of its keys. It also refuses duplicate keys,
which the standard decoder silently collapses.

Only the object parser differs from the standard library's; strings, numbers
and arrays are decoded by the stdlib's own (pure-Python) scanner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.scanner import py_make_scanner  # type: ignore[attr-defined]
from typing import Any

__all__ = ["PosDict", "line_of", "loads"]

_WS = re.compile(r"[ \t\n\r]*").match
_WS_CHARS = " \t\n\r"
#: Integers longer than this are not worth converting (Python refuses > 4300 digits).
_MAX_INT_DIGITS = 64


class PosDict(dict[str, Any]):
    """A decoded JSON object plus the offsets of its brace and its keys."""

    __slots__ = ("key_pos", "pos")

    def __init__(self, pos: int) -> None:
        super().__init__()
        self.pos = pos
        self.key_pos: dict[str, int] = {}


def line_of(text: str, pos: int) -> int:
    """The 1-based line holding offset ``pos`` of ``text``."""
    return text.count("\n", 0, pos) + 1


def _parse_int(digits: str) -> int | float:
    # A number no field can hold; infinity keeps the error about the field.
    return int(digits) if len(digits) <= _MAX_INT_DIGITS else float("inf")


Scan = Callable[[str, int], tuple[Any, int]]


def _parse_object(
    s_and_end: tuple[str, int],
    strict: bool,
    scan_once: Scan,
    object_hook: object,
    object_pairs_hook: object,
    memo: object = None,
) -> tuple[PosDict, int]:
    # Mirrors json.decoder.JSONObject, recording offsets and refusing duplicates.
    s, end = s_and_end
    obj = PosDict(end - 1)
    nextchar = s[end : end + 1]
    if nextchar != '"':
        if nextchar in _WS_CHARS:
            end = _WS(s, end).end()  # type: ignore[union-attr]
            nextchar = s[end : end + 1]
        if nextchar == "}":
            return obj, end + 1
        if nextchar != '"':
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", s, end)
    end += 1
    while True:
        key_pos = end - 1
        key, end = scanstring(s, end, strict)
        if s[end : end + 1] != ":":
            end = _WS(s, end).end()  # type: ignore[union-attr]
            if s[end : end + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", s, end)
        end = _WS(s, end + 1).end()  # type: ignore[union-attr]
        try:
            value, end = scan_once(s, end)
        except StopIteration as err:
            raise json.JSONDecodeError("Expecting value", s, err.value) from None
        if key in obj:
            raise json.JSONDecodeError(f"duplicate key {json.dumps(key)}", s, key_pos)
        obj[key] = value
        obj.key_pos[key] = key_pos
        end = _WS(s, end).end()  # type: ignore[union-attr]
        nextchar = s[end : end + 1]
        end += 1
        if nextchar == "}":
            return obj, end
        if nextchar != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", s, end - 1)
        end = _WS(s, end).end()  # type: ignore[union-attr]
        nextchar = s[end : end + 1]
        end += 1
        if nextchar != '"':
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", s, end - 1
            )


class _Decoder(json.JSONDecoder):
    def __init__(self) -> None:
        super().__init__(parse_int=_parse_int)
        self.parse_object = _parse_object
        # The C scanner ignores parse_object; the Python one calls ours.
        self.scan_once = py_make_scanner(self)


def loads(text: str) -> Any:
    """Decode ``text``; every object in the result is a :class:`PosDict`.

    Raises :class:`json.JSONDecodeError` (which carries ``lineno``) for
    malformed JSON and duplicate keys, and :class:`RecursionError` for absurd
    nesting.
    """
    return _Decoder().decode(text)
