"""Seeded generators of hostile request bytes for any protobuf request type.

Three kinds, so that both the decoder and the handlers behind it are hit:
random bytes (mostly undecodable, sometimes a message of unknown fields),
random but well-formed messages built from the descriptor (edge values,
odd unicode, huge numbers: they pass decoding and reach the handler), and
such messages with bytes flipped, cut or spliced in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["cases", "random_message"]

_STRINGS = [
    "", " ", "a", "u1", "shard-0001", "math", "../../etc/passwd", "\x00", "é", "🦀" * 20,
    "A" * 300, "x" * 5000, "%s%n", "' OR 1=1 --", "\u202e", "canistry://hub/hub", "127.0.0.1:1",
]  # fmt: skip
_INTS = [0, 1, -1, 2, 7, 255, 2**31 - 1, -(2**31), 2**32 - 1, 2**53, 2**63 - 1, -(2**63)]
_UINTS = [0, 1, 2, 20, 1000, 2**32 - 1, 2**53, 2**63 - 1, 2**64 - 1]
_FLOATS = [0.0, -0.0, 1.5, -1.0, 1e308, math.inf, -math.inf, math.nan]

_F = FieldDescriptor
_SIGNED = {
    _F.TYPE_INT32: 32, _F.TYPE_SINT32: 32, _F.TYPE_SFIXED32: 32,
    _F.TYPE_INT64: 64, _F.TYPE_SINT64: 64, _F.TYPE_SFIXED64: 64,
}  # fmt: skip
_UNSIGNED = {
    FieldDescriptor.TYPE_UINT32: 32, FieldDescriptor.TYPE_FIXED32: 32,
    FieldDescriptor.TYPE_UINT64: 64, FieldDescriptor.TYPE_FIXED64: 64,
}  # fmt: skip


def _scalar(field: FieldDescriptor, rng: random.Random) -> Any:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return rng.choice(_STRINGS) if rng.random() < 0.7 else _random_text(rng)
    if t == FieldDescriptor.TYPE_BYTES:
        return rng.randbytes(rng.randrange(0, 64))
    if t == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if t in _SIGNED:
        bits = _SIGNED[t]
        return max(-(2 ** (bits - 1)), min(2 ** (bits - 1) - 1, rng.choice(_INTS)))
    if t in _UNSIGNED:
        return min(2 ** _UNSIGNED[t] - 1, rng.choice(_UINTS))
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return rng.choice(_FLOATS)
    if t == FieldDescriptor.TYPE_ENUM:
        return rng.choice([v.number for v in field.enum_type.values] + [99])
    raise AssertionError(f"unhandled field type {t}")


def _random_text(rng: random.Random) -> str:
    return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD7FF)]))
                   for _ in range(rng.randrange(0, 40)))  # fmt: skip


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def random_message(cls: type[Message], rng: random.Random, depth: int = 0) -> Message:
    """A well-formed ``cls`` with a random subset of fields set to edge values."""
    msg = cls()
    for field in cls.DESCRIPTOR.fields:
        if rng.random() < 0.35:
            continue
        value_type = field.message_type
        if value_type is not None and value_type.GetOptions().map_entry:
            key_f, val_f = value_type.fields_by_name["key"], value_type.fields_by_name["value"]
            target = getattr(msg, field.name)
            for _ in range(rng.choice([0, 1, 3, 40])):
                key = _scalar(key_f, rng)
                if val_f.message_type is None:
                    target[key] = _scalar(val_f, rng)
                elif depth < 3:
                    target[key].CopyFrom(random_message(target[key].__class__, rng, depth + 1))
        elif value_type is not None:
            if depth >= 3:
                continue
            sub_cls = type(
                getattr(msg, field.name).add() if _repeated(field) else getattr(msg, field.name)
            )
            if _repeated(field):
                getattr(msg, field.name).pop()
                for _ in range(rng.choice([0, 1, 2, 30])):
                    getattr(msg, field.name).add().CopyFrom(random_message(sub_cls, rng, depth + 1))
            else:
                getattr(msg, field.name).CopyFrom(random_message(sub_cls, rng, depth + 1))
        elif _repeated(field):
            getattr(msg, field.name).extend(
                _scalar(field, rng) for _ in range(rng.choice([0, 1, 5, 100]))
            )
        else:
            setattr(msg, field.name, _scalar(field, rng))
    return msg


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data or b"\x00")
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(4)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del buf[at:]
        elif op == 2:
            buf[at:at] = rng.randbytes(rng.randrange(1, 12))
        else:
            buf[at:at] = rng.choice(
                [b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x7f", b"\x08"]
            )
    return bytes(buf)


def cases(cls: type[Message], rng: random.Random, n: int) -> Iterator[tuple[str, bytes]]:
    """``n`` (kind, payload) pairs for a request of type ``cls``."""
    for i in range(n):
        kind = ("random", "message", "mutated")[i % 3]
        if kind == "random":
            yield kind, rng.randbytes(rng.choice([0, 1, 3, 17, 256, 4096]))
        elif kind == "message":
            yield kind, random_message(cls, rng).SerializeToString()
        else:
            yield kind, _mutate(random_message(cls, rng).SerializeToString(), rng)
