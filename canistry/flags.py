"""Command-line flags built from config dataclasses: one name, one default, one help each.

A setting is declared once, as a field of a frozen config dataclass with a
docstring under it. :func:`add_config_flags` turns chosen fields into
``argparse`` flags: the flag is the field's name in dashes (a ``_s`` for
seconds dropped: ``scale_interval_s`` is ``--scale-interval``), its type and
default are the field's, and its help is the field's docstring followed by
the default. A ``tuple[str, ...]`` field is a repeatable flag named in the
singular (``cors_origins`` is ``--cors-origin``, given once per value).
:func:`config_values` reads the parsed values back by field
name, so nothing is renamed or re-defaulted on the way.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["add_config_flags", "config_values", "field_docs", "flag_name"]

_TYPES: Mapping[str, Any] = {"int": int, "float": float, "str": str, "Path": Path}
#: Tuple fields, which become repeatable flags, and their items' type.
_REPEATED: Mapping[str, Any] = {"tuple[str,...]": str}


def flag_name(field: str, *, repeatable: bool = False) -> str:
    """``scale_interval_s`` -> ``--scale-interval``; repeatable ``cors_origins`` ->
    ``--cors-origin``."""
    name = "--" + field.removesuffix("_s").replace("_", "-")
    return name.removesuffix("s") if repeatable else name


class _AppendToTuple(argparse.Action):
    """Each use of the flag adds its value to a tuple (the default, usually empty)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, (*getattr(namespace, self.dest), values))


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of ``cls`` (and of its bases), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for stmt, after in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(after.value.value.replace("``", "").split())
    return docs


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def add_config_flags(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    names: Sequence[str],
    *,
    flags: Mapping[str, str] | None = None,
    metavars: Mapping[str, str] | None = None,
) -> None:
    """Add a flag for each field of ``cls`` in ``names``.

    ``flags`` gives a field a flag name other than :func:`flag_name`'s (one
    the product already documents, such as ``--workers``). A field without a
    default is a required flag. A ``bool`` field defaulting to False is a
    switch; one defaulting to True gets ``--no-…`` too.
    """
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    docs = field_docs(cls)
    for name in names:
        field = by_name[name]
        default = _default(field)
        doc = docs.get(name, "")
        kind = str(field.type).replace(" ", "")
        repeated = _REPEATED.get(kind)
        flag = (flags or {}).get(name, flag_name(name, repeatable=repeated is not None))
        if repeated is not None:
            metavar = (metavars or {}).get(name) or _item_metavar(name)
            parser.add_argument(
                flag, dest=name, action=_AppendToTuple, type=repeated, default=tuple(default),
                metavar=metavar, help=f"{doc} (repeatable; default: none)",
            )  # fmt: skip
            continue
        optional = kind.endswith("|None")
        base = kind.removesuffix("|None")
        kwargs: dict[str, Any] = {"dest": name}
        if default is dataclasses.MISSING:
            kwargs["required"] = True
            kwargs["help"] = doc
        elif base == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["default"] = default
            kwargs["help"] = f"{doc} (default: {'on' if default else 'off'})"
        else:
            grouped = base == "int" and not name.endswith("port")
            shown = "none" if default is None else f"{default:,}" if grouped else default
            kwargs["default"] = default
            kwargs["help"] = f"{doc} (default: {shown})"
        if base != "bool":
            if base not in _TYPES:
                raise TypeError(f"{cls.__name__}.{name}: no flag type for {field.type}")
            kwargs["type"] = _TYPES[base]
            kwargs["metavar"] = (metavars or {}).get(name) or _metavar(name, base, optional)
        parser.add_argument(flag, **kwargs)


def _item_metavar(name: str) -> str:
    """``cors_origins`` -> ``ORIGIN``."""
    return name.removesuffix("s").rpartition("_")[2].upper()


def _metavar(name: str, base: str, optional: bool) -> str:
    if name.endswith("_s"):
        return "S"
    return {"int": "N", "float": "X", "Path": "PATH", "str": "TEXT"}[base]


def config_values(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The parsed values of ``names``, by field name, for ``cls(**values)``."""
    return {name: getattr(args, name) for name in names}
